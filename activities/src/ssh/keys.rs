//! Login keys Foundry makes: one ed25519 key per host.

use foundry_core::{ActivityError, SecretValue};
use russh::keys::PrivateKey;
use russh::keys::ssh_key::LineEnding;
use russh::keys::ssh_key::private::Ed25519Keypair;

use super::transport::public_line;

/// A fresh ed25519 key: its private half (OpenSSH format) and its public line
/// (`ssh-ed25519 AAAA… comment`).
pub fn generate_ed25519(comment: &str) -> Result<(SecretValue, String), ActivityError> {
    let seed: [u8; 32] = rand::random();
    let mut key = PrivateKey::from(Ed25519Keypair::from_seed(&seed));
    key.set_comment(comment);
    let text = key
        .to_openssh(LineEnding::LF)
        .map_err(|e| ActivityError::permanent(format!("cannot encode the new key: {e}")))?;
    let public = format!("{} {comment}", public_line(key.public_key())?);
    Ok((SecretValue::new(text.as_str()), public))
}

/// The public line (`ssh-ed25519 AAAA…`) of a private key in OpenSSH format.
pub fn public_of(private: &SecretValue) -> Result<String, ActivityError> {
    let key = russh::keys::decode_secret_key(private.expose(), None)
        .map_err(|e| ActivityError::permanent(format!("not a private key: {e}")))?;
    public_line(key.public_key())
}

/// A private key in a file that exists only in this process's memory (a memfd, mode
/// 0600), for a program such as `ssh -i` that reads keys from a path: the path works while
/// this value lives, for this process and its children, and nothing reaches a disk.
pub struct MemoryKeyFile {
    _file: std::fs::File,
    path: std::path::PathBuf,
}

impl MemoryKeyFile {
    pub fn new(key: &SecretValue) -> Result<MemoryKeyFile, ActivityError> {
        use rustix::fs::{MemfdFlags, Mode, fchmod, memfd_create};
        use std::io::Write;
        use std::os::fd::AsRawFd;
        let failed =
            |e: std::io::Error| ActivityError::permanent(format!("holding the key in memory: {e}"));
        let fd =
            memfd_create("foundry-ssh-key", MemfdFlags::CLOEXEC).map_err(|e| failed(e.into()))?;
        fchmod(&fd, Mode::RUSR | Mode::WUSR).map_err(|e| failed(e.into()))?;
        let mut file = std::fs::File::from(fd);
        file.write_all(key.expose().as_bytes()).map_err(failed)?;
        let path = format!("/proc/{}/fd/{}", std::process::id(), file.as_raw_fd()).into();
        Ok(MemoryKeyFile { _file: file, path })
    }

    pub fn path(&self) -> &std::path::Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_key_gives_back_its_public_half() {
        let (private, public) = generate_ed25519("foundry@web-1").expect("key");
        assert!(public.starts_with("ssh-ed25519 ") && public.ends_with(" foundry@web-1"));
        let derived = public_of(&private).expect("public");
        assert!(public.starts_with(&derived), "{public} / {derived}");
        let in_memory = MemoryKeyFile::new(&private).expect("memfd");
        let read = std::fs::read_to_string(in_memory.path()).expect("read by path");
        assert_eq!(read, private.expose());
        let (other, _) = generate_ed25519("x").expect("key");
        assert_ne!(
            public_of(&other).expect("public"),
            derived,
            "keys are unique"
        );
        assert!(public_of(&SecretValue::new("nope")).is_err());
    }
}
