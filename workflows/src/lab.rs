//! `lab-up` and `lab-down`: a local lab of real Debian hosts running sshd, in containers on
//! a private Docker network, like kind or k3d for Kubernetes. The lab's image is built here
//! from Debian's packages (debootstrap, then `docker import`): nothing is pulled. One host,
//! the *engine host*, gets this machine's Docker Engine socket, so that containers can be
//! managed on it through SSH as on a real server; or, with `own_engine`, a Docker Engine
//! of its own (`lab/engine.rs`), so that installs and their images cross SSH for real.

pub mod engine;
pub mod standin;

use std::path::PathBuf;
use std::time::Duration;

use foundry_activities::container::{
    ContainerSpec, DEFAULT_SOCKET, Endpoint, EnsureContainer, EnsureNetwork, RemoveLabelled,
};
use foundry_activities::local::{EnsureFile, ReadFileWhenReady, RemoveFile, RunCommand};
use foundry_core::{Ctx, FailurePolicy, RetryPolicy, RunError, SecretValue, Workflow};
use serde::{Deserialize, Serialize};

/// The label every lab container and network carries, with the lab's name.
pub const LAB_LABEL: &str = "foundry.lab";
/// The host's name and address in its lab, as labels on its container.
pub const HOST_LABEL: &str = "foundry.lab.host";
pub const ADDRESS_LABEL: &str = "foundry.lab.address";
/// On the engine host's container, `1`: it has the Docker Engine's socket at
/// `/var/run/docker.sock`, usable by the lab's user over SSH.
pub const ENGINE_LABEL: &str = "foundry.lab.engine";
/// Where the engine host has the Engine's socket.
pub const ENGINE_SOCKET: &str = DEFAULT_SOCKET;
/// The engine host unless the user picks another, or none.
pub const DEFAULT_ENGINE_HOST: &str = "host-1";
pub use crate::image::{LAB_IMAGE, LAB_SYSTEMD_IMAGE};
/// The admin user of every lab host (with passwordless sudo).
pub const LAB_USER: &str = "admin";

/// What every lab host does at boot before sshd runs: fresh host keys the first time, the
/// lab's key for `admin`, and its public host key written out for `lab up` to read.
const HOST_PREPARE: &str = r#"#!/bin/sh
set -e
[ -f /etc/ssh/ssh_host_ed25519_key ] || ssh-keygen -A >/dev/null
mkdir -p /run/sshd /home/admin/.ssh
if [ -f /etc/foundry/authorized_keys ]; then
  install -m 0600 -o admin -g admin /etc/foundry/authorized_keys /home/admin/.ssh/authorized_keys
fi
chown admin:admin /home/admin/.ssh && chmod 0700 /home/admin/.ssh
if [ -d /etc/foundry/out ]; then cp /etc/ssh/ssh_host_ed25519_key.pub /etc/foundry/out/host_ed25519.pub; fi
"#;

/// Builds the image once: debootstrap, an admin user with sudo, an init that makes fresh
/// host keys, installs the lab's key and starts sshd. Arguments: image, mirror, the init
/// ([`HOST_PREPARE`]).
const BUILD_IMAGE: &str = r#"set -eu
image="$1"; mirror="$2"; prepare="$3"
docker image inspect "$image" >/dev/null 2>&1 && exit 0
root=$(mktemp -d /var/tmp/foundry-lab-rootfs.XXXXXX)
trap 'rm -rf "$root"' EXIT
bootstrap "$root" "$mirror" openssh-server,sudo,iproute2,procps,python3
chroot "$root" useradd --create-home --shell /bin/bash admin
printf 'admin ALL=(ALL) NOPASSWD:ALL\n' > "$root/etc/sudoers.d/foundry-admin"
chmod 0440 "$root/etc/sudoers.d/foundry-admin"
rm -f "$root"/etc/ssh/ssh_host_*
{ printf '%s\n' "$prepare"; echo 'exec /usr/sbin/sshd -D -e'; } > "$root/usr/local/sbin/foundry-lab-init"
chmod 0755 "$root/usr/local/sbin/foundry-lab-init"
rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
# mktemp made it 0700, and the tarball's `.` gives `/` its mode on a storage driver that
# keeps it (vfs).
chmod 0755 "$root"
tar -C "$root" -c . | docker import -c 'ENTRYPOINT ["/usr/local/sbin/foundry-lab-init"]' - "$image" >/dev/null
"#;

/// Builds the systemd hosts' image once: as [`BUILD_IMAGE`], but PID 1 is systemd, sshd
/// runs as Debian's `ssh.service` after a oneshot unit that does [`HOST_PREPARE`]'s work,
/// and it has what a K3s server needs here (Debian's etcd 3.4 for the `k3s` stand-in,
/// python3 with YAML, openssl, curl). Debian's own `etcd.service` is masked: the stand-in
/// runs etcd itself. Arguments: image, mirror, the prepare script.
const BUILD_SYSTEMD_IMAGE: &str = r#"set -eu
image="$1"; mirror="$2"; prepare="$3"
docker image inspect "$image" >/dev/null 2>&1 && exit 0
root=$(mktemp -d /var/tmp/foundry-lab-rootfs.XXXXXX)
trap 'rm -rf "$root"' EXIT
bootstrap "$root" "$mirror" systemd,systemd-sysv,dbus,openssh-server,sudo,iproute2,procps,python3,python3-yaml,etcd-server,etcd-client,openssl,curl,ca-certificates
chroot "$root" useradd --create-home --shell /bin/bash admin
printf 'admin ALL=(ALL) NOPASSWD:ALL\n' > "$root/etc/sudoers.d/foundry-admin"
chmod 0440 "$root/etc/sudoers.d/foundry-admin"
rm -f "$root"/etc/ssh/ssh_host_*
printf '%s\n' "$prepare" > "$root/usr/local/sbin/foundry-lab-prepare"
chmod 0755 "$root/usr/local/sbin/foundry-lab-prepare"
cat > "$root/etc/systemd/system/foundry-lab-prepare.service" <<'UNIT'
[Unit]
Description=Foundry lab host: host keys and the lab's key
Before=ssh.service

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/usr/local/sbin/foundry-lab-prepare

[Install]
WantedBy=multi-user.target
RequiredBy=ssh.service
UNIT
chroot "$root" systemctl enable foundry-lab-prepare.service ssh.service >/dev/null 2>&1
for unit in etcd.service getty@tty1.service systemd-udevd.service systemd-udev-trigger.service \
  systemd-modules-load.service systemd-remount-fs.service sys-kernel-debug.mount \
  sys-kernel-tracing.mount dev-hugepages.mount systemd-timesyncd.service apt-daily.timer \
  apt-daily-upgrade.timer e2scrub_reap.service; do
  ln -sf /dev/null "$root/etc/systemd/system/$unit"
done
rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
chmod 0755 "$root"
tar -C "$root" -c . | docker import -c 'ENTRYPOINT ["/lib/systemd/systemd"]' - "$image" >/dev/null
"#;

/// Inside the engine host: a group with the gid of the Engine's socket as bind-mounted
/// (the socket's owner and mode stay as they are), and the lab's user in it, so that sshd,
/// which opens a forwarded socket as the logged-in user, may open it. Arguments: socket,
/// user.
const ENGINE_GROUP: &str = r#"set -eu
i=0
while [ ! -S "$1" ]; do
  i=$((i + 1))
  if [ "$i" -gt 600 ]; then echo "no Docker Engine socket at $1 after 60 s" >&2; exit 1; fi
  sleep 0.1
done
gid=$(stat -c %g "$1")
if getent group foundry-engine >/dev/null; then groupmod -o -g "$gid" foundry-engine; else groupadd -o -g "$gid" foundry-engine; fi
usermod -aG foundry-engine "$2"
"#;

/// Exit status 0 when the user (argument 2) is in the group of the socket (argument 1).
const ENGINE_GROUP_PROBE: &str = r#"id -G "$2" | tr ' ' '
' | grep -qx "$(stat -c %g "$1")""#;

/// Makes the lab's SSH key once. Argument: the key's path.
const MAKE_KEY: &str = r#"set -eu
mkdir -p "$(dirname "$1")"
[ -f "$1" ] || ssh-keygen -q -t ed25519 -N '' -C foundry-lab -f "$1"
"#;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LabInput {
    pub name: String,
    pub hosts: u32,
    /// The lab network, a /24: hosts get .11, .12, …
    pub subnet: String,
    /// Where the lab's key lives (`$FOUNDRY_HOME/labs/<name>`).
    pub dir: PathBuf,
    /// The stack config the lab's hosts are written to (`$FOUNDRY_HOME/lab-<name>.yaml`).
    pub config: PathBuf,
    pub mirror: String,
    /// The host (`host-2`) that gets the Docker Engine's socket; none if absent.
    #[serde(default)]
    pub engine_host: Option<String>,
    /// The engine host runs a Docker Engine of its own instead of getting this machine's
    /// socket.
    #[serde(default)]
    pub own_engine: bool,
    /// The hosts run systemd as PID 1, as real K3s hosts do ([`LAB_SYSTEMD_IMAGE`]), and
    /// the lab's directory gets the K3s stand-ins ([`standin`]).
    #[serde(default)]
    pub systemd: bool,
}

/// One lab host, as the lab's host list records it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LabHost {
    pub name: String,
    pub address: String,
    pub user: String,
    pub port: u16,
    /// The host's public host key (`ssh-ed25519 AAAA…`).
    pub host_key: String,
    /// It has the Docker Engine's socket (the engine host).
    #[serde(default)]
    pub engine: bool,
    /// Its Engine is its own, not this machine's.
    #[serde(default)]
    pub own_engine: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LabOutput {
    pub name: String,
    pub key: PathBuf,
    pub config: PathBuf,
    pub hosts: Vec<LabHost>,
    /// With systemd hosts, the directory holding the K3s stand-ins, `k3s` and
    /// `install.sh`: what a cluster config names as the binary and installer to upload.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub k3s_standin: Option<PathBuf>,
}

/// A lab's name: letters, digits and `-`.
fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
        return Err(format!("lab name `{name}`: use letters, digits and `-`"));
    }
    Ok(())
}

/// The first three octets of a lab's subnet, which must be a /24.
fn prefix_of(subnet: &str) -> Result<String, String> {
    let bad = || format!("subnet `{subnet}`: expected a /24 such as 10.77.0.0/24");
    let net: crate::config::Cidr = subnet.parse().map_err(|_| bad())?;
    if net.prefix_len() != 24 {
        return Err(bad());
    }
    let [a, b, c, _] = net.network().octets();
    Ok(format!("{a}.{b}.{c}"))
}

impl LabInput {
    fn prefix(&self) -> Result<String, String> {
        prefix_of(&self.subnet)
    }

    pub fn key_path(&self) -> PathBuf {
        self.dir.join("id_ed25519")
    }

    fn network(&self) -> String {
        format!("foundry-lab-{}", self.name)
    }

    fn container(&self, host: &str) -> String {
        format!("foundry-lab-{}-{host}", self.name)
    }

    /// Where `lab up` writes the K3s stand-ins for a lab of systemd hosts.
    pub fn standin_dir(&self) -> PathBuf {
        self.dir.join("k3s")
    }
}

fn lab_command(argv: Vec<String>) -> RunCommand {
    let mut cmd = RunCommand::new(argv);
    cmd.policy = RetryPolicy {
        max_attempts: 3,
        ..RetryPolicy::default()
    };
    cmd
}

fn parsed<T: std::str::FromStr>(text: &str) -> Result<T, RunError>
where
    T::Err: std::fmt::Display,
{
    text.parse()
        .map_err(|e| RunError::workflow(format!("`{text}`: {e}")))
}

/// The container name of a service (`openbao`, `dns`, `zot`) the lab's config places.
fn service_name(lab: &str, component: &str) -> String {
    format!("foundry-lab-{lab}-{component}")
}

/// The lab's address plan on its /24, by last octet, so that nothing is given twice: the
/// gateway .1; .2 up, what the Engine gives a container started on the lab's network
/// without an address of its own; the hosts from [`FIRST_HOST`] (.11 to .210, at most
/// [`MAX_HOSTS`]); the VIP [`VIP`] and the DHCP range [`DHCP_RANGE`] of the lab's config,
/// addresses no lab container has, so `network validate` passes on a fresh lab; the own
/// Engine's shim .239 and its services' range .240/28 (`lab/engine.rs`), which holds
/// [`SERVICE_ADDRESSES`].
pub const FIRST_HOST: u8 = 11;
pub const MAX_HOSTS: u32 = 200;
pub const VIP: u8 = 220;
pub const DHCP_RANGE: (u8, u8) = (221, 238);

/// Where the lab places the infrastructure services on its network: above every host, the
/// VIP and the DHCP range.
pub const SERVICE_ADDRESSES: [(&str, u8); 5] = [
    ("openbao", 240),
    ("dns", 241),
    ("dns-external", 242),
    ("dns-recursor", 243),
    ("zot", 244),
];

/// The lab's hosts as a stack config; with an engine host, the infrastructure services
/// are placed on it, on the lab's network, with a private zone for the lab's names and a
/// public one to show the split horizon.
fn lab_config(lab: &LabInput, hosts: &[LabHost]) -> Result<String, RunError> {
    use crate::config::{At, StackConfig, schema};
    let mut config = StackConfig {
        hosts: hosts
            .iter()
            .map(|h| crate::config::HostEntry {
                name: h.name.clone(),
                address: h.address.clone(),
                user: h.user.clone(),
                port: h.port,
                key: Some(lab.key_path().into()),
                host_key: Some(h.host_key.clone()),
            })
            .collect(),
        ..StackConfig::default()
    };
    if let Some(engine) = hosts.iter().find(|h| h.engine) {
        let prefix = lab.prefix().map_err(RunError::workflow)?;
        let at = |last: u8| -> Result<std::net::Ipv4Addr, RunError> {
            parsed(&format!("{prefix}.{last}"))
        };
        let address = |role: &str| -> Result<std::net::Ipv4Addr, RunError> {
            let last = SERVICE_ADDRESSES
                .iter()
                .find(|(r, _)| *r == role)
                .map(|(_, last)| *last)
                .ok_or_else(|| RunError::workflow(format!("no lab address for {role}")))?;
            at(last)
        };
        let on = vec![At::new(engine.name.clone())];
        config.network = Some(schema::Network {
            subnet: Some(At::new(parsed(&lab.subnet)?)),
            netmask: None,
            gateway: At::new(at(1)?),
            dhcp_range: Some(schema::DhcpRange {
                start: At::new(at(DHCP_RANGE.0)?),
                end: At::new(at(DHCP_RANGE.1)?),
            }),
            openbao_hosts: on.clone(),
            dns_hosts: on.clone(),
            zot_hosts: on,
            truenas_hosts: Vec::new(),
            k8s_vip: Some(At::new(at(VIP)?)),
        });
        let service = |role: &str, more: &[(&str, &str)]| -> Result<schema::Service, RunError> {
            let mut addresses = std::collections::BTreeMap::new();
            for (name, role) in more {
                addresses.insert(name.to_string(), At::new(address(role)?));
            }
            Ok(schema::Service {
                name: Some(service_name(&lab.name, role)),
                docker_network: Some(lab.network()),
                address: Some(At::new(address(role)?)),
                addresses,
                ..schema::Service::default()
            })
        };
        config.components = Some(schema::Components {
            openbao: service("openbao", &[])?,
            dns: service(
                "dns",
                &[("external", "dns-external"), ("recursor", "dns-recursor")],
            )?,
            // The lab's stand-in for Zot, by name: a config without one gets upstream Zot.
            zot: schema::Service {
                image: Some(crate::registry::REGISTRY_IMAGE.into()),
                ..service("zot", &[])?
            },
            ..schema::Components::default()
        });
        let record = |name: &str, value: String| schema::Record {
            name: name.into(),
            kind: schema::RecordType::A,
            value,
            ttl: None,
        };
        let mut names: Vec<schema::Record> = hosts
            .iter()
            .map(|h| record(&h.name, h.address.clone()))
            .collect();
        for role in ["openbao", "dns", "zot"] {
            names.push(record(role, address(role)?.to_string()));
        }
        config.dns = Some(schema::Dns {
            infrastructure_zones: vec![
                schema::Zone {
                    name: At::new(parsed(&format!("{}.lab.local", lab.name))?),
                    public: false,
                    public_cname: None,
                    records: names,
                },
                schema::Zone {
                    name: At::new(parsed(&format!("{}.lab.example.test", lab.name))?),
                    public: true,
                    public_cname: Some(parsed("home.example.test")?),
                    records: vec![record("registry", address("zot")?.to_string())],
                },
            ],
            ..schema::Dns::default()
        });
    }
    if lab.systemd {
        lab_cluster(lab, hosts, &mut config)?;
    }
    let comment = format!(
        "The hosts of lab `{}`, written by `foundry lab up`.",
        lab.name
    );
    crate::config::render(&config, &comment).map_err(RunError::workflow)
}

/// A lab of systemd hosts gets a cluster: on every host (the first a control-plane node,
/// the others workers), behind the lab's VIP, K3s from the lab's stand-ins.
fn lab_cluster(
    lab: &LabInput,
    hosts: &[LabHost],
    config: &mut crate::config::StackConfig,
) -> Result<(), RunError> {
    use crate::config::{At, schema};
    let prefix = lab.prefix().map_err(RunError::workflow)?;
    let (k3s, install) = standin::paths(&lab.standin_dir());
    config.cluster = Some(schema::Cluster {
        name: lab.name.clone(),
        domain: None,
        k8s_vip: Some(At::new(parsed(&format!("{prefix}.{VIP}"))?)),
        nodes: hosts
            .iter()
            .enumerate()
            .map(|(i, h)| schema::Node {
                hostname: At::new(h.name.clone()),
                role: if i == 0 {
                    schema::NodeRole::ControlPlane
                } else {
                    schema::NodeRole::Worker
                },
            })
            .collect(),
    });
    let components = config.components.get_or_insert_with(Default::default);
    components.k3s.binary = Some(At::new(k3s));
    components.k3s.installer = Some(At::new(install));
    Ok(())
}

pub struct LabUp;

impl Workflow for LabUp {
    const NAME: &'static str = "lab-up";
    const VERSION: u32 = 1;
    type Input = LabInput;
    type Output = LabOutput;

    fn check(&self, lab: &LabInput) -> Result<(), String> {
        check_name(&lab.name)?;
        if !(1..=MAX_HOSTS).contains(&lab.hosts) {
            return Err(format!("{} hosts: a lab has 1 to {MAX_HOSTS}", lab.hosts));
        }
        if let Some(engine) = &lab.engine_host {
            let known = engine
                .strip_prefix("host-")
                .and_then(|i| i.parse::<u32>().ok())
                .is_some_and(|i| (1..=lab.hosts).contains(&i));
            if !known {
                let hosts = match lab.hosts {
                    1 => "its one host is host-1".to_string(),
                    n => format!("its hosts are host-1 to host-{n}"),
                };
                return Err(format!(
                    "engine host `{engine}` is not in the lab: {hosts} (`none` for no engine host)"
                ));
            }
        }
        if lab.systemd && lab.own_engine {
            return Err(
                "a lab of systemd hosts gets this machine's Engine socket, not its own Engine: leave out one of them".into(),
            );
        }
        lab.prefix().map(|_| ())
    }

    async fn run(&self, ctx: Ctx, lab: LabInput) -> Result<LabOutput, RunError> {
        let prefix = lab.prefix().map_err(RunError::workflow)?;
        let endpoint = Endpoint::default();
        let s = |v: &str| v.to_string();

        let (script, image) = if lab.systemd {
            (BUILD_SYSTEMD_IMAGE, LAB_SYSTEMD_IMAGE)
        } else {
            (BUILD_IMAGE, LAB_IMAGE)
        };
        let mut build = lab_command(vec![
            s("sh"),
            s("-c"),
            [crate::image::BOOTSTRAP, script].concat(),
            s("foundry-lab-image"),
            s(image),
            lab.mirror.clone(),
            s(HOST_PREPARE),
        ]);
        build.probe = Some(vec![s("docker"), s("image"), s("inspect"), s(image)]);
        ctx.step("image", &build).await?;
        if lab.own_engine && lab.engine_host.is_some() {
            ctx.step("engine-image", &engine::build_step(LAB_IMAGE))
                .await?;
        }

        let key = lab.key_path();
        let mut make_key = lab_command(vec![
            s("sh"),
            s("-c"),
            s(MAKE_KEY),
            s("foundry-lab-key"),
            key.display().to_string(),
        ]);
        make_key.probe = Some(vec![s("test"), s("-f"), key.display().to_string()]);
        ctx.step("key", &make_key).await?;

        let mut labels = std::collections::HashMap::new();
        labels.insert(LAB_LABEL.to_string(), lab.name.clone());
        let network = EnsureNetwork {
            endpoint: endpoint.clone(),
            name: lab.network(),
            subnet: Some(lab.subnet.clone()),
            labels,
        };
        ctx.step("network", &network).await?;

        let hosts: Vec<(String, u32)> = (1..=lab.hosts).map(|i| (format!("host-{i}"), i)).collect();
        let lab2 = lab.clone();
        let found = ctx
            .fan_out_ok(hosts, 8, FailurePolicy::CollectAll, move |child, i| {
                let lab = lab2.clone();
                let prefix = prefix.clone();
                let endpoint = endpoint.clone();
                async move { up_host(&child, &lab, &endpoint, &prefix, i).await }
            })
            .await?;

        let config = EnsureFile {
            path: lab.config.clone(),
            content: SecretValue::new(lab_config(&lab, &found)?),
            mode: 0o600,
        };
        let undo = RemoveFile {
            path: lab.config.clone(),
        };
        ctx.step_with_undo("config", &config, undo).await?;
        let k3s_standin = if lab.systemd {
            let [k3s, install] = standin::write_steps(&lab.standin_dir());
            ctx.step("k3s-standin", &k3s).await?;
            ctx.step("install-sh-standin", &install).await?;
            for (name, step) in standin::release_steps(&lab.standin_dir()) {
                ctx.step(&name, &step).await?;
            }
            Some(lab.standin_dir())
        } else {
            None
        };
        Ok(LabOutput {
            name: lab.name.clone(),
            key,
            config: lab.config.clone(),
            hosts: found,
            k3s_standin,
        })
    }
}

/// One host: its container, then its host key once sshd has made it.
async fn up_host(
    ctx: &Ctx,
    lab: &LabInput,
    endpoint: &Endpoint,
    prefix: &str,
    i: u32,
) -> Result<LabHost, RunError> {
    let host = format!("host-{i}");
    let address = format!("{prefix}.{}", u32::from(FIRST_HOST) - 1 + i);
    let engine = lab.engine_host.as_deref() == Some(host.as_str());
    let own_engine = engine && lab.own_engine;
    // The Engine creates it for the bind; the host's init writes its host key there.
    let out_dir = lab.dir.join("hosts").join(&host);
    let mut spec = ContainerSpec {
        name: lab.container(&host),
        image: if lab.systemd {
            LAB_SYSTEMD_IMAGE
        } else {
            LAB_IMAGE
        }
        .into(),
        hostname: Some(host.clone()),
        network: Some(lab.network()),
        ipv4: Some(address.clone()),
        labels: [
            (LAB_LABEL.to_string(), lab.name.clone()),
            (HOST_LABEL.to_string(), host.clone()),
            (ADDRESS_LABEL.to_string(), address.clone()),
        ]
        .into_iter()
        .collect(),
        binds: vec![
            format!(
                "{}.pub:/etc/foundry/authorized_keys:ro",
                lab.key_path().display()
            ),
            format!("{}:/etc/foundry/out", out_dir.display()),
        ],
        ..ContainerSpec::default()
    };
    if lab.systemd {
        systemd_host(&mut spec);
    }
    let socket = match endpoint {
        Endpoint::Local { socket } => socket.display().to_string(),
        Endpoint::Ssh { socket, .. } => socket.clone(),
    };
    if own_engine {
        spec.labels.insert(ENGINE_LABEL.into(), "1".into());
        engine::own_engine(&mut spec, &lab.subnet);
    } else if engine {
        spec.labels.insert(ENGINE_LABEL.into(), "1".into());
        spec.binds.push(format!("{socket}:{ENGINE_SOCKET}"));
    }
    ctx.step(
        "container",
        &EnsureContainer {
            endpoint: endpoint.clone(),
            spec,
        },
    )
    .await?;
    if engine {
        let container = lab.container(&host);
        let exec = |script: &str| {
            [
                "docker",
                "exec",
                &container,
                "sh",
                "-c",
                script,
                "foundry-engine-group",
                ENGINE_SOCKET,
                LAB_USER,
            ]
            .map(String::from)
            .to_vec()
        };
        let mut group = lab_command(exec(ENGINE_GROUP));
        group.probe = Some(exec(ENGINE_GROUP_PROBE));
        ctx.step("engine-group", &group).await?;
        if own_engine {
            let network = engine::network_step(&container, &lab.network(), &lab.subnet, prefix);
            ctx.step("engine-network", &network).await?;
        }
    }
    let host_key = ctx
        .step(
            "host-key",
            &ReadFileWhenReady {
                path: out_dir.join("host_ed25519.pub"),
                timeout: Duration::from_secs(60),
            },
        )
        .await?;
    Ok(LabHost {
        name: host,
        address,
        user: LAB_USER.into(),
        port: 22,
        engine,
        own_engine,
        host_key: host_key
            .split_whitespace()
            .take(2)
            .collect::<Vec<_>>()
            .join(" "),
    })
}

/// What a container needs to run systemd as PID 1 where privileged containers are
/// refused: the cgroup tree read-only, /run and /run/lock on tmpfs, SYS_ADMIN and no
/// seccomp filter; and NET_ADMIN, so that a VIP can move between hosts.
fn systemd_host(spec: &mut ContainerSpec) {
    spec.binds
        .push("/sys/fs/cgroup:/sys/fs/cgroup:ro".to_string());
    for dir in ["/run", "/run/lock"] {
        spec.tmpfs.insert(dir.to_string(), String::new());
    }
    spec.cap_add = vec!["SYS_ADMIN".into(), "NET_ADMIN".into()];
    spec.security_opt = vec!["seccomp=unconfined".into()];
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LabDownInput {
    pub name: String,
    pub dir: PathBuf,
    pub config: PathBuf,
    /// The data volumes of the components the lab's config placed on it.
    #[serde(default)]
    pub volumes: Vec<String>,
}

pub struct LabDown;

impl Workflow for LabDown {
    const NAME: &'static str = "lab-down";
    const VERSION: u32 = 1;
    type Input = LabDownInput;
    type Output = foundry_activities::container::Removed;

    async fn run(&self, ctx: Ctx, input: LabDownInput) -> Result<Self::Output, RunError> {
        let removed = ctx
            .step(
                "remove",
                &RemoveLabelled {
                    endpoint: Endpoint::default(),
                    key: LAB_LABEL.into(),
                    value: input.name.clone(),
                },
            )
            .await?;
        if !input.volumes.is_empty() {
            let mut volumes = vec!["docker".into(), "volume".into(), "rm".into(), "-f".into()];
            volumes.extend(input.volumes.iter().cloned());
            ctx.step("volumes", &RunCommand::new(volumes)).await?;
        }
        let dir = input.dir.display().to_string();
        let config = input.config.display().to_string();
        let rm = RunCommand::new(vec!["rm".into(), "-rf".into(), dir, config]);
        ctx.step("files", &rm).await?;
        Ok(removed)
    }
}

/// The hosts of every lab (or of `name`), as the Docker Engine shows them now.
pub async fn list(
    name: Option<&str>,
) -> Result<Vec<foundry_activities::container::Labelled>, foundry_core::ActivityError> {
    foundry_activities::container::list_labelled(&Endpoint::default(), LAB_LABEL, name).await
}

/// A lab host as the Engine lists it, by the host's name (`host-1`).
async fn find_host(
    lab: &str,
    host: &str,
) -> Result<foundry_activities::container::Labelled, foundry_core::ActivityError> {
    list(Some(lab))
        .await?
        .into_iter()
        .find(|h| h.labels.get(HOST_LABEL).map(String::as_str) == Some(host))
        .ok_or_else(|| {
            foundry_core::ActivityError::permanent(format!(
                "lab `{lab}` has no host `{host}` (`foundry lab list` shows them)"
            ))
        })
}

/// Why no subnet could be given to a lab, and what to do.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct SubnetError {
    pub message: String,
    pub hint: Option<String>,
}

impl SubnetError {
    fn new(message: String, hint: Option<String>) -> Self {
        SubnetError { message, hint }
    }
}

/// The /24 the lab `name` gets, asked of the Engine on this machine: the one its network
/// already has (a lab grown by a second `lab up`); else `requested`, unless another network
/// overlaps it; else the first `10.77.N.0/24` no network uses.
pub async fn choose_subnet(name: &str, requested: Option<&str>) -> Result<String, SubnetError> {
    // A name or a subnet that cannot be a lab's is said so before any network is looked at.
    check_name(name).map_err(|e| SubnetError::new(e, None))?;
    if let Some(asked) = requested {
        prefix_of(asked).map_err(|e| SubnetError::new(e, None))?;
    }
    let networks = foundry_activities::container::subnets(&Endpoint::default())
        .await
        .map_err(|e| SubnetError::new(e.message, None))?;
    let own = format!("foundry-lab-{name}");
    if let Some((_, subnet)) = networks.iter().find(|(n, _)| *n == own) {
        return match requested {
            Some(asked) if asked != subnet => Err(SubnetError::new(
                format!("lab `{name}` is on {subnet}, not {asked}"),
                Some(format!(
                    "leave out --subnet to grow it, or `foundry lab down --name {name}` first"
                )),
            )),
            _ => Ok(subnet.clone()),
        };
    }
    let others: Vec<(String, String)> = networks.into_iter().filter(|(n, _)| *n != own).collect();
    let taken = |subnet: &str| foundry_activities::container::overlapping(&others, subnet);
    if let Some(asked) = requested {
        return match taken(asked) {
            Some((network, theirs)) => Err(SubnetError::new(
                format!("subnet {asked} overlaps Docker network `{network}` ({theirs})"),
                Some("leave out --subnet to take a free one, or choose another".into()),
            )),
            None => Ok(asked.to_string()),
        };
    }
    (0..=255u16)
        .map(|n| format!("10.77.{n}.0/24"))
        .find(|subnet| taken(subnet).is_none())
        .ok_or_else(|| {
            SubnetError::new(
                "every 10.77.N.0/24 overlaps a Docker network".into(),
                Some("name a free /24 with --subnet".into()),
            )
        })
}

/// Cuts a lab host off its network, as a pulled cable would; `restore` puts it back.
pub async fn cut(lab: &str, host: &str) -> Result<(), foundry_core::ActivityError> {
    let found = find_host(lab, host).await?;
    let network = format!("foundry-lab-{lab}");
    foundry_activities::container::disconnect(&Endpoint::default(), &network, &found.name).await
}

/// Puts a cut lab host back on its network, at its address.
pub async fn restore(lab: &str, host: &str) -> Result<(), foundry_core::ActivityError> {
    let found = find_host(lab, host).await?;
    let network = format!("foundry-lab-{lab}");
    let address = found.labels.get(ADDRESS_LABEL).ok_or_else(|| {
        foundry_core::ActivityError::permanent(format!(
            "{} has no {ADDRESS_LABEL} label",
            found.name
        ))
    })?;
    foundry_activities::container::connect(&Endpoint::default(), &network, &found.name, address)
        .await
}

#[cfg(test)]
mod prefix_tests {
    use super::*;

    #[test]
    fn the_lab_network_is_a_slash_24() {
        let lab = |subnet: &str| LabInput {
            name: "t".into(),
            hosts: 1,
            subnet: subnet.into(),
            dir: "/tmp/t".into(),
            config: "/tmp/t.yaml".into(),
            mirror: String::new(),
            engine_host: None,
            own_engine: false,
            systemd: false,
        };
        assert_eq!(lab("10.77.3.0/24").prefix().as_deref(), Ok("10.77.3"));
        for bad in [
            "10.77.3.0/25",
            "10.77.3.1/24",
            "10.77.3.0",
            "10.77.0/24",
            "x",
        ] {
            assert!(lab(bad).prefix().is_err(), "{bad}");
        }
    }

    #[test]
    fn no_address_of_the_lab_is_given_twice() {
        let mut given: std::collections::BTreeMap<u32, String> = Default::default();
        let mut give = |last: u32, what: String| {
            if let Some(before) = given.insert(last, what.clone()) {
                panic!(".{last} is both {before} and {what}");
            }
        };
        give(1, "the gateway".into());
        // The Engine's own picks, for containers without an address: the lowest free.
        for last in 2..u32::from(FIRST_HOST) {
            give(last, "the Engine's".into());
        }
        for i in 1..=MAX_HOSTS {
            give(u32::from(FIRST_HOST) - 1 + i, format!("host-{i}"));
        }
        give(u32::from(VIP), "the VIP".into());
        for last in DHCP_RANGE.0..=DHCP_RANGE.1 {
            give(u32::from(last), "the DHCP range".into());
        }
        give(u32::from(engine::SHIM), "the own Engine's shim".into());
        let (start, len) = (u32::from(engine::SERVICES.0), u32::from(engine::SERVICES.1));
        for last in start..start + (1 << (32 - len)) {
            give(last, "the own Engine's services".into());
        }
        assert!(given.keys().all(|last| *last <= 255), "{given:?}");
        for (role, last) in SERVICE_ADDRESSES {
            assert!(
                (start..=255).contains(&u32::from(last)),
                "{role} .{last} outside the services' range"
            );
        }
    }
}
