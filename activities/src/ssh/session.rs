//! One SSH session: connect within a deadline, check the host key strictly against the
//! one known, log in with the host's key.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use foundry_core::{ActivityCx, ActivityError, Stream};
use russh::ChannelMsg;
use russh::client::{self, AuthResult, Handle};
use russh::keys::{HashAlg, PrivateKeyWithHashAlg, PublicKey};
use serde::{Deserialize, Serialize};

/// A host to reach, and what Foundry knows of it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SshTarget {
    pub address: String,
    pub port: u16,
    pub user: String,
    /// The private key to log in with.
    pub key: PathBuf,
    /// The host's public host key (`ssh-ed25519 AAAA…`): anything else is refused.
    pub host_key: String,
}

impl std::fmt::Display for SshTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}@{}:{}", self.user, self.address, self.port)
    }
}

/// How long a connection (TCP, key exchange and login) may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// A silent peer is noticed after about keepalive × max, without killing quiet commands.
const KEEPALIVE: Duration = Duration::from_secs(5);
const KEEPALIVE_MAX: usize = 3;

struct Checker {
    known: PublicKey,
    offered: Arc<Mutex<Option<PublicKey>>>,
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
        Ok(key.key_data() == self.known.key_data())
    }
}

fn fingerprint(key: &PublicKey) -> String {
    key.fingerprint(HashAlg::Sha256).to_string()
}

/// A logged-in session.
pub struct SshSession {
    handle: Handle<Checker>,
    target: SshTarget,
}

impl SshSession {
    pub async fn connect(target: &SshTarget) -> Result<SshSession, ActivityError> {
        let known = PublicKey::from_openssh(target.host_key.trim()).map_err(|e| {
            ActivityError::permanent(format!(
                "the known host key of {} is not a public key: {e}",
                target.address
            ))
        })?;
        let key = russh::keys::load_secret_key(&target.key, None).map_err(|e| {
            ActivityError::permanent(format!("reading the key {}: {e}", target.key.display()))
        })?;
        let config = Arc::new(client::Config {
            keepalive_interval: Some(KEEPALIVE),
            keepalive_max: KEEPALIVE_MAX,
            nodelay: true,
            ..client::Config::default()
        });
        let offered = Arc::new(Mutex::new(None));
        let checker = Checker {
            known: known.clone(),
            offered: offered.clone(),
        };
        let connecting = client::connect(config, (target.address.as_str(), target.port), checker);
        let mut handle = match tokio::time::timeout(CONNECT_TIMEOUT, connecting).await {
            Err(_) => {
                return Err(ActivityError::transient(format!(
                    "{target}: no answer within {}s",
                    CONNECT_TIMEOUT.as_secs()
                )));
            }
            Ok(Err(e)) => {
                let offered = offered.lock().ok().and_then(|o| o.clone());
                return Err(match offered {
                    Some(offered) if offered.key_data() != known.key_data() => {
                        ActivityError::permanent(format!(
                            "{target}: the host key changed: known {}, offered {}; nothing was run",
                            fingerprint(&known),
                            fingerprint(&offered)
                        ))
                    }
                    _ => ActivityError::transient(format!("{target}: {e}")),
                });
            }
            Ok(Ok(handle)) => handle,
        };
        let login = handle.authenticate_publickey(
            &target.user,
            PrivateKeyWithHashAlg::new(Arc::new(key), None),
        );
        match tokio::time::timeout(CONNECT_TIMEOUT, login).await {
            Ok(Ok(AuthResult::Success)) => Ok(SshSession {
                handle,
                target: target.clone(),
            }),
            Ok(Ok(AuthResult::Failure { .. })) => Err(ActivityError::permanent(format!(
                "{target}: the key {} was refused",
                target.key.display()
            ))),
            Ok(Err(e)) => Err(ActivityError::transient(format!(
                "{target}: logging in: {e}"
            ))),
            Err(_) => Err(ActivityError::transient(format!(
                "{target}: no login within {}s",
                CONNECT_TIMEOUT.as_secs()
            ))),
        }
    }

    /// Runs `command` (a quoted command line), streaming its output as events; its exit
    /// code and last line of stderr.
    pub async fn run(
        &self,
        command: &str,
        cx: &ActivityCx,
    ) -> Result<(u32, Option<String>), ActivityError> {
        let lost = |e: russh::Error| ActivityError::transient(format!("{}: {e}", self.target));
        let mut channel = self.handle.channel_open_session().await.map_err(lost)?;
        channel.exec(true, command).await.map_err(lost)?;
        let mut code = None;
        let mut last_err = None;
        let (mut out, mut err) = (Vec::new(), Vec::new());
        loop {
            let msg = tokio::select! {
                msg = channel.wait() => msg,
                () = cx.cancel_token().cancelled() => {
                    let _ = channel.close().await;
                    return Err(ActivityError::permanent(format!("{}: stopped, the run is cancelled", self.target)));
                }
            };
            match msg {
                Some(ChannelMsg::Data { data }) => {
                    emit_lines(cx, Stream::Stdout, &mut out, &data, &mut None)
                }
                Some(ChannelMsg::ExtendedData { data, ext: 1 }) => {
                    emit_lines(cx, Stream::Stderr, &mut err, &data, &mut last_err)
                }
                Some(ChannelMsg::ExitStatus { exit_status }) => code = Some(exit_status),
                Some(_) => {}
                None => break,
            }
        }
        emit_lines(cx, Stream::Stdout, &mut out, b"\n", &mut None);
        emit_lines(cx, Stream::Stderr, &mut err, b"\n", &mut last_err);
        let code = code.ok_or_else(|| {
            ActivityError::transient(format!(
                "{}: the connection ended before the command's exit status",
                self.target
            ))
        })?;
        Ok((code, last_err))
    }
}

/// Emits each complete line of `pending + data`; keeps the rest for later.
fn emit_lines(
    cx: &ActivityCx,
    stream: Stream,
    pending: &mut Vec<u8>,
    data: &[u8],
    last: &mut Option<String>,
) {
    pending.extend_from_slice(data);
    while let Some(at) = pending.iter().position(|&b| b == b'\n') {
        let line: Vec<u8> = pending.drain(..=at).collect();
        let text = String::from_utf8_lossy(&line[..line.len() - 1]).into_owned();
        if !(text.is_empty() && data == b"\n") {
            cx.output(stream, text.clone());
            *last = Some(text);
        }
    }
}
