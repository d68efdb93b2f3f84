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

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::Path;

use foundry_core::{ActivityError, SecretValue};

pub use client::{BaoClient, Health, Mount, SealStatus};
pub use handover::{BaoHandover, ForgetInit, ForgotOutput, HandoverOutput};
pub use init::{BaoInit, BaoInitStatus, InitMaterial, InitOutput, InitStatus};
pub use kv::{BaoKvMount, BaoPolicy, KvMountOutput, PolicyOutput};
pub use token::{BaoToken, TokenOutput, TokenStore, TokenStoreError};
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

/// Writes `content` to `path` as a private file (0600, its folder 0700 when made here),
/// replacing it atomically by rename.
pub fn write_private(path: &Path, content: &SecretValue) -> Result<(), ActivityError> {
    let fail =
        |e: std::io::Error| ActivityError::permanent(format!("writing {}: {e}", path.display()));
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(fail)?;
    }
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.partial"));
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(fail)?;
    file.write_all(content.expose().as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(fail)?;
    std::fs::rename(&tmp, path).map_err(fail)
}
