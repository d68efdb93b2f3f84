//! Foundry's home directory: `$FOUNDRY_HOME`, or `~/.foundry`. Journals live under
//! `runs/`, the local secret store under `secrets/`; everything is private to the user.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::model::RunId;

#[derive(Clone, Debug)]
pub struct Home {
    root: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum HomeError {
    #[error("cannot find foundry's home: neither FOUNDRY_HOME nor HOME is set")]
    Unset,
    #[error("foundry home {}: {detail}", path.display())]
    Unusable { path: PathBuf, detail: String },
}

impl HomeError {
    pub fn hint(&self) -> Option<String> {
        Some("set FOUNDRY_HOME to a directory you can write to".into())
    }
}

impl Home {
    /// `$FOUNDRY_HOME`, else `$HOME/.foundry`.
    pub fn from_env() -> Result<Home, HomeError> {
        if let Some(dir) = std::env::var_os("FOUNDRY_HOME").filter(|v| !v.is_empty()) {
            return Ok(Home::at(dir));
        }
        let home = std::env::var_os("HOME")
            .filter(|v| !v.is_empty())
            .ok_or(HomeError::Unset)?;
        Ok(Home::at(Path::new(&home).join(".foundry")))
    }

    pub fn at(root: impl Into<PathBuf>) -> Home {
        Home { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn runs_dir(&self) -> PathBuf {
        self.root.join("runs")
    }

    pub fn secrets_dir(&self) -> PathBuf {
        self.root.join("secrets")
    }

    /// The control socket of the process driving `run`.
    pub fn socket_path(&self, run: RunId) -> PathBuf {
        self.runs_dir().join(format!("{run}.sock"))
    }

    /// The log file of `run`.
    pub fn log_path(&self, run: RunId) -> PathBuf {
        self.runs_dir().join(format!("{run}.log"))
    }

    /// Creates the home's directories (mode 0700) and proves they can be written, so a
    /// read-only home is reported up front, naming the directory.
    pub fn ensure_writable(&self) -> Result<(), HomeError> {
        for dir in [self.root.clone(), self.runs_dir(), self.secrets_dir()] {
            make_private_dir(&dir)?;
        }
        // A name of this call's own: processes starting at once in one home must not
        // remove each other's probe.
        let probe = self
            .runs_dir()
            .join(format!(".write-test-{}", uuid::Uuid::new_v4().simple()));
        let unusable = |e: std::io::Error| HomeError::Unusable {
            path: self.runs_dir(),
            detail: format!("cannot write: {e}"),
        };
        fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&probe)
            .and_then(|mut f| f.write_all(b"ok"))
            .map_err(unusable)?;
        fs::remove_file(&probe).map_err(unusable)
    }
}

fn make_private_dir(dir: &Path) -> Result<(), HomeError> {
    let unusable = |e: std::io::Error| HomeError::Unusable {
        path: dir.to_path_buf(),
        detail: e.to_string(),
    };
    match fs::metadata(dir) {
        Ok(meta) if meta.is_dir() => Ok(()),
        Ok(_) => Err(HomeError::Unusable {
            path: dir.to_path_buf(),
            detail: "exists and is not a directory".into(),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(unusable)?;
            fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).map_err(unusable)
        }
        Err(e) => Err(unusable(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Several `foundry` processes starting at once in a fresh home all find it usable.
    #[test]
    fn homes_made_at_once_are_all_usable() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().join("home");
        std::thread::scope(|scope| {
            let calls: Vec<_> = (0..16)
                .map(|_| {
                    let home = Home::at(root.clone());
                    scope.spawn(move || (0..20).try_for_each(|_| home.ensure_writable()))
                })
                .collect();
            for call in calls {
                call.join().expect("thread").expect("usable");
            }
        });
    }
}
