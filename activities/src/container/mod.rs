//! Containers through a Docker Engine (bollard): the engine's socket, here or on a host
//! through SSH, and what each activity does with it. Inspect first; create on 404; re-inspect on 409; a spec-hash
//! label decides whether to recreate; a start answered 304 means running.

mod ensure;
mod exec;
mod image;
mod labelled;
mod network;
mod tunnel;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{LazyLock, Mutex};

use bollard::{ClientVersion, Docker};
use foundry_core::ActivityError;
use serde::{Deserialize, Serialize};

use crate::ssh::{SshPool, SshTarget};

pub use ensure::{
    ContainerFile, ContainerOutput, ContainerSpec, EnsureContainer, RemoveContainer,
    SECRET_REF_LABEL_PREFIX, SPEC_HASH_LABEL, container_image, secret_ref_of,
};
pub use exec::{ExecOutput, ExecStream, StderrHandle};
pub use image::{
    BuildImage, EnsureImage, ImageOutput, ImageSource, LoadImage, PullImage, Reference,
};
pub use labelled::{Labelled, RemoveLabelled, Removed, labelled_state, list_labelled};
pub use network::{EnsureNetwork, NetworkOutput, connect, disconnect, overlapping, subnets};

/// Where a Docker Engine answers.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Endpoint {
    /// A Unix socket on this machine.
    Local { socket: PathBuf },
    /// A Unix socket on a host, reached through an SSH connection to it. sshd opens the
    /// socket as the logged-in user, who needs its permissions there (the `docker` group).
    Ssh {
        target: SshTarget,
        #[serde(default = "default_socket")]
        socket: String,
    },
}

/// Where the Docker Engine listens, by default.
pub const DEFAULT_SOCKET: &str = "/var/run/docker.sock";

fn default_socket() -> String {
    DEFAULT_SOCKET.into()
}

impl Endpoint {
    /// The Engine at its default socket on `target`, through SSH.
    pub fn ssh(target: SshTarget) -> Endpoint {
        Endpoint::Ssh {
            target,
            socket: default_socket(),
        }
    }
}

impl Default for Endpoint {
    fn default() -> Self {
        Endpoint::Local {
            socket: PathBuf::from(DEFAULT_SOCKET),
        }
    }
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Endpoint::Local { socket } => write!(f, "the Docker Engine at {}", socket.display()),
            Endpoint::Ssh { target, socket } => write!(f, "the Docker Engine at {target} {socket}"),
        }
    }
}

/// Seconds a single Engine request may take.
const REQUEST_TIMEOUT_S: u64 = 120;

/// The API version each Engine answered with, asked once per process: every later client
/// of that Engine speaks it without asking again (a round trip, over SSH a channel, saved
/// for each step that reaches the Engine).
static VERSIONS: LazyLock<Mutex<HashMap<Endpoint, ClientVersion>>> = LazyLock::new(Mutex::default);

impl Endpoint {
    /// A client speaking the Engine's own API version (Engine 20.10 speaks 1.41), asked of
    /// the Engine by this process's first client of it.
    pub async fn connect(&self) -> Result<Docker, ActivityError> {
        let known = VERSIONS.lock().ok().and_then(|v| v.get(self).copied());
        let version = known.unwrap_or(*bollard::API_DEFAULT_VERSION);
        let docker = match self {
            Endpoint::Local { socket } => {
                let path = socket.to_string_lossy();
                Docker::connect_with_unix(&path, REQUEST_TIMEOUT_S, &version)
                    .map_err(|e| self.error("connecting", &e))?
            }
            Endpoint::Ssh { target, socket } => {
                let session = SshPool::global()
                    .session(target)
                    .await
                    .map_err(|e| tunnel::connect_error(self, e))?;
                tunnel::docker_over(session, socket, REQUEST_TIMEOUT_S, &version)
                    .map_err(|e| self.error("connecting", &e))?
            }
        };
        if known.is_some() {
            return Ok(docker);
        }
        let docker = docker
            .negotiate_version()
            .await
            .map_err(|e| self.error("connecting", &e))?;
        if let Ok(mut versions) = VERSIONS.lock() {
            versions.insert(self.clone(), docker.client_version());
        }
        Ok(docker)
    }

    /// An Engine error as an activity error: a refused or lost connection or a 5xx is
    /// worth another attempt; a 4xx, or a host that will not open the socket, is not.
    fn error(&self, doing: &str, e: &bollard::errors::Error) -> ActivityError {
        // The forward's own message names the host and the socket.
        if let Some(forward) = tunnel::forward_error(e) {
            let message = format!("{doing}: {forward}");
            return match forward.transient() {
                true => ActivityError::transient(message),
                false => ActivityError::permanent(message),
            };
        }
        let message = format!("{doing} ({self}): {e}");
        match status_of(e) {
            Some(code) if (400..500).contains(&code) => ActivityError::permanent(message),
            _ => ActivityError::transient(message),
        }
    }
}

/// The HTTP status the Engine answered, if it answered.
fn status_of(e: &bollard::errors::Error) -> Option<u16> {
    match e {
        bollard::errors::Error::DockerResponseServerError { status_code, .. } => Some(*status_code),
        _ => None,
    }
}

/// Whether the Engine answered 404.
fn not_found(e: &bollard::errors::Error) -> bool {
    status_of(e) == Some(404)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stand-in Engine on a Unix socket: it answers every request with a version
    /// document and counts the `GET /version` requests it was asked.
    async fn counting_engine(
        socket: &std::path::Path,
    ) -> std::sync::Arc<std::sync::atomic::AtomicUsize> {
        use std::sync::atomic::{AtomicUsize, Ordering};
        use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
        let asked = std::sync::Arc::new(AtomicUsize::new(0));
        let listener = tokio::net::UnixListener::bind(socket).expect("bind");
        let counted = asked.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let counted = counted.clone();
                tokio::spawn(async move {
                    let mut stream = BufReader::new(stream);
                    let mut line = String::new();
                    // One request line and its headers per answer, for a bounded number.
                    for _ in 0..64 {
                        line.clear();
                        if stream.read_line(&mut line).await.unwrap_or(0) == 0 {
                            return;
                        }
                        if line.starts_with("GET ") && line.contains("/version") {
                            counted.fetch_add(1, Ordering::SeqCst);
                        }
                        while stream.read_line(&mut line).await.unwrap_or(0) > 2 {
                            line.clear();
                        }
                        let body = r#"{"ApiVersion":"1.41","Version":"20.10.24"}"#;
                        let answer = format!(
                            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                            body.len()
                        );
                        if stream.get_mut().write_all(answer.as_bytes()).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        asked
    }

    #[tokio::test]
    async fn the_engines_version_is_asked_once_per_process() {
        use std::sync::atomic::Ordering;
        let dir = tempfile::tempdir().expect("tempdir");
        let socket = dir.path().join("engine.sock");
        let asked = counting_engine(&socket).await;
        let endpoint = Endpoint::Local {
            socket: socket.clone(),
        };
        let first = endpoint.connect().await.expect("first client");
        assert_eq!(asked.load(Ordering::SeqCst), 1, "the first client asks");
        assert_eq!(
            (
                first.client_version().major_version,
                first.client_version().minor_version
            ),
            (1, 41)
        );
        for _ in 0..3 {
            let again = endpoint.connect().await.expect("another client");
            assert_eq!(again.client_version(), first.client_version());
        }
        assert_eq!(asked.load(Ordering::SeqCst), 1, "later clients do not ask");
        // Another Engine is asked on its own.
        let other = dir.path().join("other.sock");
        let asked_other = counting_engine(&other).await;
        Endpoint::Local { socket: other }
            .connect()
            .await
            .expect("a client of the other Engine");
        assert_eq!(asked_other.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn an_ssh_endpoint_names_host_and_socket_and_defaults_the_socket() {
        let json = serde_json::json!({"ssh": {"target": {
            "address": "10.77.3.11", "port": 22, "user": "admin",
            "key": "/k/id_ed25519", "host_key": "ssh-ed25519 AAAA"
        }}});
        let endpoint: Endpoint = serde_json::from_value(json).expect("parses");
        assert!(
            matches!(&endpoint, Endpoint::Ssh { socket, .. } if socket == DEFAULT_SOCKET),
            "{endpoint:?}"
        );
        assert_eq!(
            endpoint.to_string(),
            "the Docker Engine at admin@10.77.3.11:22 /var/run/docker.sock"
        );
        let local: Endpoint =
            serde_json::from_value(serde_json::json!({"local": {"socket": "/s.sock"}}))
                .expect("a local endpoint as journaled before");
        assert_eq!(local.to_string(), "the Docker Engine at /s.sock");
    }
}
