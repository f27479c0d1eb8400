//! Private files of a process that keeps secrets (the node, the watchtower): a 0700 data
//! directory, 0600 files written atomically, and the seed.

use std::path::{Path, PathBuf};

use anyhow::Context;

/// The 32-byte seed in `dir/seed`, created (random, 0600) if missing.
pub(crate) fn load_seed(dir: &Path) -> anyhow::Result<[u8; 32]> {
    let path = dir.join("seed");
    if !path.exists() {
        let seed: [u8; 32] = rand::random();
        write_private(&path, hex::encode(seed).as_bytes())?;
    }
    let text = std::fs::read_to_string(&path)?;
    let mut seed = [0u8; 32];
    hex::decode_to_slice(text.trim(), &mut seed).context("seed file is not 32 hex bytes")?;
    Ok(seed)
}

/// Creates `dir` (and its parents) if missing and makes it 0700: the node's files hold its
/// secrets.
pub(crate) fn private_dir(dir: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .with_context(|| format!("making {} private", dir.display()))?;
    Ok(())
}

/// Creates the SQLite database `path` as an empty file with mode 0600 if it is missing, and
/// brings an existing one (with its `-wal` and `-shm` files) to 0600.
pub(crate) fn private_file(path: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    for suffix in ["", "-wal", "-shm"] {
        let mut name = path.as_os_str().to_owned();
        name.push(suffix);
        let file = PathBuf::from(name);
        if file.exists() {
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600))
                .with_context(|| format!("making {} private", file.display()))?;
        }
    }
    Ok(())
}

pub(crate) fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let tmp = path.with_extension("tmp");
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .mode(0o600)
        .open(&tmp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}
