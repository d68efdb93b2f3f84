//! Images built on this machine's Docker Engine: nothing is pulled. A component's lab
//! image is a layer on the lab's base image (`foundry-lab:1`), built with a Dockerfile
//! from files the step prepares; one build at a time per image.

use foundry_activities::local::RunCommand;
use foundry_core::RetryPolicy;

/// Shell functions a layered build starts with.
///
/// `layer_begin IMAGE BASE` sets `$image` and `$base`, and ends the script when the image
/// exists. Concurrent builds of one image (two runs, two test processes) take a lock per
/// image, so the second waits for the first and then finds the image, rather than
/// building it again. A missing base image is refused, naming what builds it. `$dir` is
/// the build context and `$log` the build's log, both removed at exit.
///
/// `layer_build NETWORK` builds `$dir` as `$image` with the legacy builder (no buildx
/// here), on NETWORK (`none` when everything was fetched before, `host` for apt); the
/// builder warns that it is deprecated, so its log is shown only when the build fails.
const LAYER: &str = r#"set -eu
layer_begin() {
  image="$1"; base="$2"
  docker image inspect "$image" >/dev/null 2>&1 && exit 0
  lock="/var/tmp/foundry-image-$(printf '%s' "$image" | tr -c 'A-Za-z0-9._-' '_').lock"
  if (umask 0; : >>"$lock") 2>/dev/null; then
    exec 9>>"$lock"
    flock 9
    docker image inspect "$image" >/dev/null 2>&1 && exit 0
  fi
  if ! docker image inspect "$base" >/dev/null 2>&1; then
    echo "the lab's base image $base is missing: \`foundry lab up\` builds it" >&2
    exit 2
  fi
  dir=$(mktemp -d /var/tmp/foundry-image.XXXXXX)
  log=$(mktemp /var/tmp/foundry-image-build.XXXXXX)
  trap 'rm -rf "$dir" "$log"' EXIT
}
layer_build() {
  if ! DOCKER_BUILDKIT=0 docker build --network "$1" -t "$image" "$dir" >"$log" 2>&1; then
    cat "$log" >&2
    exit 1
  fi
}
"#;

/// The step that runs `script` (`sh -c`, named `name` in `$0`) with `args` to build
/// `image` on this machine's Engine. Its probe: the image is there. Three attempts.
pub fn build_step(name: &str, script: &str, image: &str, args: &[&str]) -> RunCommand {
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
    cmd
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
) -> RunCommand {
    let mut args = vec![image, base];
    args.extend_from_slice(extra);
    build_step(name, &format!("{LAYER}{script}"), image, &args)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_layered_build_passes_its_values_as_arguments_and_probes_the_image() {
        let step = layered_step(
            "foundry-x-image",
            "layer_begin \"$1\" \"$2\"\n",
            "x:1",
            "foundry-lab:1",
            &["a b"],
        );
        assert_eq!(step.argv[0..2], ["sh", "-c"]);
        assert!(
            step.argv[2].starts_with(LAYER)
                && step.argv[2].ends_with("layer_begin \"$1\" \"$2\"\n")
        );
        assert_eq!(
            step.argv[3..],
            ["foundry-x-image", "x:1", "foundry-lab:1", "a b"]
        );
        assert_eq!(
            step.probe,
            Some(vec![
                "docker".into(),
                "image".into(),
                "inspect".into(),
                "x:1".into()
            ])
        );
        assert_eq!(step.policy.max_attempts, 3);
    }
}
