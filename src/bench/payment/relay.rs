//! A TCP relay on loopback that holds every byte for a fixed one-way delay in each direction:
//! the stand-in for a wide-area link between the payee and the services it talks to (its
//! LSP's peer port, the mailbox server). Order is kept; throughput is not limited.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

/// A running relay; stopped (with every connection through it) when dropped.
pub(super) struct DelayRelay {
    /// Where to connect instead of the target.
    pub(super) addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl DelayRelay {
    /// Relays connections made to [`DelayRelay::addr`] to `target`, each direction delayed
    /// by `one_way`.
    pub(super) fn start(target: SocketAddr, one_way: Duration) -> std::io::Result<Self> {
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let (stop, mut stopped) = oneshot::channel();
        let thread = std::thread::Builder::new()
            .name("bench-relay".into())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(runtime) => runtime,
                    Err(e) => {
                        let _ = addr_tx.send(Err(e));
                        return;
                    }
                };
                runtime.block_on(async move {
                    let listener = match TcpListener::bind(("127.0.0.1", 0)).await {
                        Ok(listener) => listener,
                        Err(e) => {
                            let _ = addr_tx.send(Err(e));
                            return;
                        }
                    };
                    let _ = addr_tx.send(listener.local_addr());
                    loop {
                        tokio::select! {
                            accepted = listener.accept() => {
                                if let Ok((inbound, _)) = accepted {
                                    tokio::spawn(relay(inbound, target, one_way));
                                }
                            }
                            _ = &mut stopped => break,
                        }
                    }
                });
            })?;
        let addr = addr_rx
            .recv()
            .map_err(|_| std::io::Error::other("the relay thread ended before it listened"))??;
        Ok(DelayRelay {
            addr,
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}

impl Drop for DelayRelay {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

async fn relay(inbound: TcpStream, target: SocketAddr, one_way: Duration) {
    let Ok(outbound) = TcpStream::connect(target).await else {
        return;
    };
    let _ = inbound.set_nodelay(true);
    let _ = outbound.set_nodelay(true);
    let (in_read, in_write) = inbound.into_split();
    let (out_read, out_write) = outbound.into_split();
    tokio::join!(
        pipe(in_read, out_write, one_way),
        pipe(out_read, in_write, one_way)
    );
}

/// Copies `from` to `to`, each chunk written `one_way` after it was read.
async fn pipe(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, one_way: Duration) {
    let (tx, mut rx) = mpsc::unbounded_channel::<(Instant, Vec<u8>)>();
    let read = async move {
        let mut buf = vec![0u8; 16 * 1024];
        while let Ok(n) = from.read(&mut buf).await {
            if n == 0
                || tx
                    .send((Instant::now() + one_way, buf[..n].to_vec()))
                    .is_err()
            {
                break;
            }
        }
    };
    let write = async move {
        while let Some((at, bytes)) = rx.recv().await {
            tokio::time::sleep_until(at).await;
            if to.write_all(&bytes).await.is_err() {
                return;
            }
        }
        let _ = to.shutdown().await;
    };
    tokio::join!(read, write);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A byte echoed through the relay takes at least two one-way delays, and arrives intact.
    #[test]
    fn an_echo_through_the_relay_takes_a_round_trip() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let echo = TcpListener::bind(("127.0.0.1", 0)).await.unwrap();
            let target = echo.local_addr().unwrap();
            tokio::spawn(async move {
                let (mut s, _) = echo.accept().await.unwrap();
                let mut buf = [0u8; 5];
                s.read_exact(&mut buf).await.unwrap();
                s.write_all(&buf).await.unwrap();
            });
            let relay = DelayRelay::start(target, Duration::from_millis(20)).unwrap();
            let mut c = TcpStream::connect(relay.addr).await.unwrap();
            let t = std::time::Instant::now();
            c.write_all(b"hello").await.unwrap();
            let mut back = [0u8; 5];
            c.read_exact(&mut back).await.unwrap();
            assert_eq!(&back, b"hello");
            assert!(
                t.elapsed() >= Duration::from_millis(40),
                "{:?}",
                t.elapsed()
            );
        });
    }
}
