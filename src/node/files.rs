//! Private files of a process that keeps secrets (the node, the watchtower): a 0700 data
//! directory, 0600 files written atomically, and the seed.
//!
//! ```
//! use asyncpay::node::files::{load_seed, private_dir};
//!
//! let dir = tempfile::tempdir()?;
//! let data = dir.path().join("node");
//! private_dir(&data)?;
//! let seed = load_seed(&data)?;
//! assert_eq!(load_seed(&data)?, seed, "created once, then read");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::path::{Path, PathBuf};

/// A file operation that failed, with the file.
#[derive(Debug, thiserror::Error)]
#[error("{what} {path}: {source}")]
pub struct FileError {
    /// What was being done.
    pub what: &'static str,
    /// The file.
    pub path: PathBuf,
    /// Why it failed.
    pub source: std::io::Error,
}

fn at(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> FileError {
    let path = path.to_path_buf();
    move |source| FileError { what, path, source }
}

/// The 32-byte seed in `dir/seed`, created (random, 0600) if missing.
pub fn load_seed(dir: &Path) -> Result<[u8; 32], FileError> {
    let path = dir.join("seed");
    if !path.exists() {
        // A new node: its receipt card epoch is 0, written first, so that a seed never
        // stands without its epoch.
        write_private(&dir.join(RECEIPT_EPOCH_FILE), b"0")?;
        let seed: [u8; 32] = rand::random();
        write_private(&path, hex::encode(seed).as_bytes())?;
    }
    let text = std::fs::read_to_string(&path).map_err(at("reading", &path))?;
    let mut seed = [0u8; 32];
    hex::decode_to_slice(text.trim(), &mut seed).map_err(|_| FileError {
        what: "decoding (32 hex bytes expected)",
        path: path.clone(),
        source: std::io::ErrorKind::InvalidData.into(),
    })?;
    Ok(seed)
}

/// The BIP39 mnemonic (24 English words) of a 32-byte seed: how a node's seed is written
/// down, and restored with [`restore_seed`].
///
/// ```
/// use asyncpay::node::files::seed_mnemonic;
/// let words = seed_mnemonic(&[0u8; 32]);
/// assert_eq!(words.split(' ').count(), 24);
/// assert!(words.starts_with("abandon abandon"));
/// assert!(words.ends_with(" art"), "BIP39's all-zero 256-bit vector");
/// ```
pub fn seed_mnemonic(seed: &[u8; 32]) -> String {
    bip39::Mnemonic::from_entropy(seed)
        .expect("32 bytes are valid BIP39 entropy")
        .to_string()
}

/// A mnemonic that is not 24 valid BIP39 English words with a correct checksum.
#[derive(Debug, thiserror::Error)]
#[error("not a 24-word BIP39 mnemonic: {0}")]
pub struct BadMnemonic(String);

/// The seed written down as `words` (see [`seed_mnemonic`]).
pub fn seed_from_mnemonic(words: &str) -> Result<[u8; 32], BadMnemonic> {
    let mnemonic =
        bip39::Mnemonic::parse_normalized(words.trim()).map_err(|e| BadMnemonic(e.to_string()))?;
    let (entropy, len) = mnemonic.to_entropy_array();
    <[u8; 32]>::try_from(&entropy[..len]).map_err(|_| {
        BadMnemonic(format!(
            "{} words; a node seed has 24",
            mnemonic.word_count()
        ))
    })
}

/// Writes the seed of `words` as `dir/seed` (0600), for a node restored from its mnemonic,
/// after a new receipt card epoch (returned): the store with the record of the receipt slots
/// the node spent is not in the seed. Refuses to overwrite a seed that is there already.
pub fn restore_seed(dir: &Path, seed: &[u8; 32]) -> Result<u32, FileError> {
    let path = dir.join("seed");
    if path.exists() {
        return Err(FileError {
            what: "refusing to overwrite",
            path,
            source: std::io::ErrorKind::AlreadyExists.into(),
        });
    }
    private_dir(dir)?;
    // The epoch first: a seed never stands without its epoch, even if this stops between.
    let epoch = new_receipt_epoch(dir)?;
    write_private(&path, hex::encode(seed).as_bytes())?;
    Ok(epoch)
}

/// The file of a node's receipt card epoch, beside its seed.
const RECEIPT_EPOCH_FILE: &str = "receipt-epoch";

/// The node's receipt card epoch (`dir/receipt-epoch`, a decimal number), written with its
/// seed. A seed without it is refused: the node may have been restored without its record
/// of spent receipt slots (`asyncpay node new-receipt-epoch` gives it one).
pub fn receipt_epoch(dir: &Path) -> Result<u32, FileError> {
    let path = dir.join(RECEIPT_EPOCH_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => text.trim().parse().map_err(|_| FileError {
            what: "parsing (a decimal number)",
            path,
            source: std::io::ErrorKind::InvalidData.into(),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(FileError {
            what: "reading the receipt card epoch (a seed without one may have lost its record \
                   of spent receipt slots: run `asyncpay node new-receipt-epoch`)",
            path,
            source: e,
        }),
        Err(e) => Err(FileError {
            what: "reading",
            path,
            source: e,
        }),
    }
}

/// Gives the node a new receipt card epoch, at random (never 0): after a restore, the
/// node's record of which receipt slots it spent may be gone, and a slot must never sign two
/// messages. Cards issued before are void; letters naming them are refused.
pub fn new_receipt_epoch(dir: &Path) -> Result<u32, FileError> {
    let epoch = rand::random::<u32>().max(1);
    private_dir(dir)?;
    write_private(&dir.join(RECEIPT_EPOCH_FILE), epoch.to_string().as_bytes())?;
    Ok(epoch)
}

/// Creates `dir` (and its parents) if missing and makes it 0700: the node's files hold its
/// secrets.
pub fn private_dir(dir: &Path) -> Result<(), FileError> {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::create_dir_all(dir).map_err(at("creating", dir))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .map_err(at("making private", dir))
}

/// Creates the SQLite database `path` as an empty file with mode 0600 if it is missing, and
/// brings an existing one (with its `-wal` and `-shm` files) to 0600.
pub fn private_file(path: &Path) -> Result<(), FileError> {
    use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
        .map_err(at("creating", path))?;
    for suffix in ["", "-wal", "-shm"] {
        let mut name = path.as_os_str().to_owned();
        name.push(suffix);
        let file = PathBuf::from(name);
        if file.exists() {
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600))
                .map_err(at("making private", &file))?;
        }
    }
    Ok(())
}

/// Writes `bytes` to `path` with mode 0600, atomically (a temporary file, synced, renamed).
pub fn write_private(path: &Path, bytes: &[u8]) -> Result<(), FileError> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let tmp = path.with_extension("tmp");
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(at("creating", &tmp))?;
    file.write_all(bytes).map_err(at("writing", &tmp))?;
    file.sync_all().map_err(at("syncing", &tmp))?;
    std::fs::rename(&tmp, path).map_err(at("renaming into", path))
}
