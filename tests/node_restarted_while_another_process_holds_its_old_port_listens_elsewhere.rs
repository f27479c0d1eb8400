//! A restarted node listens where it did before, so peers that dial it find it again; but if
//! another process took that port while the node was down (an ephemeral port is anyone's
//! once it is free: in a CI run the LSP's restarted control server once took the payee's old
//! peer port), the node starts anyway on a new port, says so, and dials its peers as before.

mod node_process_support;

use node_process_support::{FakeElectrum, Node};

#[test]
fn a_node_whose_old_port_is_taken_starts_on_another_one() {
    let electrum = FakeElectrum::start();
    let root = tempfile::tempdir().expect("tempdir");
    let dir = root.path().join("payee");

    // First run, then a restart on the same port.
    let first = Node::start(&electrum, &dir, "payee", &[]);
    let old = first.peer_addr();
    drop(first);
    let again = Node::start(&electrum, &dir, "payee", &[]);
    assert_eq!(again.peer_addr(), old, "a restart keeps the address");
    drop(again);

    // Someone else holds the port while the node is down.
    let squatter = std::net::TcpListener::bind(old).expect("the freed port can be taken");
    let moved = Node::start(&electrum, &dir, "payee", &[]);
    assert_ne!(moved.peer_addr(), old, "a new port");
    assert!(
        moved
            .logged()
            .iter()
            .any(|e| e["event"] == "listen_moved" && e["previous"] == old.to_string()),
        "the move is reported: {:?}",
        moved.logged()
    );
    // The new address is kept for the next restart.
    let new = moved.peer_addr();
    drop(moved);
    drop(squatter);
    let last = Node::start(&electrum, &dir, "payee", &[]);
    assert_eq!(last.peer_addr(), new);
}
