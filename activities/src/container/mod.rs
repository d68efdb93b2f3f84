//! Containers through a Docker Engine (bollard): the engine's socket, and what each
//! activity does with it. Inspect first; create on 404; re-inspect on 409; a spec-hash
//! label decides whether to recreate; a start answered 304 means running.

mod ensure;
mod image;
mod labelled;
mod network;

use std::path::PathBuf;

use bollard::Docker;
use foundry_core::ActivityError;
use serde::{Deserialize, Serialize};

pub use ensure::{
    ContainerOutput, ContainerSpec, EnsureContainer, RemoveContainer, SPEC_HASH_LABEL,
};
pub use image::{EnsureImage, ImageOutput};
pub use labelled::{Labelled, RemoveLabelled, Removed, list_labelled};
pub use network::{EnsureNetwork, NetworkOutput, connect, disconnect};

/// Where a Docker Engine answers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Endpoint {
    /// A Unix socket on this machine.
    Local { socket: PathBuf },
}

impl Default for Endpoint {
    fn default() -> Self {
        Endpoint::Local {
            socket: PathBuf::from("/var/run/docker.sock"),
        }
    }
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Endpoint::Local { socket } => write!(f, "the Docker Engine at {}", socket.display()),
        }
    }
}

/// Seconds a single Engine request may take.
const REQUEST_TIMEOUT_S: u64 = 120;

impl Endpoint {
    /// A client speaking the Engine's own API version (Engine 20.10 speaks 1.41).
    pub async fn connect(&self) -> Result<Docker, ActivityError> {
        let docker = match self {
            Endpoint::Local { socket } => {
                let path = socket.to_string_lossy();
                Docker::connect_with_unix(&path, REQUEST_TIMEOUT_S, bollard::API_DEFAULT_VERSION)
                    .map_err(|e| self.error("connecting", &e))?
            }
        };
        docker
            .negotiate_version()
            .await
            .map_err(|e| self.error("connecting", &e))
    }

    /// An Engine error as an activity error: a refused connection or a 5xx is worth
    /// another attempt; a 4xx is not.
    fn error(&self, doing: &str, e: &bollard::errors::Error) -> ActivityError {
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
