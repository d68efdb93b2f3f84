//! The lab's registry image, `foundry-lab-registry:1`: a stand-in for Zot, which cannot be
//! obtained here. It is Debian's `docker-registry` (the Docker distribution registry, which
//! serves the same OCI distribution API as Zot), installed with apt on the lab's base
//! image, with a config of the lab's own: storage in a data directory that the container
//! mounts a named volume on, HTTP on port 5000, no authentication. Built once; skipped when
//! the image exists.

use foundry_activities::local::RunCommand;

/// The image the registry runs from in the lab.
pub const REGISTRY_IMAGE: &str = "foundry-lab-registry:1";
/// The package's binary, and where its config is.
pub const BINARY: &str = "/usr/bin/docker-registry";
pub const CONFIG_PATH: &str = "/etc/docker/registry/config.yml";
/// Where the registry keeps its blobs and manifests: the container mounts a named volume
/// there. The package makes it, owned by its `docker-registry` user, and a new volume
/// takes that owner.
pub const DATA_PATH: &str = "/var/lib/docker-registry";
/// The port it serves the API on.
pub const PORT: u16 = 5000;

/// The registry's config. The package's own asks for htpasswd credentials; the lab's
/// registry asks for none.
const CONFIG: &str = r#"version: 0.1
log:
  level: info
  fields:
    service: registry
storage:
  filesystem:
    rootdirectory: /var/lib/docker-registry
  delete:
    enabled: true
http:
  addr: :5000
  headers:
    X-Content-Type-Options: [nosniff]
"#;

/// After the layer functions; arguments: image, base image, config. apt runs inside the
/// build on the host's network (the base image's sources name Debian's mirror); a
/// `policy-rc.d` keeps the package's scripts from starting a service in the build.
const BUILD: &str = r#"layer_begin "$1" "$2"
config="$3"
printf '%s' "$config" > "$dir/config.yml"
cat > "$dir/Dockerfile" <<EOF
FROM $base
RUN printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod 0755 /usr/sbin/policy-rc.d \
 && apt-get update -qq \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends docker-registry \
 && rm -f /usr/sbin/policy-rc.d \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/archives/*.deb
COPY config.yml /etc/docker/registry/config.yml
USER docker-registry
EXPOSE 5000
ENTRYPOINT ["/usr/bin/docker-registry"]
CMD ["serve", "/etc/docker/registry/config.yml"]
EOF
layer_build host
"#;

/// The step that builds `image` on this machine's Docker Engine from `base` (the lab's
/// `foundry-lab:1`), unless it exists. Its probe: the image is there.
pub fn build_step(image: &str, base: &str) -> RunCommand {
    crate::image::layered_step("foundry-registry-image", BUILD, image, base, &[CONFIG])
}
