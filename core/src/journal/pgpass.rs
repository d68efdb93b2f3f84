//! The password file libpq's clients read (`psql`, `pg_dump`), read the same way, since the
//! `postgres` crate does not read it: `PGPASSFILE`, else `~/.pgpass`; lines
//! `host:port:database:user:password`, `*` matching anything, `\:` and `\\` escaped, `#`
//! starting a comment. As libpq does, a file that others may read is not used (a warning
//! says so); a server on a unix socket is matched as `localhost`.

use std::path::{Path, PathBuf};

/// What a connection is to, as the file's lines name it.
pub struct Target<'a> {
    pub host: &'a str,
    pub port: u16,
    pub database: &'a str,
    pub user: &'a str,
}

/// The file to read: `PGPASSFILE`, else `~/.pgpass`.
pub fn file() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("PGPASSFILE").filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(path));
    }
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(|home| Path::new(&home).join(".pgpass"))
}

/// The password for `target` in `path`, if the file exists, is private and has a line
/// for it. A file others can read is refused with a message.
pub fn lookup(path: &Path, target: &Target<'_>) -> Result<Option<String>, String> {
    use std::os::unix::fs::PermissionsExt;
    let Ok(meta) = std::fs::metadata(path) else {
        return Ok(None);
    };
    if !meta.is_file() {
        return Ok(None);
    }
    if meta.permissions().mode() & 0o077 != 0 {
        return Err(format!(
            "the password file {} may be read by others (mode {:o}); it is not used",
            path.display(),
            meta.permissions().mode() & 0o777
        ));
    }
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read the password file {}: {e}", path.display()))?;
    Ok(find(&text, target))
}

/// The password of the first line that matches `target`.
fn find(text: &str, target: &Target<'_>) -> Option<String> {
    let port = target.port.to_string();
    let wanted = [target.host, &port, target.database, target.user];
    text.lines()
        .filter(|line| !line.trim_start().starts_with('#') && !line.trim().is_empty())
        .filter_map(|line| {
            let fields = fields(line);
            (fields.len() == 5).then_some(fields)
        })
        .find(|fields| {
            fields[..4]
                .iter()
                .zip(wanted)
                .all(|(field, value)| field == "*" || field == value)
        })
        .map(|mut fields| fields.swap_remove(4))
}

/// A line's fields: split on unescaped colons, `\x` read as `x`.
fn fields(line: &str) -> Vec<String> {
    let mut out = vec![String::new()];
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                if let (Some(next), Some(field)) = (chars.next(), out.last_mut()) {
                    field.push(next);
                }
            }
            ':' if out.len() < 5 => out.push(String::new()),
            c => {
                if let Some(field) = out.last_mut() {
                    field.push(c);
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target() -> Target<'static> {
        Target {
            host: "localhost",
            port: 5433,
            database: "foundry",
            user: "team",
        }
    }

    #[test]
    fn the_first_matching_line_gives_the_password_wildcards_and_escapes_read_as_libpq_does() {
        let text = "# comment\n\
                    db.example.com:5433:foundry:team:not-this\n\
                    localhost:5432:*:team:nor-this\n\
                    localhost:5433:*:team:pa\\:ss\\\\word\n\
                    *:*:*:*:fallback\n";
        assert_eq!(find(text, &target()).as_deref(), Some("pa:ss\\word"));
        let other = Target {
            user: "else",
            ..target()
        };
        assert_eq!(find(text, &other).as_deref(), Some("fallback"));
        assert_eq!(find("localhost:5433:foundry\n", &target()), None);
    }

    #[test]
    fn a_file_others_can_read_is_not_used() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("pgpass");
        std::fs::write(&path, "*:*:*:*:pw\n").expect("write");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let err = lookup(&path, &target()).expect_err("refused");
        assert!(err.contains("may be read by others (mode 644)"), "{err}");
        assert!(!err.contains("pw\n"), "{err}");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        assert_eq!(
            lookup(&path, &target()).expect("read").as_deref(),
            Some("pw")
        );
        assert_eq!(
            lookup(&dir.path().join("none"), &target()).expect("no file"),
            None
        );
    }
}
