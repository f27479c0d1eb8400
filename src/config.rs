//! The configuration file of the long-running commands: TOML, one table per command
//! (`[node]` for `asyncpay node run`, `[mailbox]` for `asyncpay mailbox serve`,
//! `[watchtower]` for `asyncpay watchtower serve`), each key the long name of one of the
//! command's flags (`-` or `_`), each value a string, an integer, a boolean or, for a flag
//! that may be repeated, an array of them. A flag on the command line overrides the file, and
//! so does the flag's environment variable where it has one; the file overrides the built-in
//! default. A key that names no flag of its command is an error, not ignored: a typo must
//! not silently leave a setting at its default.
//!
//! ```
//! use asyncpay::config::ConfigFile;
//!
//! let file = ConfigFile::parse(r#"
//!     [node]
//!     role = "lsp"
//!     data-dir = "/var/lib/asyncpay"
//!     network = "signet"
//!     electrum = "ssl://electrum.example.org:50002"
//!     shared_delay = 12
//!     log-json = true
//!     watchtower = ["https://tower-1.example.org", "https://tower-2.example.org"]
//! "#)?;
//! let node: Vec<_> = file.table("node").collect();
//! assert!(node.contains(&("shared-delay", &["12".to_string()][..])));
//! assert_eq!(file.table("mailbox").count(), 0);
//! # Ok::<(), asyncpay::config::ConfigError>(())
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The tables a configuration file may have.
pub const TABLES: [&str; 3] = ["node", "mailbox", "watchtower"];

/// Why a configuration file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("reading {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not TOML.
    #[error("{0}")]
    Toml(#[from] toml::de::Error),
    /// A top-level entry is not one of [`TABLES`].
    #[error("unknown table [{0}] (expected one of [node], [mailbox], [watchtower])")]
    UnknownTable(String),
    /// A value is neither a string, an integer, a boolean nor an array of them.
    #[error("[{table}] {key}: expected a string, an integer, a boolean or an array of them")]
    BadValue {
        /// The table.
        table: String,
        /// The key.
        key: String,
    },
    /// A key names no flag of its command.
    #[error("[{table}] {key}: no such option of `asyncpay {command}`")]
    UnknownKey {
        /// The table.
        table: String,
        /// The key.
        key: String,
        /// The command the table configures.
        command: &'static str,
    },
}

/// A parsed configuration file: for each table, each flag's values as text.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConfigFile {
    tables: BTreeMap<String, BTreeMap<String, Vec<String>>>,
}

impl ConfigFile {
    /// Reads and parses `path`.
    pub fn read(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&text)
    }

    /// Parses TOML text. Keys are normalised to flag names (`shared_delay` is
    /// `shared-delay`).
    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        let document: toml::Table = text.parse()?;
        let mut tables = BTreeMap::new();
        for (name, value) in document {
            if !TABLES.contains(&name.as_str()) {
                return Err(ConfigError::UnknownTable(name));
            }
            let toml::Value::Table(entries) = value else {
                return Err(ConfigError::UnknownTable(name));
            };
            let mut flags = BTreeMap::new();
            for (key, value) in entries {
                let bad = || ConfigError::BadValue {
                    table: name.clone(),
                    key: key.clone(),
                };
                let values = match value {
                    toml::Value::Array(items) => items
                        .into_iter()
                        .map(|item| scalar(item).ok_or_else(bad))
                        .collect::<Result<Vec<_>, _>>()?,
                    other => vec![scalar(other).ok_or_else(bad)?],
                };
                flags.insert(key.replace('_', "-"), values);
            }
            tables.insert(name, flags);
        }
        Ok(Self { tables })
    }

    /// The flags of `table` and their values, in key order; none if the file has no such
    /// table.
    pub fn table<'a>(&'a self, table: &str) -> impl Iterator<Item = (&'a str, &'a [String])> {
        self.tables
            .get(table)
            .into_iter()
            .flat_map(|flags| flags.iter().map(|(k, v)| (k.as_str(), v.as_slice())))
    }

    /// The command a table configures (`node` → `node run`).
    pub fn command(table: &str) -> Option<&'static str> {
        match table {
            "node" => Some("node run"),
            "mailbox" => Some("mailbox serve"),
            "watchtower" => Some("watchtower serve"),
            _ => None,
        }
    }
}

/// `command` (the whole `asyncpay` command line) with the values of `file` as the defaults of
/// the flags they name, so that a flag given on the command line, or its environment
/// variable, still wins. A flag the file sets is no longer required on the command line.
pub fn apply(mut command: clap::Command, file: &ConfigFile) -> Result<clap::Command, ConfigError> {
    for table in TABLES {
        let Some(path) = ConfigFile::command(table) else {
            continue;
        };
        for (key, values) in file.table(table) {
            let unknown = || ConfigError::UnknownKey {
                table: table.to_string(),
                key: key.to_string(),
                command: path,
            };
            let mut sub = &mut command;
            for word in path.split(' ') {
                sub = sub.find_subcommand_mut(word).ok_or_else(unknown)?;
            }
            let id = sub
                .get_arguments()
                .find(|a| a.get_long() == Some(key) && a.get_long() != Some("help"))
                .map(|a| a.get_id().clone())
                .ok_or_else(unknown)?;
            let values = values.to_vec();
            *sub =
                std::mem::take(sub).mut_arg(id, |arg| arg.default_values(values).required(false));
        }
    }
    Ok(command)
}

fn scalar(value: toml::Value) -> Option<String> {
    match value {
        toml::Value::String(s) => Some(s),
        toml::Value::Integer(n) => Some(n.to_string()),
        toml::Value::Boolean(b) => Some(b.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A toy `asyncpay` with `node run --role R --data-dir D [--watchtower U]... [--log-json]`.
    fn toy() -> clap::Command {
        let run = clap::Command::new("run")
            .arg(clap::Arg::new("role").long("role").required(true))
            .arg(
                clap::Arg::new("data_dir")
                    .long("data-dir")
                    .env("TOY_DATA_DIR"),
            )
            .arg(
                clap::Arg::new("watchtower")
                    .long("watchtower")
                    .action(clap::ArgAction::Append),
            )
            .arg(
                clap::Arg::new("log_json")
                    .long("log-json")
                    .action(clap::ArgAction::SetTrue),
            );
        clap::Command::new("asyncpay").subcommand(clap::Command::new("node").subcommand(run))
    }

    fn run_matches(command: clap::Command, args: &[&str]) -> clap::ArgMatches {
        let mut argv = vec!["asyncpay", "node", "run"];
        argv.extend_from_slice(args);
        let matches = command.try_get_matches_from(argv).expect("parses");
        let node = matches.subcommand_matches("node").expect("node").clone();
        node.subcommand_matches("run").expect("run").clone()
    }

    #[test]
    fn the_file_gives_defaults_that_flags_override_and_unknown_keys_are_refused() {
        let file = ConfigFile::parse(
            r#"
                [node]
                role = "lsp"
                data_dir = "/from/file"
                watchtower = ["http://a", "http://b"]
                log-json = true
            "#,
        )
        .expect("parses");
        let m = run_matches(apply(toy(), &file).expect("applies"), &[]);
        assert_eq!(m.get_one::<String>("role").map(String::as_str), Some("lsp"));
        assert_eq!(
            m.get_one::<String>("data_dir").map(String::as_str),
            Some("/from/file")
        );
        let towers: Vec<_> = m
            .get_many::<String>("watchtower")
            .expect("towers")
            .collect();
        assert_eq!(towers, ["http://a", "http://b"]);
        assert!(m.get_flag("log_json"));

        let m = run_matches(
            apply(toy(), &file).expect("applies"),
            &["--role", "payer", "--watchtower", "http://c"],
        );
        assert_eq!(
            m.get_one::<String>("role").map(String::as_str),
            Some("payer")
        );
        let towers: Vec<_> = m
            .get_many::<String>("watchtower")
            .expect("towers")
            .collect();
        assert_eq!(towers, ["http://c"], "a flag replaces the file's list");

        // Without the file, --role is still required.
        assert!(toy()
            .try_get_matches_from(["asyncpay", "node", "run"])
            .is_err());

        for bad in ["[node]\nrole_name = \"lsp\"\n", "[node]\nhelp = true\n"] {
            let file = ConfigFile::parse(bad).expect("parses");
            let error = apply(toy(), &file).expect_err("an unknown key is refused");
            assert!(matches!(error, ConfigError::UnknownKey { .. }), "{error}");
        }
        let file = ConfigFile::parse("[mailbox]\nlisten = \"x\"\n").expect("parses");
        assert!(
            apply(toy(), &file).is_err(),
            "a table whose command the program lacks is refused"
        );
    }

    #[test]
    fn tables_keys_and_values_are_read_and_checked() {
        let file = ConfigFile::parse(
            "[mailbox]\nlisten = \"0.0.0.0:8080\"\nmax_queue = 10\n\
             trusted-proxy = [\"127.0.0.1\"]\n[node]\nlog_json = false\n",
        )
        .expect("parses");
        let mailbox: Vec<_> = file.table("mailbox").collect();
        assert_eq!(
            mailbox,
            vec![
                ("listen", &["0.0.0.0:8080".to_string()][..]),
                ("max-queue", &["10".to_string()][..]),
                ("trusted-proxy", &["127.0.0.1".to_string()][..]),
            ]
        );
        assert_eq!(
            file.table("node").collect::<Vec<_>>(),
            vec![("log-json", &["false".to_string()][..])]
        );
        assert_eq!(ConfigFile::command("node"), Some("node run"));

        for (bad, why) in [
            ("[nodes]\nrole = \"lsp\"\n", "an unknown table"),
            ("role = \"lsp\"\n", "a key outside any table"),
            ("[node]\nshared-delay = 1.5\n", "a float"),
            ("[node]\nrole = { name = \"lsp\" }\n", "a table as a value"),
            ("[node]\nwatchtower = [[\"a\"]]\n", "a nested array"),
            ("[node\n", "not TOML"),
        ] {
            assert!(ConfigFile::parse(bad).is_err(), "{why} is refused");
        }
    }
}
