//! `asyncpay demo`: flags into an [`asyncpay::demo::DemoOptions`], then the library's demo;
//! its transcript printed as a summary or, with `--json`, as one JSON document.

use std::path::PathBuf;

use anyhow::Context;
use asyncpay::chain::network::Chain;
use asyncpay::demo::DemoOptions;
use clap::Args;

/// Options of `asyncpay demo`.
#[derive(Args)]
pub struct DemoArgs {
    /// Print one machine-readable JSON transcript on stdout (the narration stays on stderr).
    #[arg(long)]
    json: bool,
    /// The chain: `regtest`, or `signet` (a private signet whose blocks are signed by its own
    /// key; slower: each block is ground at the signet's minimum difficulty).
    #[arg(long, default_value = "regtest", value_parser = ["regtest", "signet"])]
    network: String,
    /// Run on the network started by `asyncpay regtest|signet up --data-dir DIR` instead of a
    /// throwaway one: its server mines the blocks and its faucet funds the wallets.
    #[arg(long, value_name = "DIR", env = "ASYNCPAY_NETWORK_DIR")]
    network_dir: Option<PathBuf>,
    /// Keep the temporary directory (node data directories and logs) after the run.
    #[arg(long)]
    keep: bool,
    /// What A pays B, in satoshis.
    #[arg(long, default_value_t = 50_000)]
    amount_sat: u64,
    /// Skip the on-chain epilogue (A publishes its stale state, S overrides it, the
    /// settlement confirms).
    #[arg(long)]
    no_epilogue: bool,
    /// Longest wait for any one condition (a status, a connection, a confirmation), in
    /// seconds.
    #[arg(long, default_value_t = 90)]
    timeout_secs: u64,
    /// Also write the sequence diagram as a self-contained SVG file to PATH.
    #[arg(long, value_name = "PATH")]
    svg: Option<PathBuf>,
    /// Fault injection: PARTY (A, S, B, or P with --routed) kills itself with SIGKILL at POINT
    /// (`send:<message>` before it sends that message, `post-letter` before A posts its
    /// letter, `persist:<n>` right after its n-th store write), counted from the party's
    /// first start in the payment (A and S: the pay step; B: the sell step; re-armed at each
    /// start until it fires). The demo restarts the party at once and the payment must still
    /// complete with the exact balances; the transcript's `crash` says where it died.
    #[arg(long, value_name = "PARTY:POINT")]
    crash: Option<String>,
    /// B has no channel with S but one with a router P (a fourth process, `--role router`):
    /// S pays B through P with the same point, P keeps its fee.
    #[arg(long)]
    routed: bool,
    /// In the on-chain epilogue, S is stopped before A publishes its stale state and started
    /// again only after that state has confirmed: S must find it from its stored channels
    /// alone and still override it in time.
    #[arg(long)]
    lsp_restarts_after_cheat: bool,
    /// The reverse variant instead: B is the one offline. B asks S for a state paying it and
    /// leaves S's offer in A's mailbox; A buys S's signature with a PTLC and hands it to B;
    /// B, back, has its state. No on-chain epilogue.
    #[arg(long, conflicts_with_all = ["routed", "crash", "lsp_restarts_after_cheat"])]
    reverse: bool,
    /// An adversary with B's contact card puts a bogus letter in B's mailbox before B comes
    /// online: `wrong-scalar` (A's letter with another valid pre-signature, whose completion does not
    /// sell the point), `tampered-offer` (the amount in S's signed offer raised by one
    /// satoshi) or `replayed-letter` (A's letter posted again). B must refuse it or ignore
    /// the repeat, and the genuine payment must still complete exactly once.
    #[arg(long, value_enum, conflicts_with = "reverse")]
    adversary: Option<Adversary>,
    /// A comes back before B sells and cancels: S cancels the offer and reverts A–S to
    /// state 0's balances (state 2); B, online later, invoices and is refused (`cancelled`);
    /// nothing moves on any channel. The on-chain epilogue then shows S answering A's
    /// stale state 0 with the revert.
    #[arg(long, conflicts_with_all = ["reverse", "routed", "crash", "adversary"])]
    cancel: bool,
    /// A's backup publishes the stale state 0 while A's signature on state 1 is still for
    /// sale (right after A goes offline), and it confirms; B then sells inside S's window:
    /// S buys the scalar, and its node publishes U_1 over U_0 at once and settles state 1.
    #[arg(
        long,
        conflicts_with_all = ["reverse", "routed", "crash", "adversary", "cancel", "lsp_restarts_after_cheat", "no_epilogue"]
    )]
    payer_cheats_while_pending: bool,
    /// S goes offline right after its offer and is away until the offer has expired: B
    /// invoices in time but nobody pays it; S, back, refuses the invoice (`expired`) and
    /// reverts A–S (state 2); A, back, finds its payment void. Nothing moves on any
    /// channel, and in the on-chain epilogue S answers A's stale state 0 with the revert.
    #[arg(
        long,
        conflicts_with_all = ["reverse", "routed", "crash", "adversary", "cancel", "payer_cheats_while_pending"]
    )]
    lsp_never_pays: bool,
    /// Instead of one payment: N held sales (at least 8) waiting at once on A's one channel
    /// with S, to four payees B, C, D and E (four more processes) while they are offline.
    /// A cancels two; B, C and D come online in a shuffled order and sell; E comes only after
    /// S's offers to it expired and is refused; A, back, gets its receipts and each sold
    /// payment's proof is checked by `asyncpay proof verify`. Payment i is of 10,000 + 1,000·i
    /// sat (`--amount-sat` does not apply). No on-chain epilogue.
    #[arg(
        long,
        value_name = "N",
        value_parser = clap::value_parser!(u16).range(8..=32),
        conflicts_with_all = ["reverse", "routed", "crash", "adversary", "cancel", "payer_cheats_while_pending", "lsp_never_pays", "lsp_restarts_after_cheat"]
    )]
    pending: Option<u16>,
    /// Instead of the main flow: paying at a shop when one side has no connection, from the
    /// merchant B's static offer (a signed contact card with amount, description, expiry and
    /// LSP). `offline-merchant`: B's device is offline; A hands it an irrevocable letter
    /// (its cancellation is refused), B's device checks it with no network (`asyncpay pos
    /// accept`, refusing a tampered copy, another amount and another merchant's device) and
    /// sells once online. `offline-payer`: A's phone reaches S only through B's device
    /// (`asyncpay pos relay`); dishonest relays corrupting, dropping and replaying A's
    /// bytes break the session and move nothing; then A pays at the counter and B is paid at
    /// once. No on-chain epilogue.
    #[arg(
        long,
        value_name = "MODE",
        conflicts_with_all = ["reverse", "routed", "crash", "adversary", "cancel", "payer_cheats_while_pending", "lsp_never_pays", "lsp_restarts_after_cheat", "pending"]
    )]
    pos: Option<PosArg>,
}

/// `--pos`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum PosArg {
    /// The merchant's device is offline.
    OfflineMerchant,
    /// The payer's phone is offline.
    OfflinePayer,
}

/// A bogus letter put in B's mailbox (`--adversary`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Adversary {
    /// A's letter with another valid signature, whose scalar does not sell the point.
    WrongScalar,
    /// The amount in S's signed offer raised by one satoshi.
    TamperedOffer,
    /// A's letter posted a second time.
    ReplayedLetter,
}

impl From<Adversary> for asyncpay::demo::Adversary {
    fn from(kind: Adversary) -> Self {
        match kind {
            Adversary::WrongScalar => Self::WrongScalar,
            Adversary::TamperedOffer => Self::TamperedOffer,
            Adversary::ReplayedLetter => Self::ReplayedLetter,
        }
    }
}

/// Runs the demo and prints its transcript; fails if a check failed.
pub fn run(args: DemoArgs) -> anyhow::Result<()> {
    let options = DemoOptions {
        exe: std::env::current_exe().context("locating the asyncpay binary")?,
        keep: args.keep,
        amount_sat: args.amount_sat,
        no_epilogue: args.no_epilogue,
        timeout_secs: args.timeout_secs,
        svg: args.svg,
        crash: args.crash,
        routed: args.routed,
        lsp_restarts_after_cheat: args.lsp_restarts_after_cheat,
        reverse: args.reverse,
        adversary: args.adversary.map(Into::into),
        cancel: args.cancel,
        payer_cheats_while_pending: args.payer_cheats_while_pending,
        lsp_never_pays: args.lsp_never_pays,
        network: match args.network.as_str() {
            "signet" => Chain::Signet,
            _ => Chain::Regtest,
        },
        network_dir: args.network_dir,
        pending: args.pending.map(usize::from),
        pos: args.pos.map(|mode| match mode {
            PosArg::OfflineMerchant => asyncpay::demo::PosMode::OfflineMerchant,
            PosArg::OfflinePayer => asyncpay::demo::PosMode::OfflinePayer,
        }),
    };
    let transcript = asyncpay::demo::run(options)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&transcript)?);
    } else {
        print!("{}", transcript.summary());
    }
    if !transcript.ok() {
        anyhow::bail!("a check failed (see the table above)");
    }
    Ok(())
}
