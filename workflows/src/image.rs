//! Images built on this machine's Docker Engine: nothing is pulled. A component's lab
//! image is a layer on the lab's base image (`foundry-lab:1`), built with a Dockerfile
//! from files the step prepares; one build at a time per image.

use foundry_activities::container::{BuildImage, Endpoint};
use foundry_activities::local::RunCommand;
use foundry_core::RetryPolicy;

/// The image lab hosts run, and the base the component images built here are layered on.
pub const LAB_IMAGE: &str = "foundry-lab:1";
/// The image of a lab's systemd hosts (`lab up --systemd`): PID 1 systemd, as on a real
/// K3s host, with Debian's etcd for the `k3s` stand-in.
pub const LAB_SYSTEMD_IMAGE: &str = "foundry-lab-systemd:1";

/// Shell functions a layered build starts with.
///
/// `layer_begin IMAGE BASE` sets `$image` and `$base`, and ends the script when the image
/// exists. Concurrent builds of one image (two runs, two test processes) take a lock per
/// image, so the second waits for the first and then finds the image, rather than
/// building it again. The lock is a file in the Foundry home of this machine (the one
/// running Foundry, wherever its Engine is): `locks/` (0700) in `$FOUNDRY_HOME`, else in
/// `~/.foundry`, the file 0600, refused if it is a symbolic link. The wait is bounded,
/// `FOUNDRY_IMAGE_LOCK_WAIT_S` seconds (default [`LOCK_WAIT_S`]); past it the build fails
/// naming the lock and who took it last. A missing base image is refused, naming what
/// builds it. `$dir` is the build context and `$log` the build's log, both removed at
/// exit.
///
/// `layer_build NETWORK` builds `$dir` as `$image` with the legacy builder (no buildx
/// here), on NETWORK (`none` when everything was fetched before, `host` for apt); the
/// builder warns that it is deprecated, so its log is shown only when the build fails.
const LAYER: &str = r#"set -eu
layer_begin() {
  image="$1"; base="$2"
  docker image inspect "$image" >/dev/null 2>&1 && exit 0
  layer_lock
  docker image inspect "$image" >/dev/null 2>&1 && exit 0
  if ! docker image inspect "$base" >/dev/null 2>&1; then
    echo "the lab's base image $base is missing: \`foundry lab up\` builds it" >&2
    exit 2
  fi
  dir=$(mktemp -d /var/tmp/foundry-image.XXXXXX)
  log=$(mktemp /var/tmp/foundry-image-build.XXXXXX)
  trap 'rm -rf "$dir" "$log"' EXIT
}
layer_lock() {
  locks="${FOUNDRY_HOME:-${HOME:?neither FOUNDRY_HOME nor HOME is set}/.foundry}/locks"
  wait_s="${FOUNDRY_IMAGE_LOCK_WAIT_S:-__WAIT_S__}"
  case "$wait_s" in
    ''|*[!0-9]*) echo "FOUNDRY_IMAGE_LOCK_WAIT_S=$wait_s is not a whole number of seconds" >&2; exit 2 ;;
  esac
  (umask 077 && mkdir -p "$locks")
  if [ -L "$locks" ] || [ ! -O "$locks" ]; then
    echo "the lock directory $locks is not a directory of yours: refused" >&2
    exit 2
  fi
  chmod 700 "$locks"
  lock="$locks/image-$(printf '%s' "$image" | tr -c 'A-Za-z0-9._-' '_').lock"
  if [ -L "$lock" ]; then
    echo "the image lock $lock is a symbolic link: refused" >&2
    exit 2
  fi
  (umask 077 && : >>"$lock")
  chmod 600 "$lock"
  exec 9<>"$lock"
  if ! flock -w "$wait_s" 9; then
    holder=$(head -c 200 "$lock" | tr -cd 'A-Za-z0-9 .:_-')
    echo "waited $wait_s s for the image lock $lock: another build of $image holds it (the lock was last taken by ${holder:-an unknown process}); wait for it to end, or stop it" >&2
    exit 3
  fi
  printf 'pid %s at %s' "$$" "$(date -u +%Y-%m-%dT%H:%M:%SZ)" >"$lock"
}
layer_build() {
  if ! DOCKER_BUILDKIT=0 docker build --network "$1" -t "$image" "$dir" >"$log" 2>&1; then
    cat "$log" >&2
    exit 1
  fi
}
"#;

/// The shell function a build from Debian's packages calls: `bootstrap ROOT MIRROR
/// PACKAGES` runs debootstrap (bookworm, minbase, PACKAGES comma-separated) into ROOT. It
/// says so in one line and keeps debootstrap's hundreds in a log, shown (its last 50
/// lines) only when it fails.
pub const BOOTSTRAP: &str = r#"bootstrap() {
  echo "debootstrap: Debian bookworm with $3 from $2 (about a minute)"
  bootlog=$(mktemp /var/tmp/foundry-debootstrap.XXXXXX)
  if ! debootstrap --variant=minbase --include="$3" bookworm "$1" "$2" >"$bootlog" 2>&1; then
    tail -n 50 "$bootlog" >&2
    rm -f "$bootlog"
    exit 1
  fi
  rm -f "$bootlog"
}
"#;

/// How long a build waits for another build of its image, in seconds.
pub const LOCK_WAIT_S: u64 = 600;

/// The step that runs `script` (`sh -c`, named `name` in `$0`) with `args` to build
/// `image` on this machine's Engine, unless the Engine has it. The command's own probe (for
/// whoever runs it alone): the image is there. Three attempts.
pub fn build_step(name: &str, script: &str, image: &str, args: &[&str]) -> BuildImage {
    let mut argv: Vec<String> = ["sh", "-c", script, name]
        .into_iter()
        .map(str::to_string)
        .collect();
    argv.extend(args.iter().map(|a| a.to_string()));
    let mut cmd = RunCommand::new(argv);
    cmd.probe = Some(
        ["docker", "image", "inspect", image]
            .into_iter()
            .map(str::to_string)
            .collect(),
    );
    cmd.policy = RetryPolicy {
        max_attempts: 3,
        ..RetryPolicy::default()
    };
    BuildImage {
        endpoint: Endpoint::default(),
        image: image.to_string(),
        command: cmd,
    }
}

/// The step that builds `image` as a layer on `base`: `script` runs after the
/// [`LAYER`] functions with `$1` the image, `$2` the base and `extra` after them; it
/// calls `layer_begin "$1" "$2"`, fills `$dir` (a Dockerfile `FROM $base` and its files)
/// and calls `layer_build`.
pub fn layered_step(
    name: &str,
    script: &str,
    image: &str,
    base: &str,
    extra: &[&str],
) -> BuildImage {
    let mut args = vec![image, base];
    args.extend_from_slice(extra);
    let layer = LAYER.replace("__WAIT_S__", &LOCK_WAIT_S.to_string());
    build_step(name, &format!("{layer}{script}"), image, &args)
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;

    /// `bootstrap` with a stand-in `debootstrap` first on PATH that prints `lines` lines
    /// and exits with `code`: (exit code, stdout, stderr).
    fn bootstrap_with(lines: u32, code: i32) -> (Option<i32>, String, String) {
        let dir = tempfile::tempdir().expect("tempdir");
        let fake = dir.path().join("debootstrap");
        std::fs::write(
            &fake,
            format!(
                "#!/bin/sh\nfor i in $(seq 1 {lines}); do echo \"I: Retrieving package $i\"; done\nexit {code}\n"
            ),
        )
        .expect("write");
        std::fs::set_permissions(&fake, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .expect("chmod");
        let path = format!(
            "{}:{}",
            dir.path().display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let script = format!(
            "set -eu\n{BOOTSTRAP}bootstrap /nonexistent http://mirror.invalid sudo,curl\necho after\n"
        );
        let out = std::process::Command::new("sh")
            .args(["-c", &script])
            .env("PATH", path)
            .output()
            .expect("sh");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    #[test]
    fn debootstrap_shows_one_line_and_its_log_only_when_it_fails() {
        let (code, stdout, stderr) = bootstrap_with(400, 0);
        assert_eq!(code, Some(0), "{stderr}");
        assert_eq!(
            stdout.lines().collect::<Vec<_>>(),
            [
                "debootstrap: Debian bookworm with sudo,curl from http://mirror.invalid (about a minute)",
                "after"
            ]
        );
        assert_eq!(stderr, "");

        let (code, stdout, stderr) = bootstrap_with(400, 1);
        assert_eq!(code, Some(1));
        assert!(!stdout.contains("after"), "{stdout}");
        let shown: Vec<&str> = stderr.lines().collect();
        assert_eq!(shown.len(), 50, "{stderr}");
        assert_eq!(shown[49], "I: Retrieving package 400");
    }

    #[test]
    fn a_layered_build_passes_its_values_as_arguments_and_probes_the_image() {
        let step = layered_step(
            "foundry-x-image",
            "layer_begin \"$1\" \"$2\"\n",
            "x:1",
            "foundry-lab:1",
            &["a b"],
        );
        assert_eq!(step.command.argv[0..2], ["sh", "-c"]);
        let layer = LAYER.replace("__WAIT_S__", "600");
        assert!(
            step.command.argv[2].starts_with(&layer)
                && step.command.argv[2].ends_with("layer_begin \"$1\" \"$2\"\n")
        );
        assert_eq!(
            step.command.argv[3..],
            ["foundry-x-image", "x:1", "foundry-lab:1", "a b"]
        );
        assert_eq!(
            step.command.probe,
            Some(vec![
                "docker".into(),
                "image".into(),
                "inspect".into(),
                "x:1".into()
            ])
        );
        assert_eq!(step.command.policy.max_attempts, 3);
    }

    /// The script of a layered build of an image that does not exist on a base that does
    /// not either: past the lock it stops, saying the base is missing.
    fn build(home: &std::path::Path, wait_s: &str) -> (std::process::Output, Duration) {
        let step = layered_step(
            "foundry-lock-test",
            "layer_begin \"$1\" \"$2\"\necho built\n",
            "foundry-lock-test-absent:1",
            "foundry-lock-test-absent-base:1",
            &[],
        );
        let began = Instant::now();
        let out = std::process::Command::new(&step.command.argv[0])
            .args(&step.command.argv[1..])
            .env("FOUNDRY_HOME", home)
            .env("FOUNDRY_IMAGE_LOCK_WAIT_S", wait_s)
            .stdin(std::process::Stdio::null())
            .output()
            .expect("sh");
        (out, began.elapsed())
    }

    #[test]
    fn a_build_waits_a_bounded_time_for_the_image_lock_in_the_home() {
        use std::io::BufRead;
        use std::os::unix::fs::PermissionsExt;

        let dir = tempfile::tempdir().expect("tempdir");
        let home = dir.path().join("home");
        let (free, _) = build(&home, "1");
        let said = String::from_utf8_lossy(&free.stderr);
        assert_eq!(free.status.code(), Some(2), "{said}");
        assert!(
            said.contains("base image foundry-lock-test-absent-base:1 is missing"),
            "{said}"
        );
        let locks = home.join("locks");
        let lock = locks.join("image-foundry-lock-test-absent_1.lock");
        let mode = |p: &std::path::Path| {
            std::fs::symlink_metadata(p)
                .expect("meta")
                .permissions()
                .mode()
                & 0o777
        };
        assert_eq!(mode(&locks), 0o700);
        assert_eq!(mode(&lock), 0o600);

        // Another process holds it: the build waits its bound, then fails naming the lock.
        let mut holder = std::process::Command::new("flock")
            .arg(&lock)
            .args(["-c", "echo held; exec sleep 60"])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("flock");
        let mut line = String::new();
        std::io::BufReader::new(holder.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("read");
        assert_eq!(line.trim(), "held");
        let (held, took) = build(&home, "1");
        let _ = holder.kill();
        let _ = holder.wait();
        let said = String::from_utf8_lossy(&held.stderr);
        assert_eq!(held.status.code(), Some(3), "{said}");
        assert!(
            said.contains(&format!("waited 1 s for the image lock {}", lock.display()))
                && said.contains("last taken by pid "),
            "{said}"
        );
        assert!(
            took >= Duration::from_secs(1) && took < Duration::from_secs(10),
            "{took:?}"
        );

        // A link planted in its place is refused, never written through.
        let victim = dir.path().join("victim");
        std::fs::write(&victim, "untouched").expect("victim");
        std::fs::remove_file(&lock).expect("rm");
        std::os::unix::fs::symlink(&victim, &lock).expect("link");
        let (linked, _) = build(&home, "1");
        let said = String::from_utf8_lossy(&linked.stderr);
        assert_eq!(linked.status.code(), Some(2), "{said}");
        assert!(said.contains("is a symbolic link: refused"), "{said}");
        assert_eq!(
            std::fs::read_to_string(&victim).expect("victim"),
            "untouched"
        );
    }
}
