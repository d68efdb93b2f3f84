//! The stack config file (YAML): what the user declares, read in this one place. Types
//! that check their own values are in `value`, the schema beyond hosts in `schema`, and
//! the checks that compare fields in `check`.

pub mod charts;
mod check;
pub mod place;
pub mod schema;
mod section;
pub mod value;

use std::path::{Path, PathBuf};

use foundry_activities::ssh::{KeySource, SshTarget};
use serde::{Deserialize, Serialize};

pub(crate) use check::{service_addresses, taken_by};
pub use schema::*;
pub use value::{At, Cidr, DnsName, KeyField, SecretField};

use crate::secret_ref::{self, SecretRef};

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StackConfig {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hosts: Vec<HostEntry>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<Network>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns: Option<Dns>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<Cluster>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub components: Option<Components>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observability: Option<Observability>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage: Option<Storage>,
    /// An older setup's progress flags: read once to import that setup, never written.
    /// Progress lives in the journal.
    #[serde(default, rename = "_setup_state", skip_serializing)]
    pub legacy_setup_state: Option<std::collections::BTreeMap<String, bool>>,
}

/// A host Foundry manages.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostEntry {
    /// A short name: letters, digits, `-` and `.`.
    pub name: String,
    /// An IP address or a DNS name.
    #[serde(deserialize_with = "value::address")]
    pub address: String,
    #[serde(default = "default_user")]
    pub user: String,
    #[serde(default = "default_port")]
    pub port: u16,
    /// The private key Foundry logs in with: a file, or a reference to a key kept in
    /// OpenBAO (`${secret:foundry/ssh-keys/NAME:private_key}`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<KeyField>,
    /// The host's public host key (`ssh-ed25519 AAAA…`), once known.
    #[serde(
        default,
        deserialize_with = "value::host_key",
        skip_serializing_if = "Option::is_none"
    )]
    pub host_key: Option<String>,
}

fn default_user() -> String {
    "root".into()
}

fn default_port() -> u16 {
    22
}

/// Why a host of the config cannot be reached yet, and what to do.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct TargetError {
    pub message: String,
    pub hint: String,
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
    #[error("config {}: line {line} column {column}: {message}", path.display())]
    Unresolved {
        path: PathBuf,
        line: usize,
        column: usize,
        message: String,
        hint: Option<String>,
    },
    #[error("writing config {}: {detail}", path.display())]
    Write { path: PathBuf, detail: String },
    #[error("several stack configs in {} and none chosen: {}", dir.display(), joined(found))]
    Ambiguous { dir: PathBuf, found: Vec<PathBuf> },
    #[error("no stack config in {}", dir.display())]
    Missing { dir: PathBuf },
}

fn joined(paths: &[PathBuf]) -> String {
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
            ConfigError::Unresolved { hint, .. } => hint.clone(),
            _ => None,
        }
    }
}

/// What `foundry config init` writes: a stack with every section, commented.
pub const TEMPLATE: &str = include_str!("config/template.yaml");

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
    let mut found = list(home)?;
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

/// The stack configs in the Foundry home `home`: its `*.yaml` files, sorted.
pub fn list(home: &Path) -> Result<Vec<PathBuf>, ConfigError> {
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
    Ok(found)
}

/// Writes `config` to `path` (0600, by rename, so a reader never sees half a file).
pub fn save(path: &Path, config: &StackConfig, comment: &str) -> Result<(), ConfigError> {
    let invalid = |detail: String| ConfigError::Invalid {
        path: path.to_path_buf(),
        detail,
    };
    check(config).map_err(invalid)?;
    let text = render(config, comment).map_err(invalid)?;
    write_text(path, &text)
}

/// Writes config text to `path` (0600, by rename), once it parses and checks.
pub fn write_text(path: &Path, text: &str) -> Result<(), ConfigError> {
    parse(path, text)?;
    foundry_core::files::write_private(path, text.as_bytes()).map_err(|e| ConfigError::Write {
        path: path.to_path_buf(),
        detail: e.to_string(),
    })
}

/// Writes `config`, which differs from the config file at `path` (whose text is `text`)
/// only in its top-level section `key`, by replacing that section's text: the rest of the
/// file keeps its comments and layout. When the edited text would not read back as
/// `config`, the whole config is written out instead (under `comment`); whether the layout
/// was kept.
pub fn write_section(
    path: &Path,
    text: &str,
    config: &StackConfig,
    key: &str,
    comment: &str,
) -> Result<bool, ConfigError> {
    let invalid = |detail: String| ConfigError::Invalid {
        path: path.to_path_buf(),
        detail,
    };
    check(config).map_err(invalid)?;
    let rendered = render(config, comment).map_err(invalid)?;
    let new = section::section(&rendered, key).unwrap_or_default();
    let edited = section::replaced(text, key, &new);
    if parse(path, &edited).ok().as_ref() == Some(config) {
        write_text(path, &edited)?;
        Ok(true)
    } else {
        write_text(path, &rendered)?;
        Ok(false)
    }
}

/// OpenBAO's API port.
pub const OPENBAO_PORT: u16 = 8200;

/// `https://HOST:PORT`, with an IPv6 address in brackets as URLs need it.
pub(crate) fn https_url(host: &str, port: u16) -> String {
    match host.parse::<std::net::Ipv6Addr>() {
        Ok(_) => format!("https://[{host}]:{port}"),
        Err(_) => format!("https://{host}:{port}"),
    }
}

impl StackConfig {
    /// Where OpenBAO answers: `components.openbao.address`, else the address of the first
    /// of `network.openbao_hosts`.
    pub fn openbao_address(&self) -> Option<String> {
        let components = self.components.as_ref();
        if let Some(address) = components.and_then(|c| c.openbao.address.as_ref()) {
            return Some(address.value.to_string());
        }
        let first = self.network.as_ref()?.openbao_hosts.first()?;
        self.host_named_or_at(&first.value)
            .map(|h| h.address.clone())
    }

    /// OpenBAO's API as this config places it: `https://ADDRESS:8200` (an IPv6 address in
    /// brackets).
    pub fn openbao_url(&self) -> Option<String> {
        self.openbao_address()
            .map(|address| https_url(&address, OPENBAO_PORT))
    }

    pub fn host(&self, name: &str) -> Option<&HostEntry> {
        self.hosts.iter().find(|h| h.name == name)
    }

    /// The host that `entry` names, by its name or its address (as `network.*_hosts`,
    /// `cluster.nodes` and `components.*.host` may).
    pub fn host_named_or_at(&self, entry: &str) -> Option<&HostEntry> {
        self.hosts
            .iter()
            .find(|h| h.name == entry || h.address == entry)
    }

    /// How to reach the host `entry` over SSH: its key and host key must be known. A key
    /// kept in OpenBAO is read from the OpenBAO this config names, at login.
    pub fn ssh_target(&self, entry: &HostEntry) -> Result<SshTarget, TargetError> {
        let name = &entry.name;
        let key = match &entry.key {
            None => {
                return Err(TargetError {
                    message: format!("host {name}: no login key in the config"),
                    hint: format!("`foundry host add {name}` makes one"),
                });
            }
            Some(KeyField::File(path)) => KeySource::File(path.clone()),
            Some(KeyField::Secret(reference)) => KeySource::Openbao {
                addr: self.openbao_url().ok_or_else(|| TargetError {
                    message: format!(
                        "host {name}: its key is in OpenBAO ({reference}), and the config says nowhere where OpenBAO runs"
                    ),
                    hint: "set components.openbao.address, or network.openbao_hosts".into(),
                })?,
                path: reference.path.clone(),
                key: reference.key.clone(),
            },
        };
        let host_key = entry.host_key.clone().ok_or_else(|| TargetError {
            message: format!("host {name}: its host key is not known"),
            hint: format!("`foundry host add {name}` records it after you accept its fingerprint"),
        })?;
        Ok(SshTarget {
            address: entry.address.clone(),
            port: entry.port,
            user: entry.user.clone(),
            key,
            host_key,
        })
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
/// It becomes the host's hostname, so it keeps to DNS's limits: labels of at most 63
/// bytes, 253 in all.
pub fn check_host_name(name: &str) -> Result<(), String> {
    let valid = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
        && name.len() <= 253
        && name.split('.').all(|label| label.len() <= 63);
    if valid {
        Ok(())
    } else {
        Err(format!(
            "host name `{}`: use letters, digits, `-` and `.`, starting with a letter or digit, at most 63 between dots and 253 in all",
            value::shown(name)
        ))
    }
}

/// Reads and checks the config at `path`.
pub fn load(path: &Path) -> Result<StackConfig, ConfigError> {
    parse(path, &read_text(path)?)
}

/// Resolves each secret reference in the config text (read from `path`), only to learn
/// where it resolves: the values are dropped at once. A reference found nowhere is an
/// error at its line and column.
pub fn resolve_references(
    path: &Path,
    text: &str,
    resolver: &secret_ref::Resolver<'_>,
) -> Result<Vec<(PlacedRef, secret_ref::Source)>, ConfigError> {
    let mut references = Vec::new();
    for placed in references_in(text).map_err(|detail| ConfigError::Invalid {
        path: path.to_path_buf(),
        detail,
    })? {
        match resolver.resolve(&placed.reference) {
            Ok((_, source)) => references.push((placed, source)),
            Err(e) => {
                let (message, hint) = secret_ref::message_and_hint(&e);
                return Err(ConfigError::Unresolved {
                    path: path.to_path_buf(),
                    line: placed.line,
                    column: placed.column,
                    message,
                    hint,
                });
            }
        }
    }
    Ok(references)
}

/// The most bytes a stack config file may hold.
pub const MAX_FILE: u64 = 1 << 20;

/// The config file's text: an unreadable or non-UTF-8 file is an error naming it.
pub fn read_text(path: &Path) -> Result<String, ConfigError> {
    use std::io::Read;
    let read = |e: std::io::Error| ConfigError::Read {
        path: path.to_path_buf(),
        detail: e.to_string(),
    };
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(MAX_FILE + 1).read_to_end(&mut bytes))
        .map_err(read)?;
    if bytes.len() as u64 > MAX_FILE {
        return Err(ConfigError::Read {
            path: path.to_path_buf(),
            detail: format!("larger than {MAX_FILE} bytes: a stack config is a short YAML file"),
        });
    }
    String::from_utf8(bytes).map_err(|_| ConfigError::Read {
        path: path.to_path_buf(),
        detail: "not UTF-8 text: a stack config is a YAML file".into(),
    })
}

/// Parses and checks config text; `path` names it in errors.
pub fn parse(path: &Path, text: &str) -> Result<StackConfig, ConfigError> {
    match parse_unchecked(path, text)? {
        (config, None) => Ok(config),
        (_, Some(detail)) => Err(ConfigError::Invalid {
            path: path.to_path_buf(),
            detail,
        }),
    }
}

/// Parses config text, each value checked as it is read, and gives beside it what the
/// checks that compare fields refuse (placed at its line and column), if anything: for
/// `foundry network validate`, which reports each problem as a check of its own.
pub fn parse_unchecked(
    path: &Path,
    text: &str,
) -> Result<(StackConfig, Option<String>), ConfigError> {
    let blank = text
        .lines()
        .all(|l| l.trim().is_empty() || l.trim_start().starts_with('#'));
    if blank {
        return Err(ConfigError::Invalid {
            path: path.to_path_buf(),
            detail: "the file is empty: `foundry config init` writes a starting config".into(),
        });
    }
    let config: StackConfig = {
        serde_saphyr::from_str(text).map_err(|e| {
            let location = e.location();
            // The first line says it all; the rest is a drawing of the spot.
            let full = e.to_string();
            let first = full.lines().next().unwrap_or_default();
            let first = first.strip_prefix("error: ").unwrap_or(first);
            let message = match first.split_once(": ") {
                Some((head, rest)) if head.starts_with("line ") => rest,
                _ => first,
            };
            // The parser's advice on its own options is not the user's to follow.
            let message = match message.split_once(", set DuplicateKeyPolicy") {
                Some((head, _)) => format!("{head}: a key may appear once in a mapping"),
                None => message.to_string(),
            };
            ConfigError::Syntax {
                path: path.to_path_buf(),
                line: location.as_ref().map_or(0, |l| l.line() as usize),
                column: location.as_ref().map_or(0, |l| l.column() as usize),
                message,
            }
        })?
    };
    let invalid = |detail| ConfigError::Invalid {
        path: path.to_path_buf(),
        detail,
    };
    references_in(text).map_err(invalid)?;
    let refused = check::stack(&config).err().map(|e| e.placed(text));
    Ok((config, refused))
}

/// A secret reference in the config text, and where it stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlacedRef {
    pub reference: SecretRef,
    pub line: usize,
    pub column: usize,
}

/// Every `${secret:path:key}` in the text, with its line and column; a malformed one is an
/// error at its place.
pub fn references_in(text: &str) -> Result<Vec<PlacedRef>, String> {
    let place = |at: usize| {
        let before = &text[..at];
        let line = before.matches('\n').count() + 1;
        let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        (line, column)
    };
    let text = &without_comments(text);
    match secret_ref::references(text) {
        Ok(found) => Ok(found
            .into_iter()
            .map(|(at, reference)| {
                let (line, column) = place(at);
                PlacedRef {
                    reference,
                    line,
                    column,
                }
            })
            .collect()),
        Err(e @ secret_ref::SecretRefError::Malformed { at, .. }) => {
            let (line, column) = place(at);
            Err(format!("line {line} column {column}: {e}"))
        }
        Err(e) => Err(e.to_string()),
    }
}

/// The text with each YAML comment blanked out (same length, so places stay true): a
/// `#` at the start of a line or after a space, outside quotes, runs to the line's end.
fn without_comments(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for line in text.split_inclusive('\n') {
        let mut quote = None;
        let mut previous = ' ';
        let mut cut = None;
        for (i, c) in line.char_indices() {
            match (quote, c) {
                (None, '\'' | '"') => quote = Some(c),
                (Some(q), c) if c == q => quote = None,
                (None, '#') if previous.is_whitespace() => {
                    cut = Some(i);
                    break;
                }
                _ => {}
            }
            previous = c;
        }
        match cut {
            Some(i) => {
                out.push_str(&line[..i]);
                let rest = &line[i..];
                let end = rest.trim_end_matches(['\n', '\r']);
                out.extend(end.chars().map(|_| ' '));
                out.push_str(&rest[end.len()..]);
            }
            None => out.push_str(line),
        }
    }
    out
}

fn check(config: &StackConfig) -> Result<(), String> {
    check::stack(config).map_err(|e| e.message)
}

/// The config as YAML, under a comment line.
pub fn render(config: &StackConfig, comment: &str) -> Result<String, String> {
    let body = serde_saphyr::to_string(config).map_err(|e| e.to_string())?;
    Ok(format!("# {comment}\n{body}"))
}

#[cfg(test)]
mod tests {

    #[test]
    fn an_ipv6_address_is_bracketed_in_the_url() {
        assert_eq!(
            super::https_url("10.77.0.20", 8200),
            "https://10.77.0.20:8200"
        );
        assert_eq!(
            super::https_url("bao.example.org", 8200),
            "https://bao.example.org:8200"
        );
        assert_eq!(
            super::https_url("fd00::20", 8200),
            "https://[fd00::20]:8200"
        );
        let url = url::Url::parse(&super::https_url("fd00::20", 8200)).expect("a URL");
        assert_eq!(url.port(), Some(8200));
    }
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
    fn an_image_source_and_a_registry_mirror_are_read_and_checked() {
        use foundry_activities::container::ImageSource;
        let text = "components:\n  zot:\n    image: ghcr.io/project-zot/zot:v2.1.2\n    image_source: pull\n    registry_mirror: mirror.lan:5000/hub\n  dns:\n    image_source: load\n";
        let config = parse(Path::new("x"), text).expect("parse");
        let components = config.components.expect("components");
        assert_eq!(components.zot.image_source, Some(ImageSource::Pull));
        assert_eq!(
            components.zot.registry_mirror.as_deref(),
            Some("mirror.lan:5000/hub")
        );
        assert_eq!(components.dns.image_source, Some(ImageSource::Load));
        assert_eq!(components.openbao.image_source, None);

        let bad = err("components:\n  zot:\n    image_source: carry\n");
        assert!(
            bad.contains("line 3 column 19") && bad.contains("carry"),
            "{bad}"
        );
        for mirror in [
            "'-oProxyCommand=x'",
            "mirror",
            "mirror.lan/",
            "'mirror.lan:x'",
        ] {
            let bad = err(&format!(
                "components:\n  zot:\n    registry_mirror: {mirror}\n"
            ));
            assert!(
                bad.contains("line 3 column 22") && bad.contains("is not a registry like"),
                "{mirror}: {bad}"
            );
        }
        let both = err(
            "components:\n  zot:\n    image_source: load\n    registry_mirror: mirror.lan:5000\n",
        );
        assert!(
            both.contains("line 4 column 22") && both.contains("pulls nothing"),
            "{both}"
        );
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
    fn openbao_takes_a_certificate_of_the_users_own() {
        let text = "components:\n  openbao:\n    tls:\n      cert: /etc/bao.crt\n      key: ${secret:foundry-core/openbao-tls:key}\n      ca: /etc/ca.crt\n";
        let config = parse(Path::new("x"), text).expect("parse");
        let tls = config
            .components
            .as_ref()
            .and_then(|c| c.openbao.tls.clone())
            .expect("tls");
        assert_eq!(tls.cert, KeyField::File("/etc/bao.crt".into()));
        assert!(matches!(tls.key, KeyField::Secret(_)));
        assert_eq!(
            parse(Path::new("x"), &render(&config, "t").expect("render")).expect("again"),
            config
        );
        let relative = text.replace("/etc/ca.crt", "ca.crt");
        assert!(
            err(&relative).contains(
                "line 6 column 11: components.openbao.tls.ca: `ca.crt` is a relative path"
            ),
            "{}",
            err(&relative)
        );
        let elsewhere = "components:\n  zot:\n    tls: {cert: /a, key: /b, ca: /c}\n";
        assert!(err(elsewhere).contains("line 3 column 10: components.zot.tls: only OpenBAO"));
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
        assert!(parse(Path::new("x"), "# nothing\n\n").is_err());
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

#[cfg(test)]
mod reference_tests {
    use super::*;

    #[test]
    fn references_are_placed_and_comments_skipped() {
        let text = "# ${secret:not:this}\na: ${secret:db/prod:pw} # ${secret:nor:this}\nb: 'x # ${secret:in/quotes:k}'\n";
        let found: Vec<_> = references_in(text)
            .expect("found")
            .into_iter()
            .map(|p| (p.reference.to_string(), p.line, p.column))
            .collect();
        assert_eq!(
            found,
            vec![
                ("${secret:db/prod:pw}".to_string(), 2, 4),
                ("${secret:in/quotes:k}".to_string(), 3, 9),
            ]
        );
        assert!(
            references_in("a: 1\nb: ${secret:x}\n")
                .expect_err("bad")
                .starts_with("line 2 column 4:")
        );
    }
}
