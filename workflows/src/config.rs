//! The stack config file (YAML): what the user declares, read in this one place. Today it
//! holds the hosts; the rest of the stack's schema joins it here.

use std::path::{Path, PathBuf};

use foundry_activities::ssh::SshTarget;
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

impl HostEntry {
    /// How to reach the host over SSH: its key and host key must be known.
    pub fn ssh_target(&self) -> Result<SshTarget, String> {
        let missing = |what: &str| {
            format!(
                "host `{}` has no {what} yet\nhint: add it with `foundry host add {}`",
                self.name, self.name
            )
        };
        Ok(SshTarget {
            address: self.address.clone(),
            port: self.port,
            user: self.user.clone(),
            key: self.key.clone().ok_or_else(|| missing("key"))?,
            host_key: self.host_key.clone().ok_or_else(|| missing("host key"))?,
        })
    }
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
    #[error("several stack configs in {} and none chosen: {}", dir.display(), list(found))]
    Ambiguous { dir: PathBuf, found: Vec<PathBuf> },
    #[error("no stack config in {}", dir.display())]
    Missing { dir: PathBuf },
}

fn list(paths: &[PathBuf]) -> String {
    paths
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

impl ConfigError {
    /// What the user can do about it.
    pub fn hint(&self) -> Option<String> {
        match self {
            ConfigError::Ambiguous { .. } => Some(format!(
                "choose one with `--config PATH` or {CONFIG_ENV}=PATH"
            )),
            ConfigError::Missing { .. } => Some(format!(
                "`foundry host add` creates one; or name one with `--config PATH` or {CONFIG_ENV}=PATH"
            )),
            _ => None,
        }
    }
}

/// The environment variable that names the stack config.
pub const CONFIG_ENV: &str = "FOUNDRY_CONFIG";
/// The config `foundry host add` creates in a home that has none.
pub const DEFAULT_NAME: &str = "foundry.yaml";

/// The stack config a command works on, and whether it exists yet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Selected {
    pub path: PathBuf,
    pub exists: bool,
}

impl Selected {
    /// The config, or an empty one if the file is not there yet.
    pub fn load_or_default(&self) -> Result<StackConfig, ConfigError> {
        if self.exists {
            load(&self.path)
        } else {
            Ok(StackConfig::default())
        }
    }

    /// The config, which must exist.
    pub fn load(&self) -> Result<StackConfig, ConfigError> {
        load(&self.path)
    }
}

/// Chooses the stack config: `flag` (`--config`), else `$FOUNDRY_CONFIG`, else the only
/// `*.yaml` in the Foundry home `home`. Several there and none chosen: refused, listing
/// them (never a guess). None at all: `home/foundry.yaml`, not existing yet.
pub fn select(flag: Option<&Path>, home: &Path) -> Result<Selected, ConfigError> {
    let env = std::env::var_os(CONFIG_ENV).filter(|v| !v.is_empty());
    if let Some(path) = flag.map(Path::to_path_buf).or(env.map(PathBuf::from)) {
        let exists = path.exists();
        return Ok(Selected { path, exists });
    }
    let mut found: Vec<PathBuf> = match std::fs::read_dir(home) {
        Ok(entries) => entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.is_file() && p.extension().is_some_and(|x| x == "yaml"))
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => {
            return Err(ConfigError::Read {
                path: home.to_path_buf(),
                detail: e.to_string(),
            });
        }
    };
    found.sort();
    match found.len() {
        0 => Ok(Selected {
            path: home.join(DEFAULT_NAME),
            exists: false,
        }),
        1 => Ok(Selected {
            path: found.remove(0),
            exists: true,
        }),
        _ => Err(ConfigError::Ambiguous {
            dir: home.to_path_buf(),
            found,
        }),
    }
}

/// Writes `config` to `path` (0600, by rename, so a reader never sees half a file).
pub fn save(path: &Path, config: &StackConfig, comment: &str) -> Result<(), ConfigError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let invalid = |detail: String| ConfigError::Invalid {
        path: path.to_path_buf(),
        detail,
    };
    check(config).map_err(invalid)?;
    let text = render(config, comment).map_err(invalid)?;
    let write = |e: std::io::Error| ConfigError::Write {
        path: path.to_path_buf(),
        detail: e.to_string(),
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(write)?;
    }
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".partial");
    let tmp = PathBuf::from(tmp);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(write)?;
    file.write_all(text.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(write)?;
    std::fs::rename(&tmp, path).map_err(write)
}

impl StackConfig {
    pub fn host(&self, name: &str) -> Option<&HostEntry> {
        self.hosts.iter().find(|h| h.name == name)
    }

    /// Adds `entry`, or replaces the host of that name where it is.
    pub fn upsert_host(&mut self, entry: HostEntry) {
        match self.hosts.iter_mut().find(|h| h.name == entry.name) {
            Some(slot) => *slot = entry,
            None => self.hosts.push(entry),
        }
    }
}

/// A host's name is safe as a file name and in a shell word: letters, digits, `-` and `.`,
/// starting with a letter or digit.
pub fn check_host_name(name: &str) -> Result<(), String> {
    let valid = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.');
    if valid {
        Ok(())
    } else {
        Err(format!(
            "host name `{name}`: use letters, digits, `-` and `.`, starting with a letter or digit"
        ))
    }
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
        check_host_name(&host.name).map_err(|e| format!("hosts[{i}]: {e}"))?;
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
                .contains("hosts[0]: host name `a;rm -rf /`")
        );
        assert!(err("hosts:\n  - {name: '..', address: x}\n").contains("host name `..`"));
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

#[cfg(test)]
mod select_tests {
    use super::*;

    #[test]
    fn the_only_yaml_or_a_refusal_that_lists_them() {
        let dir = tempfile::tempdir().expect("tempdir");
        let home = dir.path();
        // The environment is the process's: these cases name no env, so clear it here.
        let none = select(None, home).expect("none");
        assert_eq!(none.path, home.join(DEFAULT_NAME));
        assert!(!none.exists);
        std::fs::write(home.join("lab-a.yaml"), "").expect("write");
        std::fs::write(home.join("notes.txt"), "").expect("write");
        let one = select(None, home).expect("one");
        assert_eq!((one.path, one.exists), (home.join("lab-a.yaml"), true));
        std::fs::write(home.join("b.yaml"), "").expect("write");
        let err = select(None, home).expect_err("two");
        let text = err.to_string();
        assert!(
            text.contains("b.yaml") && text.contains("lab-a.yaml"),
            "{text}"
        );
        assert!(err.hint().is_some_and(|h| h.contains("--config")));
        let chosen = select(Some(&home.join("b.yaml")), home).expect("flag");
        assert_eq!(chosen.path, home.join("b.yaml"));
    }

    #[test]
    fn save_writes_privately_and_loads_back() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("sub").join("stack.yaml");
        let mut config = StackConfig::default();
        config.upsert_host(HostEntry {
            name: "web-1".into(),
            address: "10.0.0.5".into(),
            user: "admin".into(),
            port: 22,
            key: None,
            host_key: None,
        });
        save(&path, &config, "test").expect("save");
        assert_eq!(load(&path).expect("load"), config);
        let mode = std::fs::metadata(&path).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        config.hosts[0].name = "a b".into();
        assert!(save(&path, &config, "test").is_err());
    }
}
