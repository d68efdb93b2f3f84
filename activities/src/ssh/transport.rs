//! The way to a host: its address and the key it must show, TCP and key exchange within a
//! deadline, the host key checked strictly against the one known, and host keys read and
//! printed. Logging in is [`super::login`]'s; commands are [`super::session`]'s.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use foundry_core::ActivityError;
use russh::client::{self, Handle};
use russh::keys::{HashAlg, PublicKey};
use serde::{Deserialize, Serialize};

use super::key_source::KeySource;

/// A host to reach, and what Foundry knows of it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SshTarget {
    pub address: String,
    pub port: u16,
    pub user: String,
    /// The private key to log in with.
    pub key: KeySource,
    /// The host's public host key (`ssh-ed25519 AAAA…`): anything else is refused.
    pub host_key: String,
}

impl std::fmt::Display for SshTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}@{}:{}", self.user, self.address, self.port)
    }
}

/// How long a connection (TCP, key exchange and login) may take.
pub(super) const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// A silent peer is noticed after about keepalive × max, without killing quiet commands.
const KEEPALIVE: Duration = Duration::from_secs(5);
const KEEPALIVE_MAX: usize = 3;

pub(super) struct Checker {
    /// `None` only to read the host key a host offers: the connection is then refused.
    pub(super) known: Option<PublicKey>,
    pub(super) offered: Arc<Mutex<Option<PublicKey>>>,
}

impl client::Handler for Checker {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        key: &russh::keys::PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        let russh::keys::PublicKeyOrCertificate::PublicKey { key, .. } = key else {
            return Ok(false);
        };
        if let Ok(mut offered) = self.offered.lock() {
            *offered = Some(key.clone());
        }
        Ok(self
            .known
            .as_ref()
            .is_some_and(|known| key.key_data() == known.key_data()))
    }
}

pub(super) fn fingerprint(key: &PublicKey) -> String {
    key.fingerprint(HashAlg::Sha256).to_string()
}

pub(super) enum Opened {
    Timeout(ActivityError),
    Failed(russh::Error),
}

/// TCP and key exchange within the deadline, keepalive on.
pub(super) async fn open(target: &SshTarget, checker: Checker) -> Result<Handle<Checker>, Opened> {
    let config = Arc::new(client::Config {
        keepalive_interval: Some(KEEPALIVE),
        keepalive_max: KEEPALIVE_MAX,
        nodelay: true,
        ..client::Config::default()
    });
    let connecting = client::connect(config, (target.address.as_str(), target.port), checker);
    match tokio::time::timeout(CONNECT_TIMEOUT, connecting).await {
        Err(_) => Err(Opened::Timeout(ActivityError::transient(format!(
            "{target}: no answer within {}s",
            CONNECT_TIMEOUT.as_secs()
        )))),
        Ok(Err(e)) => Err(Opened::Failed(e)),
        Ok(Ok(handle)) => Ok(handle),
    }
}

/// The host key `address:port` offers (`ssh-ed25519 AAAA…`), read without logging in: what
/// a person is shown before trusting a host the first time.
pub async fn scan_host_key(address: &str, port: u16) -> Result<String, ActivityError> {
    let target = SshTarget {
        address: address.to_string(),
        port,
        user: String::new(),
        key: KeySource::File(PathBuf::new()),
        host_key: String::new(),
    };
    let offered = Arc::new(Mutex::new(None));
    let checker = Checker {
        known: None,
        offered: offered.clone(),
    };
    let place = format!("{address}:{port}");
    let failed = match open(&target, checker).await {
        Ok(_) => None,
        Err(Opened::Timeout(_)) => {
            return Err(ActivityError::transient(format!(
                "{place}: no answer within {}s",
                CONNECT_TIMEOUT.as_secs()
            )));
        }
        Err(Opened::Failed(e)) => Some(e),
    };
    let offered = offered.lock().ok().and_then(|o| o.clone());
    match (offered, failed) {
        (Some(key), _) => public_line(&key),
        (None, Some(e)) => Err(ActivityError::transient(format!("{place}: {e}"))),
        (None, None) => Err(ActivityError::permanent(format!(
            "{place}: offered no host key"
        ))),
    }
}

/// `ssh-ed25519 AAAA…`, without a comment.
pub(super) fn public_line(key: &PublicKey) -> Result<String, ActivityError> {
    let text = key
        .to_openssh()
        .map_err(|e| ActivityError::permanent(format!("cannot encode a public key: {e}")))?;
    Ok(text
        .split_whitespace()
        .take(2)
        .collect::<Vec<_>>()
        .join(" "))
}

/// The SHA256 fingerprint of a public key line (`ssh-ed25519 AAAA…`).
pub fn fingerprint_of(public: &str) -> Result<String, ActivityError> {
    PublicKey::from_openssh(public.trim())
        .map(|k| fingerprint(&k))
        .map_err(|e| ActivityError::permanent(format!("not a public key: {e}")))
}
