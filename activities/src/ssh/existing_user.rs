//! Looks at a user that may already exist on a host before Foundry takes it over: login
//! keys other than Foundry's own and a usable password are what someone else put there,
//! and granting such a user passwordless sudo would hand it to them too.

use std::str::FromStr;

use foundry_core::{Activity, ActivityCx, ActivityError, InDoubt, RetryPolicy};
use russh::keys::ssh_key::authorized_keys::Entry;
use russh::keys::{HashAlg, PublicKey};
use serde::{Deserialize, Serialize};

use super::{SshPool, SshTarget, command_line};

/// Read-only, as root. Args: user, sudoers path, sudoers content. Prints `absent`, or
/// `present`, `granted` when that sudoers file is already in place, the password's
/// state (never the hash) and every line of the user's authorized keys files after `key `.
const SCRIPT: &str = r#"set -eu
u="$1"; path="$2"; want="$3"
entry=$(getent passwd "$u") || { echo absent; exit 0; }
echo present
if [ -f "$path" ] && printf '%s' "$want" | cmp -s - "$path"; then echo granted; fi
shadow=$(getent shadow "$u") || shadow="$u:*"
case "$(printf '%s\n' "$shadow" | cut -d: -f2)" in
  '!'*|'*'*) echo "password locked" ;;
  '') echo "password empty" ;;
  *) echo "password set" ;;
esac
home=$(printf '%s\n' "$entry" | cut -d: -f6)
for f in "$home/.ssh/authorized_keys" "$home/.ssh/authorized_keys2"; do
  if [ -f "$f" ]; then head -c 262144 "$f" | awk '{ print "key " $0 }'; fi
done
"#;

/// At most this many of a user's key lines are described; the rest are counted.
const KEYS_SHOWN: usize = 20;
/// A key's comment is cut to this many characters.
const COMMENT_CHARS: usize = 80;

/// Checks the user `user` on a host before `host configure` gives it sudo and Foundry's
/// key. A user that does not exist, that has only Foundry's key and no password, or that
/// Foundry's sudoers file already names, passes quietly; otherwise the step fails with what
/// was found, unless `adopt` accepts the user as it is.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ExistingUser {
    pub target: SshTarget,
    /// The host's name, for the hint.
    pub host: String,
    pub user: String,
    /// Foundry's public key for this host (`ssh-ed25519 AAAA…`).
    pub foundry_key: String,
    pub sudoers_path: String,
    pub sudoers_line: String,
    pub adopt: bool,
}

/// What the journal keeps: what was accepted as it was (`--adopt`), described without
/// anything secret: each other key's type, fingerprint and comment, and the password's
/// state (never its hash).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Adopted {
    pub adopted: Vec<String>,
}

impl ExistingUser {
    /// What `report` (the script's output) shows that Foundry did not put there; empty when
    /// the user is absent or already Foundry's.
    fn foreign(&self, report: &str) -> Result<Vec<String>, ActivityError> {
        let mut lines = report.lines();
        match lines.next() {
            Some("absent") => return Ok(Vec::new()),
            Some("present") => {}
            other => {
                return Err(ActivityError::permanent(format!(
                    "{}: checking the user `{}`: unexpected answer {:?}",
                    self.target,
                    self.user,
                    other.unwrap_or("(nothing)")
                )));
            }
        }
        let ours = PublicKey::from_openssh(self.foundry_key.trim())
            .map_err(|e| ActivityError::permanent(format!("Foundry's key: {e}")))?;
        let mut found = Vec::new();
        let mut keys = 0;
        for line in lines {
            if line == "granted" {
                // Foundry's sudoers file is there: this user was created or adopted before.
                return Ok(Vec::new());
            }
            if let Some(state) = line.strip_prefix("password ") {
                match state {
                    "set" => found.push("password set".to_string()),
                    "empty" => found.push("password empty (logins need none)".to_string()),
                    _ => {}
                }
                continue;
            }
            let Some(key) = line.strip_prefix("key ") else {
                continue;
            };
            let key = key.trim();
            if key.is_empty() || key.starts_with('#') {
                continue;
            }
            keys += 1;
            let described = match Entry::from_str(key) {
                Ok(entry) if entry.public_key().key_data() == ours.key_data() => continue,
                Ok(entry) => describe(entry.public_key()),
                Err(_) => "key of a kind Foundry cannot read".to_string(),
            };
            if keys <= KEYS_SHOWN {
                found.push(described);
            }
        }
        if keys > KEYS_SHOWN {
            found.push(format!("{} more keys", keys - KEYS_SHOWN));
        }
        Ok(found)
    }
}

/// `key ssh-ed25519 SHA256:… alice@laptop`: what identifies a key, nothing secret.
fn describe(key: &PublicKey) -> String {
    let comment: String = key
        .comment()
        .as_str_lossy()
        .chars()
        .filter(|c| !c.is_control())
        .take(COMMENT_CHARS)
        .collect();
    let mut text = format!(
        "key {} {}",
        key.algorithm().as_str(),
        key.fingerprint(HashAlg::Sha256)
    );
    if !comment.is_empty() {
        text.push(' ');
        text.push_str(&comment);
    }
    text
}

impl Activity for ExistingUser {
    type Output = Adopted;

    fn kind(&self) -> &'static str {
        "ssh-existing-user"
    }

    /// It only reads: a step in doubt looks again.
    fn in_doubt(&self) -> InDoubt {
        InDoubt::Rerun
    }

    fn retry_policy(&self) -> RetryPolicy {
        RetryPolicy {
            max_attempts: 3,
            ..RetryPolicy::default()
        }
    }

    async fn probe(&self, _cx: &ActivityCx) -> Result<Option<Adopted>, ActivityError> {
        Ok(None)
    }

    async fn apply(&self, cx: &ActivityCx) -> Result<Adopted, ActivityError> {
        let argv: Vec<String> = [
            "sh",
            "-c",
            SCRIPT,
            "sh",
            &self.user,
            &self.sudoers_path,
            &self.sudoers_line,
        ]
        .map(String::from)
        .to_vec();
        let line = command_line(&argv, true)?;
        let session = SshPool::global().session(&self.target).await?;
        let (code, out) = session.channel().await?.capture(&line, cx).await?;
        if code != 0 {
            return Err(ActivityError::transient(format!(
                "{}: checking the user `{}` exited with status {code}",
                self.target, self.user
            )));
        }
        let foreign = self.foreign(&String::from_utf8_lossy(&out))?;
        if foreign.is_empty() || self.adopt {
            return Ok(Adopted { adopted: foreign });
        }
        Err(ActivityError::permanent(format!(
            "{}: the user `{}` exists already, with what Foundry did not put there \
             (nothing was changed):\n  {}\nhint: `foundry host configure --adopt {}` \
             accepts the user as it is (its keys and password stay, and it gets \
             passwordless sudo); or remove them from the host first",
            self.target,
            self.user,
            foreign.join("\n  "),
            self.host
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OURS: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGspDIVyKXGrTHQoM66VejdO98nnAg2v2kYRDW+3ZAmb";
    const THEIRS: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIM0FcFayBozTin9z8+gKcAPgWheZqFb/7a6yEQywwrOf";

    fn check() -> ExistingUser {
        ExistingUser {
            target: SshTarget {
                address: "192.0.2.1".into(),
                port: 22,
                user: "admin".into(),
                key: super::super::KeySource::File("/k".into()),
                host_key: String::new(),
            },
            host: "web-1".into(),
            user: "foundry".into(),
            foundry_key: OURS.into(),
            sudoers_path: "/etc/sudoers.d/foundry".into(),
            sudoers_line: "x".into(),
            adopt: false,
        }
    }

    #[test]
    fn only_what_foundry_did_not_put_there_is_reported() {
        let c = check();
        assert_eq!(c.foreign("absent\n").expect("read"), Vec::<String>::new());
        let ours_only = format!("present\npassword locked\nkey {OURS} foundry\nkey \nkey # x\n");
        assert!(c.foreign(&ours_only).expect("read").is_empty());
        let theirs = format!(
            "present\npassword set\nkey {OURS}\nkey from=\"10.0.0.1\" {THEIRS} alice@laptop\nkey garbage\n"
        );
        let found = c.foreign(&theirs).expect("read");
        let fingerprint = PublicKey::from_openssh(THEIRS)
            .expect("key")
            .fingerprint(HashAlg::Sha256)
            .to_string();
        assert_eq!(
            found,
            [
                "password set".to_string(),
                format!("key ssh-ed25519 {fingerprint} alice@laptop"),
                "key of a kind Foundry cannot read".to_string(),
            ]
        );
        // Foundry's sudoers file is in place: the user was accepted before.
        let granted = format!("present\ngranted\npassword set\nkey {THEIRS}\n");
        assert!(c.foreign(&granted).expect("read").is_empty());
        assert!(c.foreign("").is_err());
    }
}
