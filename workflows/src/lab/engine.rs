//! A lab host with a Docker Engine of its own (`foundry lab up --own-engine`): its
//! container runs `dockerd` from Debian's `docker.io`, so installs on it cross SSH to an
//! Engine that is not this machine's, and every image it runs reaches it by a pull or a
//! load through that SSH connection, as on a real server. The image is a layer on the
//! lab's, built here once (`foundry-lab-engine:1`); the default lab image stays as it is.

use foundry_activities::container::BuildImage;
use foundry_activities::container::ContainerSpec;
use foundry_activities::local::RunCommand;

/// The image of a lab host with its own Engine.
pub const LAB_ENGINE_IMAGE: &str = "foundry-lab-engine:1";
/// On such a host's container, `1`.
pub const OWN_ENGINE_LABEL: &str = "foundry.lab.own-engine";

/// After the layer functions; arguments: image, base image. The entrypoint starts
/// `dockerd` with the container's arguments (its own session, its log in
/// `/var/log/dockerd.log`), then becomes the lab host's usual init (sshd).
const BUILD: &str = r#"layer_begin "$1" "$2"
cat > "$dir/foundry-lab-engine-init" <<'INIT'
#!/bin/sh
set -e
setsid /usr/sbin/dockerd "$@" </dev/null >/var/log/dockerd.log 2>&1 &
exec /usr/local/sbin/foundry-lab-init
INIT
cat > "$dir/Dockerfile" <<EOF
FROM $base
RUN printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod 0755 /usr/sbin/policy-rc.d \
 && apt-get update -qq \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends docker.io iptables \
 && rm -f /usr/sbin/policy-rc.d \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/archives/*.deb
COPY foundry-lab-engine-init /usr/local/sbin/foundry-lab-engine-init
RUN chmod 0755 /usr/local/sbin/foundry-lab-engine-init
VOLUME /var/lib/docker
ENTRYPOINT ["/usr/local/sbin/foundry-lab-engine-init"]
EOF
layer_build host
"#;

/// The step that builds the image on this machine's Engine from the lab's, unless it
/// exists.
pub fn build_step(base: &str) -> BuildImage {
    crate::image::layered_step(
        "foundry-lab-engine-image",
        BUILD,
        LAB_ENGINE_IMAGE,
        base,
        &[],
    )
}

/// `spec`, a lab host's container, made one that runs its own Engine.
///
/// `dockerd` inside a container needs mounts, cgroups and unconfined system calls: all
/// capabilities but `SYS_RESOURCE` rather than `--privileged`, because some Engines (this
/// project's CI among them) run under a bounding set without `CAP_SYS_RESOURCE`, which
/// `--privileged` asks for and fails; the cgroup tree writable (cgroup v1); storage on
/// `overlay2` in the image's anonymous volume at `/var/lib/docker` (overlay cannot be
/// stacked on the container's own overlay; the volume goes with the container, `lab
/// down` removing both); no iptables rules, so the host's Engine leaves this machine's
/// firewall alone. The lab's registry
/// serves plain HTTP on the lab's network, which the Engine is told to accept.
pub fn own_engine(spec: &mut ContainerSpec, subnet: &str) {
    spec.image = LAB_ENGINE_IMAGE.into();
    spec.cmd = Some(
        [
            "--storage-driver=overlay2",
            "--iptables=false",
            "--ip6tables=false",
            "--host=unix:///var/run/docker.sock",
        ]
        .into_iter()
        .map(String::from)
        .chain([format!("--insecure-registry={subnet}")])
        .collect(),
    );
    spec.cap_add = vec!["ALL".into()];
    spec.cap_drop = vec!["SYS_RESOURCE".into()];
    spec.security_opt = vec!["seccomp=unconfined".into(), "apparmor=unconfined".into()];
    spec.binds.push("/sys/fs/cgroup:/sys/fs/cgroup".into());
    spec.labels.insert(OWN_ENGINE_LABEL.into(), "1".into());
}

/// The lab's network inside the host's own Engine, so that a service the lab's config
/// places there gets its address on the lab's network, reachable from this machine and
/// every host: a macvlan network on the host's interface, with the lab's subnet and
/// gateway, handing out addresses only from the services' range (`.240/28`). A macvlan
/// parent cannot reach its own children, so the host also gets a macvlan interface of its
/// own (`foundry-shim`, at `.239`) routing that range: its Engine can then pull from the
/// registry it runs. Arguments: container, network, subnet, gateway, range, shim address.
const NETWORK: &str = r#"set -eu
docker exec "$1" docker network inspect "$2" >/dev/null 2>&1 ||
  docker exec "$1" docker network create --driver macvlan --opt parent=eth0 \
    --subnet "$3" --gateway "$4" --ip-range "$5" "$2" >/dev/null
docker exec "$1" sh -c 'ip link show foundry-shim >/dev/null 2>&1 && exit 0
ip link add foundry-shim link eth0 type macvlan mode bridge
ip addr add "$1" dev foundry-shim
ip link set foundry-shim up
ip route add "$2" dev foundry-shim' foundry-lab-engine-shim "$6/32" "$5"
"#;

/// Exit status 0 when the network and the shim are both there. Argument: network.
const NETWORK_PROBE: &str =
    r#"docker network inspect "$1" >/dev/null && ip link show foundry-shim >/dev/null"#;

/// The last octet of the host's own interface on the lab's network.
pub(super) const SHIM: u8 = 239;
/// The range its Engine gives services: the last octet it starts at, and its prefix length.
pub(super) const SERVICES: (u8, u8) = (240, 28);

/// The step that makes the lab's network in the host's Engine; its probe: it is there.
pub fn network_step(container: &str, network: &str, subnet: &str, prefix: &str) -> RunCommand {
    let gateway = format!("{prefix}.1");
    let range = format!("{prefix}.{}/{}", SERVICES.0, SERVICES.1);
    let shim = format!("{prefix}.{SHIM}");
    let argv = [
        "sh",
        "-c",
        NETWORK,
        "foundry-lab-engine-network",
        container,
        network,
        subnet,
        &gateway,
        &range,
        &shim,
    ];
    let mut step = super::lab_command(argv.map(String::from).to_vec());
    step.probe = Some(
        [
            "docker",
            "exec",
            container,
            "sh",
            "-c",
            NETWORK_PROBE,
            "foundry-lab-engine-network",
            network,
        ]
        .map(String::from)
        .to_vec(),
    );
    step
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_host_with_its_own_engine_runs_dockerd_without_privileged() {
        let mut spec = ContainerSpec {
            image: crate::lab::LAB_IMAGE.into(),
            ..ContainerSpec::default()
        };
        own_engine(&mut spec, "10.77.9.0/24");
        assert_eq!(spec.image, LAB_ENGINE_IMAGE);
        assert!(!spec.privileged);
        assert_eq!(spec.cap_drop, ["SYS_RESOURCE"]);
        let cmd = spec.cmd.unwrap_or_default();
        assert!(
            cmd.contains(&"--storage-driver=overlay2".to_string()),
            "{cmd:?}"
        );
        assert!(cmd.contains(&"--insecure-registry=10.77.9.0/24".to_string()));
        let step = network_step("c", "foundry-lab-x", "10.77.9.0/24", "10.77.9");
        assert_eq!(
            step.argv[4..],
            [
                "c",
                "foundry-lab-x",
                "10.77.9.0/24",
                "10.77.9.1",
                "10.77.9.240/28",
                "10.77.9.239"
            ]
        );
    }
}
