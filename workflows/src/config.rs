//! The stack config file (YAML): what the user declares, read in this one place. Today it
//! holds the hosts; the rest of the stack's schema joins it here.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StackConfig {
    #[serde(default)]
    pub hosts: Vec<HostEntry>,
}

/// A host Foundry manages.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostEntry {
    /// A short name: letters, digits, `-` and `.`.
    pub name: String,
    pub address: String,
    #[serde(default = "default_user")]
    pub user: String,
    #[serde(default = "default_port")]
    pub port: u16,
    /// The private key Foundry logs in with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<PathBuf>,
    /// The host's public host key (`ssh-ed25519 AAAA…`), once known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_key: Option<String>,
}

fn default_user() -> String {
    "root".into()
}

fn default_port() -> u16 {
    22
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading config {}: {detail}", path.display())]
    Read { path: PathBuf, detail: String },
    #[error("config {}: line {line} column {column}: {message}", path.display())]
    Syntax {
        path: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },
    #[error("config {}: {detail}", path.display())]
    Invalid { path: PathBuf, detail: String },
    #[error("writing config {}: {detail}", path.display())]
    Write { path: PathBuf, detail: String },
}

/// Reads and checks the config at `path`.
pub fn load(path: &Path) -> Result<StackConfig, ConfigError> {
    let bytes = std::fs::read(path).map_err(|e| ConfigError::Read {
        path: path.to_path_buf(),
        detail: e.to_string(),
    })?;
    let text = String::from_utf8(bytes).map_err(|_| ConfigError::Read {
        path: path.to_path_buf(),
        detail: "not UTF-8 text".into(),
    })?;
    parse(path, &text)
}

/// Parses and checks config text; `path` names it in errors.
pub fn parse(path: &Path, text: &str) -> Result<StackConfig, ConfigError> {
    let config: StackConfig = if text.trim().is_empty() {
        StackConfig::default()
    } else {
        serde_saphyr::from_str(text).map_err(|e| {
            let location = e.location();
            // The first line says it all; the rest is a drawing of the spot.
            let full = e.to_string();
            let first = full.lines().next().unwrap_or_default();
            let first = first.strip_prefix("error: ").unwrap_or(first);
            let message = match first.split_once(": ") {
                Some((head, rest)) if head.starts_with("line ") => rest,
                _ => first,
            }
            .to_string();
            ConfigError::Syntax {
                path: path.to_path_buf(),
                line: location.as_ref().map_or(0, |l| l.line() as usize),
                column: location.as_ref().map_or(0, |l| l.column() as usize),
                message,
            }
        })?
    };
    check(&config).map_err(|detail| ConfigError::Invalid {
        path: path.to_path_buf(),
        detail,
    })?;
    Ok(config)
}

fn check(config: &StackConfig) -> Result<(), String> {
    let mut names = std::collections::BTreeSet::new();
    for (i, host) in config.hosts.iter().enumerate() {
        let valid = !host.name.is_empty()
            && host
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.');
        if !valid {
            return Err(format!(
                "hosts[{i}]: name `{}`: use letters, digits, `-` and `.`",
                host.name
            ));
        }
        if !names.insert(host.name.as_str()) {
            return Err(format!(
                "hosts[{i}]: the name `{}` is used twice",
                host.name
            ));
        }
        if host.address.trim().is_empty() || host.address.chars().any(char::is_whitespace) {
            return Err(format!(
                "hosts[{i}] ({}): address `{}` is not an address",
                host.name, host.address
            ));
        }
    }
    Ok(())
}

/// The config as YAML, under a comment line.
pub fn render(config: &StackConfig, comment: &str) -> Result<String, String> {
    let body = serde_saphyr::to_string(config).map_err(|e| e.to_string())?;
    Ok(format!("# {comment}\n{body}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> String {
        parse(Path::new("/etc/stack.yaml"), text)
            .expect_err("refused")
            .to_string()
    }

    #[test]
    fn errors_name_the_file_line_and_column() {
        assert_eq!(
            err("hosts:\n  - name: a\n    address: 10.0.0.1\n    portt: 22\n"),
            "config /etc/stack.yaml: line 4 column 5: unknown field `portt`, expected one of name, address, user, port, key, host_key"
        );
        assert!(
            err("hosts:\n  - name: a\n    address: b\n    port: 99999\n")
                .contains("line 4 column 11")
        );
        assert!(err("hosts: [\n").contains("line 1 column 8"));
        assert!(err("hostz: []\n").contains("unknown field `hostz`"));
    }

    #[test]
    fn hosts_are_checked() {
        assert!(
            err("hosts:\n  - {name: 'a;rm -rf /', address: x}\n")
                .contains("hosts[0]: name `a;rm -rf /`")
        );
        assert!(
            err("hosts:\n  - {name: a, address: x}\n  - {name: a, address: y}\n")
                .contains("used twice")
        );
        assert!(err("hosts:\n  - {name: a, address: ''}\n").contains("is not an address"));
    }

    #[test]
    fn round_trips_with_defaults() {
        let config = parse(
            Path::new("x"),
            "hosts:\n  - {name: web-1, address: 10.0.0.5}\n",
        )
        .expect("parse");
        assert_eq!(config.hosts[0].user, "root");
        assert_eq!(config.hosts[0].port, 22);
        let text = render(&config, "test").expect("render");
        assert_eq!(parse(Path::new("x"), &text).expect("again"), config);
        assert_eq!(
            parse(Path::new("x"), "").expect("empty"),
            StackConfig::default()
        );
    }
}
