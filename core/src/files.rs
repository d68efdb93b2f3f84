//! Private files: what Foundry writes that others must not read (configs, keys, tokens).

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::Path;

/// Writes `bytes` to `path` as a private file: its folder made (0700) when missing, the
/// file 0600, written in full and synced under a temporary name beside it, then renamed
/// over `path`, so a reader never sees half of it.
pub fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?;
    }
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    // A name nobody can guess, opened only if it does not exist (O_CREAT|O_EXCL): a file
    // or link planted beside `path` is never written through.
    let tmp = path.with_file_name(format!(".{name}.{}.partial", uuid::Uuid::new_v4().simple()));
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)?;
    let written = file
        .write_all(bytes)
        .and_then(|()| file.sync_all())
        .and_then(|()| std::fs::rename(&tmp, path));
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_planted_link_at_the_old_temporary_name_is_never_written_through() {
        let dir = tempfile::tempdir().expect("tempdir");
        let target = dir.path().join("victim");
        std::fs::write(&target, b"untouched").expect("victim");
        let path = dir.path().join("token");
        std::os::unix::fs::symlink(&target, dir.path().join(".token.partial")).expect("link");
        write_private(&path, b"secret").expect("write");
        assert_eq!(std::fs::read(&target).expect("victim"), b"untouched");
        assert_eq!(std::fs::read(&path).expect("token"), b"secret");
    }

    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn a_private_file_replaces_the_old_one_whole() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("new").join("token");
        write_private(&path, b"one").expect("write");
        write_private(&path, b"two").expect("rewrite");
        assert_eq!(std::fs::read(&path).expect("read"), b"two");
        let mode = |p: &Path| std::fs::metadata(p).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(&dir.path().join("new")), 0o700);
        assert_eq!(
            std::fs::read_dir(dir.path().join("new"))
                .expect("dir")
                .count(),
            1
        );
    }
}
