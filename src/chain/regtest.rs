//! A throwaway regtest chain for tests, the demo and benchmarks.
//!
//! [`Regtest::start`] spawns a `bitcoind` (and, on request, `electrs`) in a temporary
//! directory on free ports, checks that the node enforces BIP118 (`anyprevout` active in
//! `getdeploymentinfo`) and funds a faucet by mining. Everything it broadcasts goes through
//! the node's mempool (`sendrawtransaction` / `submitpackage`) under default policy; blocks
//! are mined with `generatetoaddress`, which only includes what the mempool accepted.
//! Dropping the value stops the processes and deletes their directories.
//!
//! Binaries are found through `BITCOIND_EXE` / `ELECTRS_EXE`, or else through the file
//! `scripts/setup` writes (`$ASYNCPAY_CACHE/env`, default `~/.cache/asyncpay/env`).
//!
//! ```no_run
//! use asyncpay::chain::regtest::{Regtest, RegtestOptions};
//! use bitcoin::Amount;
//!
//! let chain = Regtest::start(RegtestOptions::default())?;
//! assert!(chain.anyprevout_active()?);
//! let address_spk = chain.faucet_script_pubkey();
//! let (outpoint, _txout) = chain.fund(&address_spk, Amount::from_sat(100_000))?;
//! chain.confirm(&outpoint.txid)?;
//! # Ok::<(), asyncpay::chain::regtest::HarnessError>(())
//! ```

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bitcoin::consensus::encode::{deserialize_hex, serialize_hex};
use bitcoin::hashes::Hash;
use bitcoin::key::{Keypair, TapTweak};
use bitcoin::secp256k1::{Secp256k1, SecretKey};
use bitcoin::sighash::{Prevouts, SighashCache, TapSighashType};
use bitcoin::{
    absolute, transaction, Address, Amount, Block, BlockHash, Network, OutPoint, ScriptBuf,
    Sequence, Transaction, TxIn, TxOut, Txid, Witness,
};
use electrsd::bitcoind::{self, BitcoinD};

use crate::chain::signet::{self, SignetSigner};
use electrsd::ElectrsD;
use serde_json::{json, Value};

/// Blocks mined at start so that the faucet owns mature coinbase outputs.
const INITIAL_BLOCKS: u64 = 110;
/// Confirmations a coinbase output needs before it can be spent.
const COINBASE_MATURITY: u64 = 100;
/// Flat fee of a faucet payment (one key-path input, two outputs: about 154 vB).
const FAUCET_FEE: Amount = Amount::from_sat(1_000);

/// Which binaries to run and whether to check for BIP118.
#[derive(Debug, Clone)]
pub struct RegtestOptions {
    /// Also start electrs (needed by BDK light-client wallets).
    pub electrs: bool,
    /// Refuse to start unless the node reports the `anyprevout` deployment active.
    pub require_anyprevout: bool,
    /// Let the node's log through to stderr (for debugging a test).
    pub verbose: bool,
    /// Extra bitcoind arguments, e.g. `-vbparams=anyprevout:-2:0` to switch BIP118 off.
    pub bitcoind_args: Vec<String>,
    /// Run a private signet whose blocks this signer signs (its challenge is the network's)
    /// instead of regtest; blocks are then built from `getblocktemplate`, signed and ground
    /// here ([`crate::chain::signet`]), and submitted with `submitblock`.
    pub signet: Option<SignetSigner>,
    /// Where bitcoind's and electrs's temporary data directories are made (and deleted on
    /// drop); `None`: the system's temporary directory (or `TEMPDIR_ROOT`).
    pub work_dir: Option<PathBuf>,
}

impl Default for RegtestOptions {
    fn default() -> Self {
        Self {
            electrs: false,
            require_anyprevout: true,
            verbose: false,
            bitcoind_args: Vec::new(),
            signet: None,
            work_dir: None,
        }
    }
}

/// Paths of the binaries the harness runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binaries {
    /// The bitcoind executable.
    pub bitcoind: PathBuf,
    /// The electrs executable, when one was found.
    pub electrs: Option<PathBuf>,
}

/// A JSON-RPC call that failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("rpc {method} failed: {message} (code {code:?})")]
pub struct RpcError {
    /// The RPC method.
    pub method: String,
    /// The node's error code, when the node answered with an error.
    pub code: Option<i32>,
    /// The node's message, or a description of the transport failure.
    pub message: String,
}

/// What can go wrong running the regtest harness.
#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    /// A binary could not be located.
    #[error("{what} not found: {hint}")]
    BinaryNotFound {
        /// Which binary.
        what: &'static str,
        /// What to do about it.
        hint: String,
    },
    /// A process could not be started.
    #[error("could not start {what} ({path}): {reason}")]
    Spawn {
        /// Which process.
        what: &'static str,
        /// The executable.
        path: PathBuf,
        /// The underlying failure.
        reason: String,
    },
    /// The node does not enforce BIP118, so channel work on it would prove nothing.
    #[error(
        "{path} does not report the `anyprevout` deployment as active on regtest; \
         run scripts/setup (BIP118-patched Bitcoin Core) or set BITCOIND_EXE to a \
         Bitcoin Inquisition bitcoind"
    )]
    AnyprevoutInactive {
        /// The executable that was started.
        path: PathBuf,
    },
    /// An RPC call failed.
    #[error(transparent)]
    Rpc(#[from] RpcError),
    /// The node answered with something the harness could not interpret.
    #[error("unexpected answer to {method}: {detail}")]
    UnexpectedAnswer {
        /// The RPC method.
        method: &'static str,
        /// What was wrong.
        detail: String,
    },
    /// The faucet has no coin large enough for a payment.
    #[error("faucet cannot pay {requested}: largest coin is {largest}")]
    FaucetEmpty {
        /// Amount requested.
        requested: Amount,
        /// The largest coin the faucet has.
        largest: Amount,
    },
    /// Waiting for a condition took too long.
    #[error("timed out after {after:?} waiting for {what}")]
    Timeout {
        /// What was awaited.
        what: String,
        /// How long the harness waited.
        after: Duration,
    },
    /// electrs was requested but not started.
    #[error("electrs was not started (set RegtestOptions::electrs)")]
    NoElectrs,
    /// The network server of an attached chain failed a request, or is not there.
    #[error("network server: {0}")]
    Network(String),
}

/// A coin the faucet can spend.
#[derive(Debug, Clone)]
struct FaucetCoin {
    outpoint: OutPoint,
    txout: TxOut,
    /// Height at which a coinbase output becomes spendable; 0 for other outputs.
    spendable_at: u64,
}

/// Faucet state: a single-key P2TR wallet owned by the harness.
struct Faucet {
    keypair: Keypair,
    script_pubkey: ScriptBuf,
    address: Address,
    coins: Vec<FaucetCoin>,
}

impl Faucet {
    /// The harness's faucet key on `network`, with no coins yet.
    fn new(network: Network) -> Self {
        let secp = Secp256k1::new();
        let secret = SecretKey::from_slice(
            bitcoin::hashes::sha256::Hash::hash(b"asyncpay/regtest-faucet").as_byte_array(),
        )
        .expect("a sha256 output is a valid secret key with overwhelming probability");
        let keypair = Keypair::from_secret_key(&secp, &secret);
        let (xonly, _) = keypair.x_only_public_key();
        let address = Address::p2tr(&secp, xonly, None, network);
        Faucet {
            keypair,
            script_pubkey: address.script_pubkey(),
            address,
            coins: Vec::new(),
        }
    }
}

/// A running regtest chain: bitcoind, optionally electrs, and a faucet. Either it started
/// them ([`Regtest::start`]; they stop when it is dropped), or it uses those of a network
/// server ([`Regtest::attach`]).
pub struct Regtest {
    // electrs must stop before bitcoind: fields drop in declaration order.
    electrs: Option<ElectrsD>,
    node: Node,
    binaries: Binaries,
    faucet: Mutex<Faucet>,
    /// The block signer of a private signet; `None` on regtest.
    signet: Option<SignetSigner>,
}

type ElectrumConnection = electrsd::electrum_client::raw_client::RawClient<
    electrsd::electrum_client::raw_client::ElectrumPlaintextStream,
>;

/// Runs a network server request from the harness's blocking API.
fn block_on<T>(
    request: impl std::future::Future<Output = Result<T, crate::chain::network::NetworkError>>,
) -> Result<T, HarnessError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| HarnessError::Network(e.to_string()))?;
    runtime
        .block_on(request)
        .map_err(|e| HarnessError::Network(e.to_string()))
}

/// The bitcoind a [`Regtest`] talks to.
// One per chain handle: the size difference costs nothing.
#[allow(clippy::large_enum_variant)]
enum Node {
    /// Started by the harness, stopped when it is dropped.
    Owned(BitcoinD),
    /// A network server's (`asyncpay regtest|signet up`): blocks and faucet payments are asked
    /// of the server, which holds the signet key and the faucet's coins.
    Attached {
        /// The network's data directory.
        data_dir: PathBuf,
        client: bitcoind::Client,
        rpc_url: String,
        cookie_file: PathBuf,
        /// electrs's address and a connection to it, if the network runs electrs.
        electrum: Option<(String, ElectrumConnection)>,
    },
}

impl std::fmt::Debug for Regtest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Regtest")
            .field("rpc", &self.rpc_url())
            .field("electrs", &self.electrum_url().ok())
            .field("attached", &matches!(self.node, Node::Attached { .. }))
            .field("binaries", &self.binaries)
            .finish()
    }
}

/// The cache directory `scripts/setup` uses.
pub fn cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("ASYNCPAY_CACHE") {
        return PathBuf::from(dir);
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."));
    home.join(".cache").join("asyncpay")
}

/// Reads `export NAME="value"` lines from the env file `scripts/setup` writes.
fn from_env_file(path: &Path, name: &str) -> Option<PathBuf> {
    let text = std::fs::read_to_string(path).ok()?;
    text.lines().find_map(|line| {
        let rest = line
            .trim()
            .strip_prefix("export ")?
            .strip_prefix(name)?
            .strip_prefix('=')?;
        Some(PathBuf::from(rest.trim_matches('"')))
    })
}

fn locate(name: &str) -> Option<PathBuf> {
    std::env::var_os(name)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| from_env_file(&cache_dir().join("env"), name))
        .filter(|p| p.is_file())
}

impl Binaries {
    /// Finds bitcoind (required) and electrs (optional) from the environment or the setup cache.
    pub fn locate() -> Result<Self, HarnessError> {
        let bitcoind = locate("BITCOIND_EXE").ok_or_else(|| HarnessError::BinaryNotFound {
            what: "bitcoind",
            hint: "run scripts/setup, or set BITCOIND_EXE to a BIP118-enforcing bitcoind".into(),
        })?;
        Ok(Self {
            bitcoind,
            electrs: locate("ELECTRS_EXE"),
        })
    }
}

/// What `asyncpay env` prints: the bitcoind and electrs the harness uses (`NAME=path`
/// lines) and, with `check`, whether that bitcoind enforces BIP118 (a throwaway regtest node
/// is started to ask it; an error if it does not).
pub fn check_environment(check: bool) -> Result<String, HarnessError> {
    let binaries = Binaries::locate()?;
    let mut report = format!("BITCOIND_EXE={}\n", binaries.bitcoind.display());
    match &binaries.electrs {
        Some(path) => report += &format!("ELECTRS_EXE={}\n", path.display()),
        None => report += "ELECTRS_EXE= (not found; run scripts/setup)\n",
    }
    if check {
        let chain = Regtest::start(RegtestOptions {
            require_anyprevout: false,
            ..Default::default()
        })?;
        if !chain.anyprevout_active()? {
            return Err(HarnessError::AnyprevoutInactive {
                path: binaries.bitcoind,
            });
        }
        report += "anyprevout active on regtest: true\n";
    }
    Ok(report)
}

fn rpc_error(method: &str, err: bitcoind::client::Error) -> RpcError {
    use bitcoind::client::Error as E;
    match err {
        E::JsonRpc(jsonrpc::error::Error::Rpc(e)) => RpcError {
            method: method.to_string(),
            code: Some(e.code),
            message: e.message,
        },
        other => RpcError {
            method: method.to_string(),
            code: None,
            message: other.to_string(),
        },
    }
}

impl Regtest {
    /// Starts bitcoind (and electrs if asked), mines the faucet's coins and, unless disabled,
    /// checks that BIP118 is enforced.
    pub fn start(options: RegtestOptions) -> Result<Self, HarnessError> {
        let binaries = Binaries::locate()?;
        let mut conf = bitcoind::Conf::default();
        conf.wallet = None;
        conf.view_stdout = options.verbose;
        conf.tmpdir.clone_from(&options.work_dir);
        // electrs 0.10 follows the node over p2p.
        conf.p2p = if options.electrs {
            bitcoind::P2P::Yes
        } else {
            bitcoind::P2P::No
        };
        let challenge_arg = options
            .signet
            .as_ref()
            .map(|signer| format!("-signetchallenge={}", signer.challenge().to_hex_string()));
        conf.args = match &challenge_arg {
            Some(challenge) => {
                conf.network = "signet";
                vec!["-signet", challenge.as_str()]
            }
            None => vec!["-regtest"],
        };
        conf.args
            .extend(["-txindex=1", "-debug=0", "-printtoconsole=0"]);
        if options.verbose {
            conf.args.retain(|a| *a != "-printtoconsole=0");
        }
        conf.args
            .extend(options.bitcoind_args.iter().map(String::as_str));
        let bitcoind =
            BitcoinD::with_conf(&binaries.bitcoind, &conf).map_err(|e| HarnessError::Spawn {
                what: "bitcoind",
                path: binaries.bitcoind.clone(),
                reason: format!("{e:#}"),
            })?;

        let faucet = Faucet::new(match options.signet {
            Some(_) => Network::Signet,
            None => Network::Regtest,
        });

        let mut chain = Self {
            electrs: None,
            node: Node::Owned(bitcoind),
            binaries,
            faucet: Mutex::new(faucet),
            signet: options.signet.clone(),
        };
        if options.require_anyprevout && !chain.anyprevout_active()? {
            return Err(HarnessError::AnyprevoutInactive {
                path: chain.binaries.bitcoind.clone(),
            });
        }
        chain.mine(INITIAL_BLOCKS)?;

        if options.electrs {
            let exe =
                chain
                    .binaries
                    .electrs
                    .clone()
                    .ok_or_else(|| HarnessError::BinaryNotFound {
                        what: "electrs",
                        hint: "run scripts/setup, or set ELECTRS_EXE".into(),
                    })?;
            let mut econf = electrsd::Conf::default();
            econf.view_stderr = options.verbose;
            econf.tmpdir.clone_from(&options.work_dir);
            let magic = options
                .signet
                .as_ref()
                .map(|signer| hex::encode(signet::magic(&signer.challenge())));
            if let Some(magic) = &magic {
                econf.network = "signet";
                econf.args.extend(["--signet-magic", magic.as_str()]);
            }
            let Node::Owned(bitcoind) = &chain.node else {
                unreachable!("a chain being started owns its node")
            };
            let electrs =
                ElectrsD::with_conf(&exe, bitcoind, &econf).map_err(|e| HarnessError::Spawn {
                    what: "electrs",
                    path: exe.clone(),
                    reason: format!("{e:#}"),
                })?;
            chain.electrs = Some(electrs);
            chain.wait_for_electrs_tip()?;
        }
        Ok(chain)
    }

    /// The chain of the network server running in `data_dir` (`asyncpay regtest|signet up`):
    /// its bitcoind (RPC with its cookie) and electrs; blocks are mined and faucet payments
    /// made by the server ([`crate::chain::network::mine`], [`crate::chain::network::faucet`]).
    /// Nothing is stopped when it is dropped. Checks that the node enforces BIP118 and that
    /// the network is `chain`. Call it outside any async runtime: the server's requests run
    /// on a runtime of their own.
    pub fn attach(
        data_dir: &Path,
        chain: crate::chain::network::Chain,
    ) -> Result<Self, HarnessError> {
        use crate::chain::network;
        let info = network::read_info(data_dir)
            .map_err(|e| HarnessError::Network(e.to_string()))?
            .ok_or_else(|| {
                HarnessError::Network(format!(
                    "no network runs in {} (start one with `asyncpay {} up --data-dir {}`)",
                    data_dir.display(),
                    chain.as_str(),
                    data_dir.display()
                ))
            })?;
        if info.chain != chain {
            return Err(HarnessError::Network(format!(
                "the network in {} is {}, not {}",
                data_dir.display(),
                info.chain.as_str(),
                chain.as_str()
            )));
        }
        let client = bitcoind::Client::new_with_auth(
            &info.rpc_url,
            corepc_regtest_client::Auth::CookieFile(info.rpc_cookie_file.clone()),
        )
        .map_err(|e| rpc_error("connect", e))?;
        let electrum = match &info.electrum_url {
            Some(url) => {
                let connection =
                    ElectrumConnection::new(url.as_str(), Some(Duration::from_secs(10)), None)
                        .map_err(|e| HarnessError::Network(format!("electrs at {url}: {e}")))?;
                Some((url.clone(), connection))
            }
            None => None,
        };
        let binaries = Binaries::locate()?;
        let faucet = Faucet::new(chain.bitcoin_network());
        let attached = Self {
            electrs: None,
            node: Node::Attached {
                data_dir: info.data_dir.clone(),
                client,
                rpc_url: info.rpc_url.clone(),
                cookie_file: info.rpc_cookie_file.clone(),
                electrum,
            },
            binaries,
            faucet: Mutex::new(faucet),
            signet: None,
        };
        if !attached.anyprevout_active()? {
            return Err(HarnessError::Network(format!(
                "the {} node at {} does not report the `anyprevout` deployment active",
                chain.as_str(),
                info.rpc_url
            )));
        }
        Ok(attached)
    }

    /// The binaries this chain runs.
    pub fn binaries(&self) -> &Binaries {
        &self.binaries
    }

    /// Calls an RPC method and decodes its result.
    pub fn rpc<T: serde::de::DeserializeOwned>(
        &self,
        method: &str,
        args: &[Value],
    ) -> Result<T, RpcError> {
        let client = match &self.node {
            Node::Owned(bitcoind) => &bitcoind.client,
            Node::Attached { client, .. } => client,
        };
        client
            .call::<T>(method, args)
            .map_err(|e| rpc_error(method, e))
    }

    /// The node's RPC URL (`http://127.0.0.1:port`).
    pub fn rpc_url(&self) -> String {
        match &self.node {
            Node::Owned(bitcoind) => bitcoind.rpc_url(),
            Node::Attached { rpc_url, .. } => rpc_url.clone(),
        }
    }

    /// The node's RPC cookie file.
    pub fn rpc_cookie_file(&self) -> &Path {
        match &self.node {
            Node::Owned(bitcoind) => &bitcoind.params.cookie_file,
            Node::Attached { cookie_file, .. } => cookie_file,
        }
    }

    /// The electrum server address (`127.0.0.1:port`), if electrs runs.
    pub fn electrum_url(&self) -> Result<String, HarnessError> {
        if let Node::Attached { electrum, .. } = &self.node {
            return electrum
                .as_ref()
                .map(|(url, _)| url.clone())
                .ok_or(HarnessError::NoElectrs);
        }
        let electrs = self.electrs.as_ref().ok_or(HarnessError::NoElectrs)?;
        Ok(electrs.electrum_url.replace("0.0.0.0", "127.0.0.1"))
    }

    /// Whether the node reports the `anyprevout` (BIP118) deployment as active.
    pub fn anyprevout_active(&self) -> Result<bool, HarnessError> {
        let info: Value = self.rpc("getdeploymentinfo", &[])?;
        Ok(info["deployments"]["anyprevout"]["active"]
            .as_bool()
            .unwrap_or(false))
    }

    /// Current block height.
    pub fn height(&self) -> Result<u64, HarnessError> {
        let h: u64 = self.rpc("getblockcount", &[])?;
        Ok(h)
    }

    /// Mines `n` blocks to the faucet (they contain what the mempool accepted) and returns
    /// their hashes. Coinbase outputs are remembered as faucet coins.
    pub fn mine(&self, n: u64) -> Result<Vec<BlockHash>, HarnessError> {
        if let Node::Attached { data_dir, .. } = &self.node {
            let height = block_on(crate::chain::network::mine(data_dir, n))?;
            return (height + 1 - n.min(height + 1)..=height)
                .map(|h| Ok(self.rpc("getblockhash", &[json!(h)])?))
                .collect();
        }
        let hashes: Vec<BlockHash> = match &self.signet {
            Some(signer) => {
                let payout = self.faucet_script_pubkey();
                (0..n)
                    .map(|_| self.mine_signed(signer, &payout))
                    .collect::<Result<_, _>>()?
            }
            None => {
                let address = self.faucet.lock().expect("faucet lock").address.to_string();
                self.rpc("generatetoaddress", &[json!(n), json!(address)])?
            }
        };
        let start = self.height()? + 1 - hashes.len() as u64;
        let mut faucet = self.faucet.lock().expect("faucet lock");
        for (i, hash) in hashes.iter().enumerate() {
            let block = self.block(hash)?;
            let coinbase = block.txdata.first().ok_or(HarnessError::UnexpectedAnswer {
                method: "getblock",
                detail: "block without coinbase".into(),
            })?;
            let txid = coinbase.compute_txid();
            for (vout, txout) in coinbase.output.iter().enumerate() {
                if txout.script_pubkey == faucet.script_pubkey && txout.value > Amount::ZERO {
                    faucet.coins.push(FaucetCoin {
                        outpoint: OutPoint {
                            txid,
                            vout: vout as u32,
                        },
                        txout: txout.clone(),
                        spendable_at: start + i as u64 + COINBASE_MATURITY,
                    });
                }
            }
        }
        drop(faucet);
        if let Some(electrs) = &self.electrs {
            let _ = electrs.trigger();
        }
        Ok(hashes)
    }

    /// Builds a signet block from the node's template (what its mempool holds), signs it
    /// with `signer`, grinds its proof of work and submits it.
    fn mine_signed(
        &self,
        signer: &SignetSigner,
        payout: &bitcoin::Script,
    ) -> Result<BlockHash, HarnessError> {
        let template: Value = self.rpc(
            "getblocktemplate",
            &[json!({"rules": ["segwit", "signet"]})],
        )?;
        let bad = |e: signet::SignetError| HarnessError::UnexpectedAnswer {
            method: "getblocktemplate",
            detail: e.to_string(),
        };
        let mut block = signet::block_from_template(&template, payout, b"asyncpay").map_err(bad)?;
        signer.sign(&mut block).map_err(bad)?;
        signet::grind(&mut block.header).map_err(bad)?;
        let answer: Value = self.rpc("submitblock", &[json!(serialize_hex(&block))])?;
        if !answer.is_null() {
            return Err(HarnessError::UnexpectedAnswer {
                method: "submitblock",
                detail: answer.to_string(),
            });
        }
        Ok(block.block_hash())
    }

    /// The block signer, on a private signet.
    pub fn signet_signer(&self) -> Option<&SignetSigner> {
        self.signet.as_ref()
    }

    /// Fetches a block.
    pub fn block(&self, hash: &BlockHash) -> Result<Block, HarnessError> {
        let hex: String = self.rpc("getblock", &[json!(hash.to_string()), json!(0)])?;
        deserialize_hex(&hex).map_err(|e| HarnessError::UnexpectedAnswer {
            method: "getblock",
            detail: e.to_string(),
        })
    }

    /// The faucet's output script. On an attached chain ([`Regtest::attach`]) the network
    /// server's faucet pays ([`Regtest::fund`]) and this script holds nothing.
    pub fn faucet_script_pubkey(&self) -> ScriptBuf {
        self.faucet
            .lock()
            .expect("faucet lock")
            .script_pubkey
            .clone()
    }

    /// Pays `amount` to `script_pubkey` from the faucet through the mempool (unconfirmed).
    /// Returns the new output.
    pub fn fund(
        &self,
        script_pubkey: &ScriptBuf,
        amount: Amount,
    ) -> Result<(OutPoint, TxOut), HarnessError> {
        if let Node::Attached { data_dir, .. } = &self.node {
            let paid = block_on(crate::chain::network::faucet(
                data_dir,
                script_pubkey,
                amount.to_sat(),
            ))?;
            return Ok((paid.outpoint, paid.txout));
        }
        let tip = self.height()?;
        let mut faucet = self.faucet.lock().expect("faucet lock");
        let needed = amount + FAUCET_FEE;
        let index = faucet
            .coins
            .iter()
            .enumerate()
            .filter(|(_, c)| c.spendable_at <= tip + 1 && c.txout.value >= needed)
            .min_by_key(|(_, c)| c.txout.value)
            .map(|(i, _)| i);
        let Some(index) = index else {
            let largest = faucet
                .coins
                .iter()
                .filter(|c| c.spendable_at <= tip + 1)
                .map(|c| c.txout.value)
                .max()
                .unwrap_or(Amount::ZERO);
            return Err(HarnessError::FaucetEmpty {
                requested: amount,
                largest,
            });
        };
        let coin = faucet.coins.swap_remove(index);
        let change = coin.txout.value - needed;
        let mut output = vec![TxOut {
            value: amount,
            script_pubkey: script_pubkey.clone(),
        }];
        if change > Amount::from_sat(1_000) {
            output.push(TxOut {
                value: change,
                script_pubkey: faucet.script_pubkey.clone(),
            });
        }
        let mut tx = Transaction {
            version: transaction::Version::TWO,
            lock_time: absolute::LockTime::ZERO,
            input: vec![TxIn {
                previous_output: coin.outpoint,
                script_sig: ScriptBuf::new(),
                sequence: Sequence::ENABLE_RBF_NO_LOCKTIME,
                witness: Witness::new(),
            }],
            output,
        };
        let secp = Secp256k1::new();
        let sighash = SighashCache::new(&tx)
            .taproot_key_spend_signature_hash(
                0,
                &Prevouts::All(std::slice::from_ref(&coin.txout)),
                TapSighashType::Default,
            )
            .expect("one input with its prevout");
        let tweaked = faucet.keypair.tap_tweak(&secp, None);
        let msg = bitcoin::secp256k1::Message::from_digest(sighash.to_byte_array());
        let sig = secp.sign_schnorr_no_aux_rand(&msg, &tweaked.to_keypair());
        tx.input[0].witness.push(sig.as_ref());

        let result = self.send_raw(&tx);
        let txid = match result {
            Ok(txid) => txid,
            Err(e) => {
                faucet.coins.push(coin);
                return Err(e.into());
            }
        };
        if tx.output.len() > 1 {
            faucet.coins.push(FaucetCoin {
                outpoint: OutPoint { txid, vout: 1 },
                txout: tx.output[1].clone(),
                spendable_at: 0,
            });
        }
        Ok((OutPoint { txid, vout: 0 }, tx.output[0].clone()))
    }

    /// Submits a transaction through the mempool (`sendrawtransaction`, default policy).
    /// A rejection carries the node's reason, e.g. a script verification error.
    pub fn send_raw(&self, tx: &Transaction) -> Result<Txid, RpcError> {
        let txid: Txid = self.rpc("sendrawtransaction", &[json!(serialize_hex(tx))])?;
        Ok(txid)
    }

    /// Asks the mempool whether it would accept `tx` (`testmempoolaccept`); returns the
    /// rejection reason if not.
    pub fn test_mempool_accept(&self, tx: &Transaction) -> Result<Result<(), String>, RpcError> {
        let v: Value = self.rpc("testmempoolaccept", &[json!([serialize_hex(tx)])])?;
        let entry = &v[0];
        if entry["allowed"].as_bool() == Some(true) {
            Ok(Ok(()))
        } else {
            Ok(Err(entry["reject-reason"]
                .as_str()
                .unwrap_or("unknown")
                .to_string()))
        }
    }

    /// Submits a package (parents first, child last) through `submitpackage`.
    /// Returns the node's answer; `package_msg` is `"success"` when all were accepted.
    pub fn submit_package(&self, txs: &[Transaction]) -> Result<Value, RpcError> {
        let hex: Vec<String> = txs.iter().map(serialize_hex).collect();
        self.rpc("submitpackage", &[json!(hex)])
    }

    /// Whether `txid` is in the mempool.
    pub fn in_mempool(&self, txid: &Txid) -> Result<bool, HarnessError> {
        match self.rpc::<Value>("getmempoolentry", &[json!(txid.to_string())]) {
            Ok(_) => Ok(true),
            Err(e) if e.code == Some(-5) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Confirmations of `txid` (0 if unconfirmed or unknown).
    pub fn confirmations(&self, txid: &Txid) -> Result<u64, HarnessError> {
        match self.rpc::<Value>("getrawtransaction", &[json!(txid.to_string()), json!(1)]) {
            Ok(v) => Ok(v["confirmations"].as_u64().unwrap_or(0)),
            Err(e) if e.code == Some(-5) => Ok(0),
            Err(e) => Err(e.into()),
        }
    }

    /// Mines one block and checks that `txid` is confirmed in it (the transaction must be in
    /// the mempool). Returns the confirming height.
    pub fn confirm(&self, txid: &Txid) -> Result<u64, HarnessError> {
        if !self.in_mempool(txid)? && self.confirmations(txid)? == 0 {
            return Err(HarnessError::UnexpectedAnswer {
                method: "getmempoolentry",
                detail: format!("{txid} is neither in the mempool nor confirmed"),
            });
        }
        self.mine(1)?;
        let confs = self.confirmations(txid)?;
        if confs == 0 {
            return Err(HarnessError::UnexpectedAnswer {
                method: "getrawtransaction",
                detail: format!("{txid} not confirmed by the next block"),
            });
        }
        Ok(self.height()? + 1 - confs)
    }

    /// A confirmed or mempool transaction by id (needs `-txindex`, which the harness sets).
    pub fn transaction(&self, txid: &Txid) -> Result<Transaction, HarnessError> {
        let hex: String = self.rpc("getrawtransaction", &[json!(txid.to_string())])?;
        deserialize_hex(&hex).map_err(|e| HarnessError::UnexpectedAnswer {
            method: "getrawtransaction",
            detail: e.to_string(),
        })
    }

    /// Waits until electrs has indexed the node's tip.
    pub fn wait_for_electrs_tip(&self) -> Result<(), HarnessError> {
        use electrsd::electrum_client::ElectrumApi;
        // An attached network's electrs is woken by its server when it mines.
        let (client, owned) = match (&self.node, &self.electrs) {
            (Node::Attached { electrum, .. }, _) => {
                let (_, client) = electrum.as_ref().ok_or(HarnessError::NoElectrs)?;
                (client, None)
            }
            (Node::Owned(_), Some(electrs)) => (&electrs.client, Some(electrs)),
            (Node::Owned(_), None) => return Err(HarnessError::NoElectrs),
        };
        let target = self.height()?;
        let started = Instant::now();
        let limit = Duration::from_secs(60);
        loop {
            if let Some(electrs) = owned {
                let _ = electrs.trigger();
            }
            if let Ok(header) = client.block_headers_subscribe_raw() {
                if header.height as u64 >= target {
                    return Ok(());
                }
            }
            while client.block_headers_pop_raw().ok().flatten().is_some() {}
            if started.elapsed() > limit {
                return Err(HarnessError::Timeout {
                    what: format!("electrs to reach height {target}"),
                    after: limit,
                });
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}
