//! Secret references in the stack config: `${secret:path/to/secret:key}`, resolved at the
//! moment of use and never written back. A reference is looked up, in order, in the
//! environment (`FOUNDRY_SECRET_<namespace>_<path>_<key>`, each character that is not a
//! letter or digit made `_`), in `~/.foundryvars` (`namespace/path:key=value` lines; refused
//! when others may read it), then in the secret store (OpenBAO, once it is up); a
//! reference found nowhere is an error that names it, never an empty string.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use foundry_core::SecretValue;

const OPEN: &str = "${secret:";

/// `${secret:PATH:KEY}`, scoped to a namespace when it is resolved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SecretRef {
    pub path: String,
    pub key: String,
}

impl std::fmt::Display for SecretRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "${{secret:{}:{}}}", self.path, self.key)
    }
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum SecretRefError {
    #[error("`{text}`: {problem}; expected `${{secret:path/to/secret:key}}`")]
    Malformed {
        text: String,
        at: usize,
        problem: &'static str,
    },
    #[error(
        "{reference} (as {namespaced}) is set nowhere: not in ${env}, not in {vars}, not in the secret store\nhint: `foundry secret set {namespaced_path}`, or export {env} for this shell"
    )]
    NotFound {
        reference: String,
        namespaced: String,
        namespaced_path: String,
        env: String,
        vars: String,
    },
    #[error(
        "{}: others may read it (mode {mode:o})\nhint: chmod 600 {}",
        path.display(),
        path.display()
    )]
    VarsReadable { path: PathBuf, mode: u32 },
    #[error("{}: {detail}", path.display())]
    Vars { path: PathBuf, detail: String },
}

/// Every reference in `text`, with where each starts.
pub fn references(text: &str) -> Result<Vec<(usize, SecretRef)>, SecretRefError> {
    let mut found = Vec::new();
    let mut from = 0;
    while let Some(rel) = text[from..].find(OPEN) {
        let at = from + rel;
        let body_start = at + OPEN.len();
        let malformed = |problem| SecretRefError::Malformed {
            text: text[at..].chars().take(60).collect(),
            at,
            problem,
        };
        let end = text[body_start..]
            .find('}')
            .map(|e| body_start + e)
            .ok_or_else(|| malformed("no closing `}`"))?;
        let body = &text[body_start..end];
        let (path, key) = body
            .rsplit_once(':')
            .ok_or_else(|| malformed("no `:key` after the path"))?;
        let valid = |s: &str| {
            !s.is_empty()
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '/' | '-' | '_' | '.'))
        };
        if !valid(path)
            || path.starts_with('/')
            || path.split('/').any(|p| p.is_empty() || p == "..")
        {
            return Err(malformed(
                "the path is empty or has characters other than letters, digits, `/`, `-`, `_`, `.`",
            ));
        }
        if !valid(key) || key.contains('/') {
            return Err(malformed(
                "the key is empty or has characters other than letters, digits, `-`, `_`, `.`",
            ));
        }
        found.push((
            at,
            SecretRef {
                path: path.to_string(),
                key: key.to_string(),
            },
        ));
        from = end + 1;
    }
    Ok(found)
}

/// The namespace of the stack config's own references: none, their paths are used as
/// written (`${secret:foundry-core/dns:api_key}` is `foundry-core/dns:api_key`).
pub const STACK_NAMESPACE: &str = "";

/// `path` in `namespace`: `namespace/path`, or `path` itself in the stack's namespace.
fn scoped(namespace: &str, path: &str) -> String {
    if namespace.is_empty() {
        path.to_string()
    } else {
        format!("{namespace}/{path}")
    }
}

/// Where local overrides are read from: `$HOME/.foundryvars`.
pub fn vars_path() -> PathBuf {
    std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_default()
        .join(".foundryvars")
}

/// The environment variable that overrides `reference` in `namespace`.
pub fn env_name(namespace: &str, reference: &SecretRef) -> String {
    let raw = format!("{}_{}", scoped(namespace, &reference.path), reference.key);
    let safe: String = raw
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    format!("FOUNDRY_SECRET_{safe}")
}

/// An error's message and, apart, the hint its text ends with (`\nhint: …`).
pub fn message_and_hint(e: &SecretRefError) -> (String, Option<String>) {
    let text = e.to_string();
    match text.split_once("\nhint: ") {
        Some((m, h)) => (m.to_string(), Some(h.to_string())),
        None => (text, None),
    }
}

/// `~/.foundryvars`: local values by `namespace/path:key`. Values are kept as secrets.
#[derive(Default)]
pub struct Foundryvars {
    path: PathBuf,
    values: BTreeMap<String, SecretValue>,
}

impl Foundryvars {
    /// Reads the file; an absent file holds nothing. A file others may read is refused.
    pub fn load(path: &Path) -> Result<Foundryvars, SecretRefError> {
        let vars_err = |detail: String| SecretRefError::Vars {
            path: path.to_path_buf(),
            detail,
        };
        let meta = match std::fs::metadata(path) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(Foundryvars {
                    path: path.to_path_buf(),
                    values: BTreeMap::new(),
                });
            }
            Err(e) => return Err(vars_err(e.to_string())),
        };
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(SecretRefError::VarsReadable {
                path: path.to_path_buf(),
                mode,
            });
        }
        let text = std::fs::read_to_string(path).map_err(|e| vars_err(e.to_string()))?;
        let mut values = BTreeMap::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            // The value is never quoted back: the line is named by its number only.
            let (name, value) = line.split_once('=').ok_or_else(|| {
                vars_err(format!(
                    "line {}: expected `namespace/path:key=value`",
                    n + 1
                ))
            })?;
            let name = name.trim();
            if !name.contains(':') || name.contains(char::is_whitespace) {
                return Err(vars_err(format!(
                    "line {}: `{name}` is not `namespace/path:key`",
                    n + 1
                )));
            }
            values.insert(name.to_string(), SecretValue::new(value.to_string()));
        }
        Ok(Foundryvars {
            path: path.to_path_buf(),
            values,
        })
    }
}

/// Where a secret's value came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    Environment,
    Foundryvars,
    Store,
}

/// The secret store behind the local overrides (OpenBAO).
pub trait SecretStore {
    /// The value at `namespaced_path` under `key`, if there is one.
    fn get(&self, namespaced_path: &str, key: &str) -> Result<Option<SecretValue>, String>;
}

/// Resolves references in one namespace: environment, then `~/.foundryvars`, then the store.
pub struct Resolver<'a> {
    pub namespace: String,
    pub env: &'a dyn Fn(&str) -> Option<String>,
    pub vars: &'a Foundryvars,
    pub store: Option<&'a dyn SecretStore>,
}

impl Resolver<'_> {
    pub fn resolve(&self, reference: &SecretRef) -> Result<(SecretValue, Source), SecretRefError> {
        let env = env_name(&self.namespace, reference);
        if let Some(value) = (self.env)(&env) {
            return Ok((SecretValue::new(value), Source::Environment));
        }
        let namespaced_path = scoped(&self.namespace, &reference.path);
        let namespaced = format!("{namespaced_path}:{}", reference.key);
        if let Some(value) = self.vars.values.get(&namespaced) {
            return Ok((value.clone(), Source::Foundryvars));
        }
        if let Some(store) = self.store {
            let found = store
                .get(&namespaced_path, &reference.key)
                .map_err(|detail| SecretRefError::Vars {
                    path: PathBuf::from("the secret store"),
                    detail: format!("reading {namespaced}: {detail}"),
                })?;
            if let Some(value) = found {
                return Ok((value, Source::Store));
            }
        }
        Err(SecretRefError::NotFound {
            reference: reference.to_string(),
            namespaced,
            namespaced_path,
            env,
            vars: self.vars.path.display().to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn reference(path: &str, key: &str) -> SecretRef {
        SecretRef {
            path: path.into(),
            key: key.into(),
        }
    }

    #[test]
    fn references_are_found_and_malformed_ones_named() {
        let found =
            references("a: ${secret:db/prod:password} b: x${secret:gh:token}y").expect("parses");
        assert_eq!(
            found,
            vec![
                (3, reference("db/prod", "password")),
                (34, reference("gh", "token"))
            ]
        );
        for (bad, problem) in [
            ("${secret:db/prod}", "no `:key`"),
            ("${secret:db/prod:pw", "no closing"),
            ("${secret::pw}", "the path"),
            ("${secret:../etc:pw}", "the path"),
            ("${secret:a b:pw}", "the path"),
            ("${secret:db:}", "the key"),
        ] {
            let err = references(bad).expect_err(bad).to_string();
            assert!(
                err.contains(problem) && err.contains("expected `${secret:"),
                "{bad}: {err}"
            );
        }
        assert_eq!(references("no secrets, $HOME ${x}").expect("none"), vec![]);
    }

    struct Store;
    impl SecretStore for Store {
        fn get(&self, path: &str, key: &str) -> Result<Option<SecretValue>, String> {
            Ok((path == "svc/db/prod" && key == "password")
                .then(|| SecretValue::new("from-store".to_string())))
        }
    }

    fn vars_file(text: &str, mode: u32) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(".foundryvars");
        let mut f = std::fs::File::create(&path).expect("create");
        f.write_all(text.as_bytes()).expect("write");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).expect("chmod");
        (dir, path)
    }

    #[test]
    fn environment_beats_the_file_which_beats_the_store() {
        let r = reference("db/prod", "password");
        let (_dir, path) = vars_file("# local\nsvc/db/prod:password=from-file\n", 0o600);
        let vars = Foundryvars::load(&path).expect("loads");
        let env_set = |name: &str| {
            (name == "FOUNDRY_SECRET_svc_db_prod_password").then(|| "from-env".to_string())
        };
        let env_unset = |_: &str| None;
        let resolve = |env: &dyn Fn(&str) -> Option<String>, vars: &Foundryvars| {
            Resolver {
                namespace: "svc".into(),
                env,
                vars,
                store: Some(&Store),
            }
            .resolve(&r)
            .map(|(v, s)| (v.expose().to_string(), s))
        };
        assert_eq!(
            resolve(&env_set, &vars),
            Ok(("from-env".into(), Source::Environment))
        );
        assert_eq!(
            resolve(&env_unset, &vars),
            Ok(("from-file".into(), Source::Foundryvars))
        );
        let empty = Foundryvars::default();
        assert_eq!(
            resolve(&env_unset, &empty),
            Ok(("from-store".into(), Source::Store))
        );
        let missing = Resolver {
            namespace: "svc".into(),
            env: &env_unset,
            vars: &empty,
            store: Some(&Store),
        }
        .resolve(&reference("db/prod", "user"))
        .expect_err("nowhere")
        .to_string();
        assert!(
            missing.contains("${secret:db/prod:user}")
                && missing.contains("svc/db/prod:user")
                && missing.contains("FOUNDRY_SECRET_svc_db_prod_user"),
            "{missing}"
        );
    }

    #[test]
    fn a_foundryvars_others_may_read_is_refused_and_a_bad_line_hides_its_value() {
        let (_dir, path) = vars_file("svc/db:pw=hunter2\n", 0o644);
        let err = Foundryvars::load(&path).err().expect("refused").to_string();
        assert!(
            err.contains("others may read it (mode 644)") && err.contains("chmod 600"),
            "{err}"
        );
        let (_dir, path) = vars_file("svc/db:pw hunter2\n", 0o600);
        let err = Foundryvars::load(&path).err().expect("refused").to_string();
        assert!(err.contains("line 1") && !err.contains("hunter2"), "{err}");
        let absent = Foundryvars::load(Path::new("/nonexistent/.foundryvars")).expect("empty");
        assert!(absent.values.is_empty());
    }
}
