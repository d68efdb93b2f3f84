//! The API key as PowerDNS's configuration holds it: hashed and salted with scrypt
//! (PowerDNS 4.6 and later), so a server needs nothing from Foundry to start again after a
//! restart, and its configuration never holds the key itself. The format is the one
//! `pdnsutil hash-password` writes: `$scrypt$ln=10,p=1,r=8$<salt>$<hash>`, N = 2^ln, a
//! 16-byte salt and a 32-byte hash, both standard base64 with padding.

use std::io::Read;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use foundry_core::{Activity, ActivityCx, ActivityError, InDoubt, SecretRef};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// PowerDNS's own parameters (`pdnsutil hash-password`).
const LOG_N: u8 = 10;
const R: u32 = 8;
const P: u32 = 1;
const SALT_LEN: usize = 16;
const HASH_LEN: usize = 32;
/// What a hash read back may ask for at most: a file is not trusted to make this process
/// spend more than N = 2^16, r = 16, p = 4 (about 128 MiB of scrypt work at worst).
const MAX_LOG_N: u8 = 16;
const MAX_R: u32 = 16;
const MAX_P: u32 = 4;
/// A configuration file of ours is a comment and one line; more is not ours.
const MAX_CONF_LEN: u64 = 4096;

/// `key` hashed with `salt`, as PowerDNS reads it from `api-key`.
pub fn hash_api_key(key: &str, salt: &[u8; SALT_LEN]) -> String {
    let hash = scrypt_hash(key, salt, LOG_N, R, P);
    format!(
        "$scrypt$ln={LOG_N},p={P},r={R}${}${}",
        STANDARD.encode(salt),
        STANDARD.encode(hash)
    )
}

fn scrypt_hash(key: &str, salt: &[u8], log_n: u8, r: u32, p: u32) -> [u8; HASH_LEN] {
    let mut out = [0u8; HASH_LEN];
    // Parameters are bounded before this is reached, and the output is 32 bytes: neither
    // call can fail; a failure would leave `out` zero, which verifies no key.
    if let Ok(params) = scrypt::Params::new(log_n, r, p) {
        let _ = scrypt::scrypt(key.as_bytes(), salt, &params, &mut out);
    }
    out
}

/// Whether `hashed` (`$scrypt$ln=..,p=..,r=..$salt$hash`) is `key`'s hash. Anything else,
/// including parameters beyond the bounds above, is not.
pub fn verifies(hashed: &str, key: &str) -> bool {
    let Some(rest) = hashed.strip_prefix("$scrypt$") else {
        return false;
    };
    let mut parts = rest.split('$');
    let (Some(params), Some(salt), Some(hash), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    let (mut log_n, mut r, mut p) = (None, None, None);
    for param in params.split(',') {
        match param.split_once('=') {
            Some(("ln", v)) => log_n = v.parse::<u8>().ok(),
            Some(("r", v)) => r = v.parse::<u32>().ok(),
            Some(("p", v)) => p = v.parse::<u32>().ok(),
            _ => return false,
        }
    }
    let (Some(log_n), Some(r), Some(p)) = (log_n, r, p) else {
        return false;
    };
    if !(1..=MAX_LOG_N).contains(&log_n) || !(1..=MAX_R).contains(&r) || !(1..=MAX_P).contains(&p) {
        return false;
    }
    let (Ok(salt), Ok(hash)) = (STANDARD.decode(salt), STANDARD.decode(hash)) else {
        return false;
    };
    if salt.is_empty() || hash.len() != HASH_LEN {
        return false;
    }
    // Compared whole; the key is random, so timing tells an observer of this process
    // nothing it could use.
    scrypt_hash(key, &salt, log_n, r, p)[..] == hash[..]
}

/// The `api-key` line of a configuration file, if it has one.
fn api_key_line(conf: &str) -> Option<&str> {
    conf.lines()
        .find_map(|l| l.trim().strip_prefix("api-key="))
        .map(str::trim)
}

/// PowerDNS's configuration file that sets its API key, hashed: kept at `path` on this
/// machine (0600) and put into each server's container before it starts
/// (`ContainerSpec::files`, under `/etc/powerdns/pdns.d/`, which the server includes).
/// A file there whose hash verifies against the key is kept as it is, so its digest, and
/// with it the container's spec, changes only with the key; otherwise it is written anew
/// with a fresh salt. Its probe is that check.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiKeyConf {
    pub path: PathBuf,
    pub api_key: SecretRef,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiKeyConfOutput {
    /// SHA-256 of the file's content, hex.
    pub sha256: String,
    /// This step wrote it (it was missing, or not for this key).
    pub written: bool,
}

/// The file at `path`, when it is small enough to be ours; a missing or unreadable one
/// is none (it is written again).
fn read_small(path: &Path) -> Option<Vec<u8>> {
    let file = std::fs::File::open(path).ok()?;
    let mut bytes = Vec::new();
    file.take(MAX_CONF_LEN + 1).read_to_end(&mut bytes).ok()?;
    (bytes.len() as u64 <= MAX_CONF_LEN).then_some(bytes)
}

/// The file's content, for PowerDNS's `include-dir`.
pub fn api_key_conf(hashed: &str) -> String {
    format!(
        "# Written by Foundry: the API key, hashed (scrypt). The key itself is kept in the\n\
         # stack's secret store; this file cannot be used to call the API.\n\
         api-key={hashed}\n"
    )
}

impl ApiKeyConf {
    /// The kept file's digest when it holds this key's hash.
    fn current(&self, key: &str) -> Option<String> {
        let bytes = read_small(&self.path)?;
        let text = std::str::from_utf8(&bytes).ok()?;
        let hashed = api_key_line(text)?;
        verifies(hashed, key).then(|| hex::encode(Sha256::digest(&bytes)))
    }

    fn key(&self, cx: &ActivityCx) -> Result<foundry_core::SecretValue, ActivityError> {
        cx.reveal(&self.api_key).map_err(|e| {
            ActivityError::permanent(format!(
                "the API key for {}: {}",
                self.path.display(),
                e.message
            ))
        })
    }
}

impl Activity for ApiKeyConf {
    type Output = ApiKeyConfOutput;

    fn kind(&self) -> &'static str {
        "api-key-conf"
    }

    fn in_doubt(&self) -> InDoubt {
        InDoubt::Probe
    }

    async fn probe(&self, cx: &ActivityCx) -> Result<Option<ApiKeyConfOutput>, ActivityError> {
        let key = self.key(cx)?;
        Ok(self
            .current(key.expose().trim())
            .map(|sha256| ApiKeyConfOutput {
                sha256,
                written: false,
            }))
    }

    async fn apply(&self, cx: &ActivityCx) -> Result<ApiKeyConfOutput, ActivityError> {
        let key = self.key(cx)?;
        let key = key.expose().trim();
        if let Some(sha256) = self.current(key) {
            return Ok(ApiKeyConfOutput {
                sha256,
                written: false,
            });
        }
        let mut salt = [0u8; SALT_LEN];
        rand::rng().fill_bytes(&mut salt);
        let content = api_key_conf(&hash_api_key(key, &salt));
        foundry_core::files::write_private(&self.path, content.as_bytes()).map_err(|e| {
            ActivityError::permanent(format!("writing {}: {e}", self.path.display()))
        })?;
        Ok(ApiKeyConfOutput {
            sha256: hex::encode(Sha256::digest(content.as_bytes())),
            written: true,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Made by `pdnsutil hash-password` of PowerDNS 4.7.3 (Debian 12), the key on stdin.
    const PDNSUTIL: &str = "$scrypt$ln=10,p=1,r=8$EjcMpo6c/WxwBcpmar7WTQ==$xPRGg7enVW+CKbyVhsT0/TUCTexKFza66F+P5RZPpHY=";

    #[test]
    fn the_hash_is_the_one_pdnsutil_makes() {
        assert!(verifies(PDNSUTIL, "secret123"));
        assert!(!verifies(PDNSUTIL, "secret124"));
        let salt: [u8; 16] = STANDARD
            .decode("EjcMpo6c/WxwBcpmar7WTQ==")
            .expect("base64")
            .try_into()
            .expect("16 bytes");
        assert_eq!(hash_api_key("secret123", &salt), PDNSUTIL);
    }

    #[test]
    fn a_hash_that_is_not_one_verifies_nothing() {
        for bad in [
            "",
            "secret123",
            "$scrypt$",
            "$scrypt$ln=10,p=1,r=8$EjcMpo6c/WxwBcpmar7WTQ==",
            "$scrypt$ln=10,p=1$EjcMpo6c/WxwBcpmar7WTQ==$xPRGg7enVW+CKbyVhsT0/TUCTexKFza66F+P5RZPpHY=",
            "$scrypt$ln=10,p=1,r=8,x=1$EjcMpo6c/WxwBcpmar7WTQ==$xPRGg7enVW+CKbyVhsT0/TUCTexKFza66F+P5RZPpHY=",
            "$scrypt$ln=10,p=1,r=8$!!$xPRGg7enVW+CKbyVhsT0/TUCTexKFza66F+P5RZPpHY=",
            "$scrypt$ln=10,p=1,r=8$EjcMpo6c/WxwBcpmar7WTQ==$xPRG",
            "$scrypt$ln=10,p=1,r=8$EjcMpo6c/WxwBcpmar7WTQ==$xPRGg7enVW+CKbyVhsT0/TUCTexKFza66F+P5RZPpHY=$",
            // Work a file must not make this process do.
            "$scrypt$ln=40,p=1,r=8$EjcMpo6c/WxwBcpmar7WTQ==$xPRGg7enVW+CKbyVhsT0/TUCTexKFza66F+P5RZPpHY=",
            "$scrypt$ln=10,p=4000000,r=8$EjcMpo6c/WxwBcpmar7WTQ==$xPRGg7enVW+CKbyVhsT0/TUCTexKFza66F+P5RZPpHY=",
            "$scrypt$ln=10,p=1,r=0$EjcMpo6c/WxwBcpmar7WTQ==$xPRGg7enVW+CKbyVhsT0/TUCTexKFza66F+P5RZPpHY=",
        ] {
            assert!(!verifies(bad, "secret123"), "{bad}");
        }
    }

    #[tokio::test]
    async fn the_file_is_kept_while_it_holds_the_key_and_written_again_when_not() {
        use foundry_core::SecretValue;
        use foundry_core::secret::{FileSecretStore, SecretStore};
        use std::os::unix::fs::PermissionsExt;

        let dir = tempfile::tempdir().expect("tempdir");
        let store = std::sync::Arc::new(FileSecretStore::new(dir.path().join("secrets")));
        let cx = ActivityCx::standalone("conf").with_secrets(store.clone());
        let key = store
            .put(&SecretValue::new("0123456789abcdef"))
            .expect("put");
        let conf = ApiKeyConf {
            path: dir.path().join("dns").join("api-key.conf"),
            api_key: key,
        };
        assert_eq!(conf.probe(&cx).await.expect("probe"), None);
        let first = conf.apply(&cx).await.expect("write");
        assert!(first.written);
        let text = std::fs::read_to_string(&conf.path).expect("read");
        assert!(!text.contains("0123456789abcdef"), "{text}");
        assert!(verifies(
            api_key_line(&text).expect("a key line"),
            "0123456789abcdef"
        ));
        let mode = std::fs::metadata(&conf.path)
            .expect("meta")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        // Kept as it is: same digest, nothing written.
        let again = conf.apply(&cx).await.expect("again");
        assert_eq!((again.written, &again.sha256), (false, &first.sha256));
        assert_eq!(
            conf.probe(&cx).await.expect("probe"),
            Some(ApiKeyConfOutput {
                sha256: first.sha256.clone(),
                written: false
            })
        );
        // Another key: a new file, a new digest.
        let other = ApiKeyConf {
            api_key: store
                .put(&SecretValue::new("fedcba9876543210"))
                .expect("put"),
            ..conf.clone()
        };
        assert_eq!(other.probe(&cx).await.expect("probe"), None);
        let written = other.apply(&cx).await.expect("rewrite");
        assert!(written.written && written.sha256 != first.sha256);
        // A file too big to be ours is replaced, not read whole.
        std::fs::write(&conf.path, vec![b'#'; 1 << 20]).expect("big");
        assert!(conf.apply(&cx).await.expect("replace").written);
    }
}
