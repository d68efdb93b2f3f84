//! The lab's registry image, `foundry-lab-registry:2`: the lab's stand-in for Zot, whose
//! upstream image cannot be pulled here. It keeps the upstream image's contract, so the
//! product cannot tell: the entrypoint `/usr/bin/zot`, the command `serve
//! /etc/zot/config.json`, Zot's `config.json` format, port 5000, storage in
//! `/var/lib/registry`, run as root as upstream's is. Behind that contract it is Debian's
//! `docker-registry` (the Docker distribution registry, which serves the same OCI
//! distribution API, `/v2/`), installed with apt on the lab's base image: `/usr/bin/zot` is
//! a small translator (Python, which the lab's base image has) that reads Zot's
//! `config.json`, refuses any key it does not translate, writes docker-registry's config
//! and execs it. Built once; skipped when the image exists.

/// The lab's stand-in for Zot, built on this machine when missing.
pub const REGISTRY_IMAGE: &str = "foundry-lab-registry:2";
/// The stand-in's `/usr/bin/zot`: `zot serve <config.json>`. It knows the keys the
/// product writes (and the upstream image's default config has); any other key, or a
/// value it cannot translate, ends it with a message naming the key and exit status 1, so
/// that nothing the product writes is silently ignored in the lab.
pub const TRANSLATOR: &str = r#"#!/usr/bin/python3
"""The lab's stand-in for Zot: `zot serve <config.json>` reads Zot's config.json, writes
Debian docker-registry's config from it, and execs docker-registry. A key it does not
translate is refused, never ignored."""
import ipaddress
import json
import os
import sys

REGISTRY = "/usr/bin/docker-registry"
TRANSLATED = "/run/zot-stand-in/registry.yml"
KEYS = {
    "": {"distSpecVersion", "storage", "http", "log"},
    "storage": {"rootDirectory"},
    "http": {"address", "port", "compat"},
    "log": {"level"},
}
# Zot's level names, and docker-registry's for them.
LEVELS = {"debug": "debug", "trace": "debug", "info": "info", "warn": "warn",
          "warning": "warn", "error": "error"}


def fail(message, status=1):
    sys.stderr.write("zot (the lab's stand-in for Zot): %s\n" % message)
    sys.exit(status)


def section(config, name, path):
    value = config.get(name)
    if not isinstance(value, dict):
        fail("%s: `%s` must be an object" % (path, name))
    unknown = sorted(set(value) - KEYS[name])
    if unknown:
        fail("%s: unsupported key %s in `%s` (the stand-in translates only %s)"
             % (path, ", ".join("`%s.%s`" % (name, k) for k in unknown), name,
                ", ".join(sorted(KEYS[name]))))
    return value


def translate(path):
    try:
        with open(path, encoding="utf-8") as f:
            config = json.load(f)
    except (OSError, ValueError) as e:
        fail("reading %s: %s" % (path, e))
    if not isinstance(config, dict):
        fail("%s: expected a JSON object" % path)
    unknown = sorted(set(config) - KEYS[""])
    if unknown:
        fail("%s: unsupported key %s (the stand-in translates only %s)"
             % (path, ", ".join("`%s`" % k for k in unknown), ", ".join(sorted(KEYS[""]))))
    version = config.get("distSpecVersion", "1.1.1")
    if not isinstance(version, str) or not version.startswith("1."):
        fail("%s: `distSpecVersion` %r: expected a 1.x version such as \"1.1.1\"" % (path, version))
    storage = section(config, "storage", path)
    root = storage.get("rootDirectory")
    if not isinstance(root, str) or not root.startswith("/"):
        fail("%s: `storage.rootDirectory` %r: expected an absolute path" % (path, root))
    http = section(config, "http", path)
    address = http.get("address")
    try:
        ipaddress.IPv4Address(address)
    except ValueError:
        fail("%s: `http.address` %r: expected an IPv4 address" % (path, address))
    port = http.get("port")
    if not isinstance(port, str) or not port.isdigit() or not 0 < int(port) < 65536:
        fail("%s: `http.port` %r: expected a port as a string, as Zot reads it (\"5000\")"
             % (path, port))
    compat = http.get("compat", [])
    if not isinstance(compat, list) or any(c != "docker2s2" for c in compat):
        fail("%s: `http.compat` %r: the stand-in serves only [\"docker2s2\"]" % (path, compat))
    level = "debug"
    if "log" in config:
        level = section(config, "log", path).get("level", "debug")
    if level not in LEVELS:
        fail("%s: `log.level` %r: expected one of %s" % (path, level, ", ".join(LEVELS)))
    return "\n".join([
        "version: 0.1",
        "log:",
        "  level: %s" % LEVELS[level],
        "  fields:",
        "    service: registry",
        "storage:",
        "  filesystem:",
        "    rootdirectory: %s" % json.dumps(root),
        "  delete:",
        "    enabled: true",
        "http:",
        "  addr: %s" % json.dumps("%s:%s" % (address, port)),
        "  headers:",
        "    X-Content-Type-Options: [nosniff]",
        "",
    ])


def main(args):
    if len(args) != 2 or args[0] != "serve":
        fail("usage: zot serve <config.json> (the only command the stand-in has)", 2)
    translated = translate(args[1])
    os.makedirs(os.path.dirname(TRANSLATED), exist_ok=True)
    with open(TRANSLATED, "w", encoding="utf-8") as f:
        f.write(translated)
    os.execv(REGISTRY, [REGISTRY, "serve", TRANSLATED])


main(sys.argv[1:])
"#;

/// The upstream image's own default `/etc/zot/config.json` (its `build/Dockerfile`), so a
/// container run without Foundry's config serves as upstream's does.
const DEFAULT_CONFIG: &str = r#"{
    "storage": {
        "rootDirectory": "/var/lib/registry"
    },
    "http": {
        "address": "0.0.0.0",
        "port": "5000",
        "compat": ["docker2s2"]
    },
    "log": {
        "level": "debug"
    }
}
"#;

/// After the layer functions; arguments: image, base image, translator, default config.
/// apt runs inside the build on the host's network (the base image's sources name
/// Debian's mirror); a `policy-rc.d` keeps the package's scripts from starting a service
/// in the build.
const BUILD: &str = r#"layer_begin "$1" "$2"
printf '%s' "$3" > "$dir/zot"
chmod 0755 "$dir/zot"
printf '%s' "$4" > "$dir/config.json"
cat > "$dir/Dockerfile" <<EOF
FROM $base
RUN printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod 0755 /usr/sbin/policy-rc.d \
 && apt-get update -qq \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends docker-registry \
 && rm -f /usr/sbin/policy-rc.d \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/archives/*.deb \
 && mkdir -p /etc/zot /var/lib/registry
COPY zot /usr/bin/zot
COPY config.json /etc/zot/config.json
LABEL org.opencontainers.image.title="foundry-lab-registry" \
      org.opencontainers.image.description="The lab's stand-in for Zot: Debian's docker-registry behind Zot's image contract (zot serve /etc/zot/config.json, port 5000, /var/lib/registry)"
EXPOSE 5000
ENTRYPOINT ["/usr/bin/zot"]
CMD ["serve", "/etc/zot/config.json"]
EOF
layer_build host
"#;

/// The step that builds `image` on this machine's Docker Engine from `base` (the lab's
/// `foundry-lab:1`), unless it exists. Its probe: the image is there.
pub fn build_step(image: &str, base: &str) -> foundry_activities::container::BuildImage {
    crate::image::layered_step(
        "foundry-registry-image",
        BUILD,
        image,
        base,
        &[TRANSLATOR, DEFAULT_CONFIG],
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The stand-in's image keeps the upstream contract the product relies on.
    #[test]
    fn the_stand_in_keeps_zots_entrypoint_command_port_and_paths() {
        assert!(BUILD.contains(r#"ENTRYPOINT ["/usr/bin/zot"]"#));
        assert!(BUILD.contains(&format!(
            r#"CMD ["serve", "{}"]"#,
            super::super::CONFIG_PATH
        )));
        assert!(BUILD.contains(&format!("EXPOSE {}", super::super::PORT)));
        assert!(BUILD.contains(super::super::DATA_PATH));
        assert!(BUILD.contains("stand-in for Zot"));
        let default: serde_json::Value =
            serde_json::from_str(DEFAULT_CONFIG).expect("the default config is JSON");
        assert_eq!(default["storage"]["rootDirectory"], super::super::DATA_PATH);
        assert_eq!(default["http"]["port"], super::super::PORT.to_string());
    }
}
