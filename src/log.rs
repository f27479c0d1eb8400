//! The processes' logs: one `tracing` subscriber, filtered by `RUST_LOG` (default `info`),
//! writing text or JSON lines. `asyncpay mailbox serve` logs to stderr; `asyncpay node run`
//! to a private file in its data directory, since its stdout and stderr carry its events as
//! JSON lines.

use std::path::Path;

use tracing_subscriber::fmt::MakeWriter;

/// Why the log could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// The log file could not be created or opened.
    #[error("log file {path}: {source}")]
    File {
        /// The file.
        path: std::path::PathBuf,
        /// The failure.
        #[source]
        source: std::io::Error,
    },
    /// A subscriber was already installed in this process.
    #[error("a logger is already installed: {0}")]
    Installed(String),
}

/// Installs the process's subscriber, writing to `writer` (text, or JSON lines with
/// `json`), filtered by `RUST_LOG` (default `info`).
pub fn init<W>(json: bool, writer: W) -> Result<(), LogError>
where
    W: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(false)
        .with_writer(writer);
    let installed = if json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
    installed.map_err(|e| LogError::Installed(e.to_string()))
}

/// [`init`] to the file at `path`, created 0600 if missing and appended to.
pub fn init_file(path: &Path, json: bool) -> Result<(), LogError> {
    let file_error = |source| LogError::File {
        path: path.to_owned(),
        source,
    };
    crate::node::files::private_file(path).map_err(|e| file_error(std::io::Error::other(e)))?;
    let file = std::fs::OpenOptions::new()
        .append(true)
        .open(path)
        .map_err(file_error)?;
    init(json, std::sync::Mutex::new(file))
}
