//! Login keys Foundry makes: one ed25519 key per host.

use foundry_core::{ActivityError, SecretValue};
use russh::keys::PrivateKey;
use russh::keys::ssh_key::LineEnding;
use russh::keys::ssh_key::private::Ed25519Keypair;

use super::session::public_line;

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_key_gives_back_its_public_half() {
        let (private, public) = generate_ed25519("foundry@web-1").expect("key");
        assert!(public.starts_with("ssh-ed25519 ") && public.ends_with(" foundry@web-1"));
        let derived = public_of(&private).expect("public");
        assert!(public.starts_with(&derived), "{public} / {derived}");
        let (other, _) = generate_ed25519("x").expect("key");
        assert_ne!(
            public_of(&other).expect("public"),
            derived,
            "keys are unique"
        );
        assert!(public_of(&SecretValue::new("nope")).is_err());
    }
}
