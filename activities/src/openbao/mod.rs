//! OpenBAO through its HTTP API (the Vault API, reqwest): waiting for the server, init,
//! unseal, the KV v2 mount, Foundry's policy and token, and the one handover of the init
//! material to the user.
//!
//! Secrets never ride in a step's output: the init answer is kept in the run's secret
//! store and only its [`foundry_core::SecretRef`] is journaled; Foundry's token goes to a
//! [`TokenStore`]. A privileged token an activity acts with is in its (unjournaled) input,
//! revealed by the workflow just before the step.

mod client;
mod handover;
mod init;
mod kv;
mod token;
mod unseal;
mod wait;

use std::path::Path;

use foundry_core::{ActivityError, SecretValue};

pub use client::{BaoClient, CA_CERT_PATH, GenerateRoot, Health, Mount, SealStatus, TokenTtl};
pub use handover::{
    BaoHandover, BaoRevokeRoot, ForgetInit, ForgotOutput, HandoverOutput, RevokeOutput,
    handover_file,
};
pub use init::{BaoInit, BaoInitStatus, InitMaterial, InitOutput, InitStatus};
pub use kv::{BaoKvMount, BaoPolicy, KvMountOutput, PolicyOutput};
pub use token::{BaoToken, TokenLife, TokenOutput, TokenStore, TokenStoreError, keep_alive};
pub use unseal::{BaoUnseal, UnsealOutput};
pub use wait::BaoReady;

/// The privileged token a step needs and was not given.
fn no_token(addr: &str, doing: &str) -> ActivityError {
    ActivityError::permanent(format!(
        "{doing} at {addr} needs a privileged token, and Foundry holds neither the root token \
         of this install nor its own token\nhint: put Foundry's token back where the token store \
         keeps it, or run the step again with a root token"
    ))
}

/// Writes `content` to `path` as a private file (see `foundry_core::files`).
pub fn write_private(path: &Path, content: &SecretValue) -> Result<(), ActivityError> {
    foundry_core::files::write_private(path, content.expose().as_bytes())
        .map_err(|e| ActivityError::permanent(format!("writing {}: {e}", path.display())))
}
