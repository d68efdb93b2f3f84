//! SSH (russh): a session to a host whose host key must be the one known, and commands
//! run over it from an argv, quoted for the remote shell (never pasted), and streams to
//! Unix sockets on the host.

mod change;
mod detach;
mod exec;
mod existing_user;
mod forward;
mod key_source;
mod keys;
mod login;
mod pool;
mod session;
mod transport;
mod upload;

pub use change::{Change, SshChange};
pub use detach::SshDetached;
pub use exec::SshExec;
pub use existing_user::{Adopted, ExistingUser};
pub use forward::ForwardError;
pub use key_source::{KeySource, KeyVault, VaultRead, set_key_vault};
pub use keys::{MemoryKeyFile, generate_ed25519, public_of};
pub use login::Login;
pub use pool::{PooledSession, SshPool};
pub use session::SshSession;
pub use transport::{SshTarget, fingerprint_of, scan_host_key};
pub use upload::{SshSendFile, SshUpload};

/// Joins an argv into one command line for the remote shell, every word quoted.
pub fn command_line(argv: &[String], sudo: bool) -> Result<String, foundry_core::ActivityError> {
    let mut words: Vec<&str> = Vec::with_capacity(argv.len() + 3);
    if sudo {
        words.extend(["sudo", "-n", "--"]);
    }
    words.extend(argv.iter().map(String::as_str));
    if argv.is_empty() {
        return Err(foundry_core::ActivityError::permanent(
            "empty command: argv needs a program",
        ));
    }
    shlex::try_join(words).map_err(|e| {
        foundry_core::ActivityError::permanent(format!("cannot quote the command: {e}"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argv_is_quoted_word_by_word() {
        let argv: Vec<String> = ["printf", "%s", "a'b\"c $(touch /tmp/x) `id` ;|&"]
            .map(String::from)
            .to_vec();
        let line = command_line(&argv, true).expect("quoted");
        assert_eq!(
            shlex::split(&line).expect("splits"),
            [
                "sudo",
                "-n",
                "--",
                "printf",
                "%s",
                "a'b\"c $(touch /tmp/x) `id` ;|&"
            ]
        );
        assert!(
            command_line(&["a\0b".to_string()], false).is_err(),
            "NUL cannot be passed"
        );
        assert!(command_line(&[], false).is_err());
    }
}
