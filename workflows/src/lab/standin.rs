//! The stand-ins for K3s that a lab of systemd hosts is given: no K3s binary can be had
//! on the machines Foundry is developed on. [`K3S`] is the file Foundry uploads to
//! `/usr/local/bin/k3s` as it would the real binary (one Python executable: the
//! Kubernetes API stand-in, then the k3s stand-in, whose servers run Debian's real etcd),
//! and [`INSTALL_SH`] stands in for K3s's `install.sh`. Both keep the real install
//! contract (`standin/k3s.py` and `standin/install.sh` say what of it).

use std::path::{Path, PathBuf};

use foundry_activities::local::EnsureFile;
use foundry_core::SecretValue;

/// The k3s stand-in: one executable file.
pub const K3S: &str = concat!(
    "#!/usr/bin/env python3\nK3S_STANDIN = True\n",
    include_str!("standin/kube_api.py"),
    include_str!("standin/k3s.py")
);

/// The install.sh stand-in.
pub const INSTALL_SH: &str = include_str!("standin/install.sh");

/// The version the k3s stand-in says it is (`k3s --version`).
pub fn version() -> &'static str {
    K3S.lines()
        .find_map(|l| l.strip_prefix("K3S_VERSION = \""))
        .and_then(|rest| rest.strip_suffix('"'))
        .unwrap_or("unknown")
}

/// The k3s stand-in saying it is `wanted` (`v1.33.1+k3s1`): what a lab writes to
/// stand in for several K3s releases, as for an upgrade.
pub fn k3s_at(wanted: &str) -> String {
    let line = format!("K3S_VERSION = \"{}\"", version());
    K3S.replacen(&line, &format!("K3S_VERSION = \"{wanted}\""), 1)
}

/// The K3s releases a lab stands in for, oldest first, one per minor version, so that an
/// upgrade can be taken one minor version at a time (and a skipped one refused). `k3s`
/// itself is the newest but one; each is also written as `k3s-<release>` (see
/// [`release_path`]).
pub const RELEASES: [&str; 3] = ["v1.31.9+k3s1", "v1.32.4+k3s1", "v1.33.1+k3s1"];

/// Where in `dir` the stand-in saying it is `release` is written: `k3s-<release>`.
pub fn release_path(dir: &Path, release: &str) -> PathBuf {
    dir.join(format!("k3s-{release}"))
}

/// The steps that write the stand-in once per release of [`RELEASES`] into `dir` (0755):
/// the same program, its version line changed.
pub fn release_steps(dir: &Path) -> Vec<(String, EnsureFile)> {
    RELEASES
        .iter()
        .map(|release| {
            let step = EnsureFile {
                path: release_path(dir, release),
                content: SecretValue::new(k3s_at(release)),
                mode: 0o755,
            };
            (format!("k3s-standin-{release}"), step)
        })
        .collect()
}

/// Where in `dir` the stand-ins are written: `k3s` and `install.sh`.
pub fn paths(dir: &Path) -> (PathBuf, PathBuf) {
    (dir.join("k3s"), dir.join("install.sh"))
}

/// The steps that write the stand-ins into `dir` (0755 both), for a cluster config to
/// name as the binary and the installer Foundry uploads.
pub fn write_steps(dir: &Path) -> [EnsureFile; 2] {
    let (k3s, install) = paths(dir);
    [
        EnsureFile {
            path: k3s,
            content: SecretValue::new(K3S.to_string()),
            mode: 0o755,
        },
        EnsureFile {
            path: install,
            content: SecretValue::new(INSTALL_SH.to_string()),
            mode: 0o755,
        },
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_k3s_stand_in_is_one_python_executable_that_says_its_version() {
        assert!(K3S.starts_with("#!/usr/bin/env python3\nK3S_STANDIN = True\n"));
        assert_eq!(version(), "v1.32.4+k3s1");
        assert!(INSTALL_SH.starts_with("#!/bin/sh\n"));
        let dir = tempfile::tempdir().expect("tempdir");
        let (k3s, _) = paths(dir.path());
        std::fs::write(&k3s, K3S).expect("write");
        let out = std::process::Command::new("python3")
            .arg(&k3s)
            .arg("--version")
            .output()
            .expect("python3");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).lines().next(),
            Some("k3s version v1.32.4+k3s1 (stand-in)")
        );

        std::fs::write(&k3s, k3s_at("v1.33.1+k3s1")).expect("write");
        let out = std::process::Command::new("python3")
            .arg(&k3s)
            .arg("--version")
            .output()
            .expect("python3");
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).lines().next(),
            Some("k3s version v1.33.1+k3s1 (stand-in)")
        );

        // One file per release, each saying its own version; `k3s` is one of them.
        assert!(RELEASES.contains(&version()));
        let steps = release_steps(dir.path());
        assert_eq!(steps.len(), RELEASES.len());
        for ((name, step), release) in steps.iter().zip(RELEASES) {
            assert_eq!(name, &format!("k3s-standin-{release}"));
            assert_eq!(step.path, release_path(dir.path(), release));
            let line = format!("K3S_VERSION = \"{release}\"");
            assert!(step.content.expose().contains(&line), "{release}");
        }
    }
}
