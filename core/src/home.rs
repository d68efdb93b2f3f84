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
    #[error("foundry home {} is not private: {detail}", path.display())]
    Unsafe { path: PathBuf, detail: String },
}

impl HomeError {
    pub fn hint(&self) -> Option<String> {
        match self {
            HomeError::Unsafe { path, .. } => Some(format!(
                "check nobody else has put files there, then `chown -R $(id -u) {0}` and `chmod 700 {0}`; or set FOUNDRY_HOME to a directory of your own",
                path.display()
            )),
            _ => Some("set FOUNDRY_HOME to a directory you can write to".into()),
        }
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
            .create_new(true)
            .mode(0o600)
            .open(&probe)
            .and_then(|mut f| f.write_all(b"ok"))
            .map_err(unusable)?;
        fs::remove_file(&probe).map_err(unusable)
    }
}

/// A directory of the home that already exists must be ours and writable by us alone:
/// another owner, or write access for group or others (who could plant a journal, a socket
/// or a link), is refused; read access for them is taken away, with a warning.
fn check_private_dir(dir: &Path, meta: &fs::Metadata) -> Result<(), HomeError> {
    use std::os::unix::fs::MetadataExt;
    let refused = |detail: String| HomeError::Unsafe {
        path: dir.to_path_buf(),
        detail,
    };
    let me = rustix::process::getuid().as_raw();
    if meta.uid() != me {
        return Err(refused(format!(
            "owned by uid {}, not by you (uid {me})",
            meta.uid()
        )));
    }
    let mode = meta.mode() & 0o7777;
    if mode & 0o022 != 0 {
        return Err(refused(format!("mode {mode:o}: others may write to it")));
    }
    if mode & 0o077 != 0 {
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).map_err(|e| {
            HomeError::Unusable {
                path: dir.to_path_buf(),
                detail: format!(
                    "mode {mode:o} lets others read it, and making it 0700 failed: {e}"
                ),
            }
        })?;
        tracing::warn!(
            dir = %dir.display(),
            was = format!("{mode:o}"),
            "others could read foundry's directory: made it 0700"
        );
    }
    Ok(())
}

fn make_private_dir(dir: &Path) -> Result<(), HomeError> {
    let unusable = |e: std::io::Error| HomeError::Unusable {
        path: dir.to_path_buf(),
        detail: e.to_string(),
    };
    match fs::metadata(dir) {
        Ok(meta) if meta.is_dir() => check_private_dir(dir, &meta),
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

    fn mode(p: &Path) -> u32 {
        fs::metadata(p).expect("meta").permissions().mode() & 0o777
    }

    #[test]
    fn a_home_others_may_write_is_refused_and_one_they_may_read_is_made_private() {
        let dir = tempfile::tempdir().expect("tempdir");
        let home = Home::at(dir.path().join("home"));
        home.ensure_writable().expect("fresh");
        fs::set_permissions(home.runs_dir(), fs::Permissions::from_mode(0o777)).expect("chmod");
        let err = home.ensure_writable().expect_err("refused");
        assert!(matches!(err, HomeError::Unsafe { .. }), "{err}");
        assert!(err.to_string().contains("runs"), "{err}");
        assert!(err.hint().is_some_and(|h| h.contains("chmod 700")));
        assert_eq!(
            mode(&home.runs_dir()),
            0o777,
            "a refused directory is left alone"
        );

        fs::set_permissions(home.runs_dir(), fs::Permissions::from_mode(0o700)).expect("chmod");
        fs::set_permissions(home.secrets_dir(), fs::Permissions::from_mode(0o755)).expect("chmod");
        fs::set_permissions(home.root(), fs::Permissions::from_mode(0o750)).expect("chmod");
        home.ensure_writable().expect("fixed");
        assert_eq!(mode(&home.secrets_dir()), 0o700);
        assert_eq!(mode(home.root()), 0o700);

        // Another owner (only root can make one here).
        if rustix::process::getuid().is_root() {
            std::os::unix::fs::chown(home.secrets_dir(), Some(65534), None).expect("chown");
            let err = home.ensure_writable().expect_err("refused");
            assert!(err.to_string().contains("owned by uid 65534"), "{err}");
        }
    }

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
