//! A container as specified: created when missing, recreated when its spec changed (a
//! label holds the spec's hash), started when stopped.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use bollard::Docker;
use bollard::models::{
    ContainerCreateBody, EndpointIpamConfig, EndpointSettings, HostConfig, NetworkingConfig,
    PortBinding, PortMap,
};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, RemoveContainerOptionsBuilder, UploadToContainerOptionsBuilder,
};
use foundry_core::{Activity, ActivityCx, ActivityError, InDoubt, SecretRef};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{Endpoint, not_found, status_of};

/// How often, and for how long, a container named in a 409 is looked for: the Engine
/// reserves the name before the container can be inspected, and on a busy machine that
/// gap has been seen to last over a second.
const CONFLICT_POLL: foundry_core::PollPolicy = foundry_core::PollPolicy::new(50, 10_000);

/// The label that records which spec a container was created from.
pub const SPEC_HASH_LABEL: &str = "foundry.spec-hash";

/// Labels `foundry.secret-ref.<VAR>` name the reference each secret environment variable
/// was created from, so that a later run can reuse the secret the container already has.
pub const SECRET_REF_LABEL_PREFIX: &str = "foundry.secret-ref.";

/// Everything that makes a container what it is. Maps are ordered, so the hash of a spec
/// does not depend on how it was built.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerSpec {
    pub name: String,
    pub image: String,
    pub cmd: Option<Vec<String>>,
    pub entrypoint: Option<Vec<String>>,
    pub env: BTreeMap<String, String>,
    pub labels: BTreeMap<String, String>,
    pub hostname: Option<String>,
    /// The network to join, and the address on it.
    pub network: Option<String>,
    pub ipv4: Option<String>,
    pub privileged: bool,
    /// `host-path:container-path[:ro]`.
    pub binds: Vec<String>,
    pub tmpfs: BTreeMap<String, String>,
    /// Environment variables whose values are secrets: the spec (journaled, hashed) holds
    /// only their references, revealed from the run's secret store when the container is
    /// created. Rotating a value means a new reference, which recreates the container.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub secret_env: BTreeMap<String, SecretRef>,
    /// Published ports: a container port (`5000/tcp`; `5000` is TCP) to the host address
    /// and port it is published on (`127.0.0.1:5005`, or `5005` on every address). Left
    /// out of the serialized spec when empty, so the hash of a spec without ports is what
    /// it was before specs had them.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub ports: BTreeMap<String, String>,
    /// Files put into the container (by its path) through the Engine's archive API before
    /// it starts: never through its environment or an argv, and the same way for a local
    /// Engine and a host's Engine through SSH. The spec holds each file's source on this
    /// machine and the SHA-256 of its content, so a new content recreates the container.
    /// Left out of the serialized spec when empty, as `ports` is.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub files: BTreeMap<String, ContainerFile>,
    /// Capabilities added and dropped (`ALL`, `SYS_ADMIN`), and security options
    /// (`seccomp=unconfined`): what a container that runs containers needs where
    /// `privileged` cannot be had. Left out of the serialized spec when empty, as `ports`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cap_add: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cap_drop: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub security_opt: Vec<String>,
}

/// A file of this machine to put into a container.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContainerFile {
    pub source: PathBuf,
    /// SHA-256 of the content, hex: what the container was specified with.
    pub sha256: String,
    pub mode: u32,
    #[serde(default)]
    pub uid: u64,
    #[serde(default)]
    pub gid: u64,
}

impl ContainerFile {
    /// `source` as it is now, with the digest of its content.
    pub fn of(source: &Path, mode: u32) -> Result<ContainerFile, ActivityError> {
        let content = std::fs::read(source)
            .map_err(|e| ActivityError::permanent(format!("reading {}: {e}", source.display())))?;
        Ok(ContainerFile {
            source: source.to_path_buf(),
            sha256: hex::encode(Sha256::digest(&content)),
            mode,
            uid: 0,
            gid: 0,
        })
    }
}

impl ContainerSpec {
    /// A short hash of the whole spec.
    pub fn hash(&self) -> String {
        let bytes = serde_json::to_vec(self).unwrap_or_default();
        hex::encode(&Sha256::digest(&bytes)[..12])
    }

    /// The exposed ports and their host bindings, as the Engine takes them; none when the
    /// spec publishes nothing.
    fn published(&self) -> Result<Published, ActivityError> {
        if self.ports.is_empty() {
            return Ok((None, None));
        }
        let mut exposed = Vec::new();
        let mut bindings = PortMap::new();
        for (port, host) in &self.ports {
            let port = container_port(port).map_err(|e| self.port_error(port, host, &e))?;
            let binding = host_binding(host).map_err(|e| self.port_error(&port, host, &e))?;
            if bindings.contains_key(&port) {
                return Err(self.port_error(&port, host, "the port is given twice"));
            }
            exposed.push(port.clone());
            bindings.insert(port, Some(vec![binding]));
        }
        Ok((Some(exposed), Some(bindings)))
    }

    fn port_error(&self, port: &str, host: &str, e: &str) -> ActivityError {
        ActivityError::permanent(format!(
            "container {}: publishing port {port} on {host}: {e}",
            self.name
        ))
    }

    fn create_body(&self, cx: &ActivityCx) -> Result<ContainerCreateBody, ActivityError> {
        let mut env: Vec<String> = self.env.iter().map(|(k, v)| format!("{k}={v}")).collect();
        for (name, reference) in &self.secret_env {
            let value = cx.reveal(reference).map_err(|e| {
                ActivityError::permanent(format!(
                    "container {}: environment variable {name}: {}",
                    self.name, e.message
                ))
            })?;
            env.push(format!("{name}={}", value.expose()));
        }
        let mut labels: HashMap<String, String> = self.labels.clone().into_iter().collect();
        labels.insert(SPEC_HASH_LABEL.into(), self.hash());
        for (name, reference) in &self.secret_env {
            labels.insert(
                format!("{SECRET_REF_LABEL_PREFIX}{name}"),
                reference.0.clone(),
            );
        }
        let networking_config = self.network.as_ref().map(|network| NetworkingConfig {
            endpoints_config: Some(HashMap::from([(
                network.clone(),
                EndpointSettings {
                    ipam_config: self.ipv4.as_ref().map(|ip| EndpointIpamConfig {
                        ipv4_address: Some(ip.clone()),
                        ..EndpointIpamConfig::default()
                    }),
                    ..EndpointSettings::default()
                },
            )])),
        });
        let (exposed_ports, port_bindings) = self.published()?;
        Ok(ContainerCreateBody {
            image: Some(self.image.clone()),
            cmd: self.cmd.clone(),
            entrypoint: self.entrypoint.clone(),
            env: Some(env),
            labels: Some(labels),
            hostname: self.hostname.clone(),
            exposed_ports,
            host_config: Some(HostConfig {
                network_mode: self.network.clone(),
                privileged: Some(self.privileged),
                cap_add: (!self.cap_add.is_empty()).then(|| self.cap_add.clone()),
                cap_drop: (!self.cap_drop.is_empty()).then(|| self.cap_drop.clone()),
                security_opt: (!self.security_opt.is_empty()).then(|| self.security_opt.clone()),
                binds: (!self.binds.is_empty()).then(|| self.binds.clone()),
                tmpfs: (!self.tmpfs.is_empty()).then(|| self.tmpfs.clone().into_iter().collect()),
                port_bindings,
                ..HostConfig::default()
            }),
            networking_config,
            ..ContainerCreateBody::default()
        })
    }
}

impl ContainerSpec {
    /// The spec's files as one tar archive, each read now and checked against its digest.
    fn files_archive(&self) -> Result<Vec<u8>, ActivityError> {
        let mut tar = tar::Builder::new(Vec::new());
        for (path, file) in &self.files {
            let what = |e: String| {
                ActivityError::permanent(format!(
                    "container {}: file {path} from {}: {e}",
                    self.name,
                    file.source.display()
                ))
            };
            let content = std::fs::read(&file.source).map_err(|e| what(e.to_string()))?;
            if hex::encode(Sha256::digest(&content)) != file.sha256 {
                return Err(what(
                    "its content changed since the step was planned; run it again".into(),
                ));
            }
            let mut header = tar::Header::new_gnu();
            header.set_size(content.len() as u64);
            header.set_mode(file.mode);
            header.set_uid(file.uid);
            header.set_gid(file.gid);
            header.set_entry_type(tar::EntryType::Regular);
            tar.append_data(
                &mut header,
                path.trim_start_matches('/'),
                content.as_slice(),
            )
            .map_err(|e| what(e.to_string()))?;
        }
        tar.into_inner().map_err(|e| {
            ActivityError::permanent(format!("container {}: its files: {e}", self.name))
        })
    }
}

/// A spec's published ports as the Engine takes them: the exposed ports, and their host
/// bindings.
type Published = (Option<Vec<String>>, Option<PortMap>);

/// A container port as the Engine names it: `5000/tcp`, `53/udp`; a bare number is TCP.
fn container_port(port: &str) -> Result<String, String> {
    let (number, proto) = port.split_once('/').unwrap_or((port, "tcp"));
    if !number.parse::<u16>().is_ok_and(|n| n != 0) {
        return Err(format!("`{number}` is not a port number"));
    }
    if !matches!(proto, "tcp" | "udp" | "sctp") {
        return Err(format!("`{proto}`: expected tcp, udp or sctp"));
    }
    Ok(format!("{number}/{proto}"))
}

/// A host binding: `127.0.0.1:5005`, `[::1]:5005`, or `5005` (every address).
fn host_binding(host: &str) -> Result<PortBinding, String> {
    let (ip, port) = match host.rsplit_once(':') {
        Some((ip, port)) => {
            let ip = ip.trim_start_matches('[').trim_end_matches(']');
            ip.parse::<std::net::IpAddr>()
                .map_err(|_| format!("`{ip}` is not an IP address"))?;
            (Some(ip.to_string()), port)
        }
        None => (None, host),
    };
    port.parse::<u16>()
        .map_err(|_| format!("`{port}` is not a port number"))?;
    Ok(PortBinding {
        host_ip: ip,
        host_port: Some(port.to_string()),
    })
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnsureContainer {
    pub endpoint: Endpoint,
    pub spec: ContainerSpec,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerOutput {
    pub id: String,
    /// This step created it (it did not exist).
    pub created: bool,
    /// This step replaced it (its spec had changed).
    pub recreated: bool,
    /// Another caller created it at the same moment (the Engine answered 409), with this
    /// spec, and this step took that container.
    #[serde(default)]
    pub concurrent: bool,
}

/// What the Engine says of a container: its id, spec hash and whether it runs.
struct Found {
    id: String,
    hash: Option<String>,
    running: bool,
}

impl EnsureContainer {
    async fn inspect(&self, docker: &Docker) -> Result<Option<Found>, ActivityError> {
        match docker.inspect_container(&self.spec.name, None).await {
            Ok(c) => Ok(Some(Found {
                id: c.id.unwrap_or_default(),
                hash: c
                    .config
                    .and_then(|cfg| cfg.labels)
                    .and_then(|labels| labels.get(SPEC_HASH_LABEL).cloned()),
                running: c.state.and_then(|s| s.running).unwrap_or(false),
            })),
            Err(e) if not_found(&e) => Ok(None),
            Err(e) => Err(self.error(&format!("inspecting container {}", self.spec.name), &e)),
        }
    }

    fn error(&self, doing: &str, e: &bollard::errors::Error) -> ActivityError {
        self.endpoint.error(doing, e)
    }

    /// Creates the container, and says whether this call did; on 409 (another process
    /// created it meanwhile) takes it if it has this spec.
    async fn create(
        &self,
        docker: &Docker,
        cx: &ActivityCx,
    ) -> Result<(String, Created), ActivityError> {
        let options = CreateContainerOptionsBuilder::new()
            .name(&self.spec.name)
            .build();
        let body = self.spec.create_body(cx)?;
        match docker.create_container(Some(options), body).await {
            Ok(created) => Ok((created.id, Created::Here)),
            Err(e) if status_of(&e) == Some(409) => {
                Ok((self.take_concurrent(docker).await?, Created::Elsewhere))
            }
            Err(e) => Err(self.error(&format!("creating container {}", self.spec.name), &e)),
        }
    }

    /// After a 409: the other creator's container, once the Engine shows it (its create
    /// may still be under way), if it has this spec.
    async fn take_concurrent(&self, docker: &Docker) -> Result<String, ActivityError> {
        let hash = self.spec.hash();
        let mut poll = CONFLICT_POLL.start();
        while poll.tick().await {
            match self.inspect(docker).await? {
                Some(found) if found.hash.as_deref() == Some(hash.as_str()) => {
                    return Ok(found.id);
                }
                Some(_) => {
                    return Err(ActivityError::transient(format!(
                        "container {} was created meanwhile with another spec",
                        self.spec.name
                    )));
                }
                None => {}
            }
        }
        Err(ActivityError::transient(format!(
            "container {}: the Engine says the name is taken, but no such container appeared within {:?}",
            self.spec.name,
            CONFLICT_POLL.deadline()
        )))
    }

    async fn remove(&self, docker: &Docker) -> Result<(), ActivityError> {
        remove(docker, &self.endpoint, &self.spec.name).await
    }
}

/// Who made the container a create asked for.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Created {
    Here,
    /// Another caller, at the same moment (409).
    Elsewhere,
}

pub(super) async fn remove(
    docker: &Docker,
    endpoint: &Endpoint,
    name: &str,
) -> Result<(), ActivityError> {
    let options = RemoveContainerOptionsBuilder::new()
        .force(true)
        .v(true)
        .build();
    match docker.remove_container(name, Some(options)).await {
        Ok(()) => Ok(()),
        Err(e) if not_found(&e) => Ok(()),
        Err(e) => Err(endpoint.error(&format!("removing container {name}"), &e)),
    }
}

impl Activity for EnsureContainer {
    type Output = ContainerOutput;

    fn kind(&self) -> &'static str {
        "container"
    }

    fn in_doubt(&self) -> InDoubt {
        InDoubt::Probe
    }

    async fn probe(&self, _cx: &ActivityCx) -> Result<Option<ContainerOutput>, ActivityError> {
        let docker = self.endpoint.connect().await?;
        let hash = self.spec.hash();
        Ok(self.inspect(&docker).await?.and_then(|found| {
            (found.running && found.hash.as_deref() == Some(hash.as_str())).then_some(
                ContainerOutput {
                    id: found.id,
                    created: false,
                    recreated: false,
                    concurrent: false,
                },
            )
        }))
    }

    async fn apply(&self, cx: &ActivityCx) -> Result<ContainerOutput, ActivityError> {
        let docker = self.endpoint.connect().await?;
        let hash = self.spec.hash();
        let (id, created, recreated) = match self.inspect(&docker).await? {
            // Running as specified: its files went in before it started (every start here
            // puts them first), so there is nothing to put and nothing to start.
            Some(found) if found.hash.as_deref() == Some(hash.as_str()) && found.running => {
                return Ok(ContainerOutput {
                    id: found.id,
                    created: false,
                    recreated: false,
                    concurrent: false,
                });
            }
            Some(found) if found.hash.as_deref() == Some(hash.as_str()) => (found.id, None, false),
            Some(_) => {
                self.remove(&docker).await?;
                // A crash between the old container's removal and the new one's creation
                // (the crash tests' point `<name>/removed@effect`).
                foundry_core::failpoint::hit(
                    &format!("{}/removed", self.spec.name),
                    foundry_core::failpoint::Phase::Effect,
                );
                let (id, created) = self.create(&docker, cx).await?;
                (id, Some(created), true)
            }
            None => {
                let (id, created) = self.create(&docker, cx).await?;
                (id, Some(created), false)
            }
        };
        // Before every start, not only after a create: a create cut short before its files
        // were put leaves a container that never starts without them.
        if !self.spec.files.is_empty() {
            let options = UploadToContainerOptionsBuilder::new().path("/").build();
            docker
                .upload_to_container(
                    &self.spec.name,
                    Some(options),
                    bollard::body_full(self.spec.files_archive()?.into()),
                )
                .await
                .map_err(|e| {
                    self.error(
                        &format!("putting files into container {}", self.spec.name),
                        &e,
                    )
                })?;
        }
        // Starting a running container answers 304, which is success.
        docker
            .start_container(&self.spec.name, None)
            .await
            .map_err(|e| self.error(&format!("starting container {}", self.spec.name), &e))?;
        Ok(ContainerOutput {
            id,
            created: created == Some(Created::Here) && !recreated,
            recreated,
            concurrent: created == Some(Created::Elsewhere),
        })
    }
}

/// The reference a container's secret environment variable `var` was created from, if the
/// container exists and has one.
pub async fn secret_ref_of(
    endpoint: &Endpoint,
    container: &str,
    var: &str,
) -> Result<Option<SecretRef>, ActivityError> {
    let docker = endpoint.connect().await?;
    match docker.inspect_container(container, None).await {
        Ok(c) => Ok(c
            .config
            .and_then(|cfg| cfg.labels)
            .and_then(|labels| {
                labels
                    .get(&format!("{SECRET_REF_LABEL_PREFIX}{var}"))
                    .cloned()
            })
            .map(SecretRef)),
        Err(e) if not_found(&e) => Ok(None),
        Err(e) => Err(endpoint.error(&format!("inspecting container {container}"), &e)),
    }
}

/// The image reference the container `name` was created from (`Config.Image`, as given to
/// the Engine: `ghcr.io/project-zot/zot:v2.1.20`), if the container exists.
pub async fn container_image(
    endpoint: &Endpoint,
    name: &str,
) -> Result<Option<String>, ActivityError> {
    let docker = endpoint.connect().await?;
    match docker.inspect_container(name, None).await {
        Ok(c) => Ok(c.config.and_then(|cfg| cfg.image)),
        Err(e) if not_found(&e) => Ok(None),
        Err(e) => Err(endpoint.error(&format!("inspecting container {name}"), &e)),
    }
}

/// Removes a container (stopping it first); absent already is fine.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemoveContainer {
    pub endpoint: Endpoint,
    pub name: String,
}

impl Activity for RemoveContainer {
    type Output = bool;

    fn kind(&self) -> &'static str {
        "remove-container"
    }

    fn in_doubt(&self) -> InDoubt {
        InDoubt::Probe
    }

    async fn probe(&self, _cx: &ActivityCx) -> Result<Option<bool>, ActivityError> {
        let docker = self.endpoint.connect().await?;
        match docker.inspect_container(&self.name, None).await {
            Ok(_) => Ok(None),
            Err(e) if not_found(&e) => Ok(Some(false)),
            Err(e) => Err(self
                .endpoint
                .error(&format!("inspecting container {}", self.name), &e)),
        }
    }

    async fn apply(&self, cx: &ActivityCx) -> Result<bool, ActivityError> {
        if self.probe(cx).await?.is_some() {
            return Ok(false);
        }
        let docker = self.endpoint.connect().await?;
        remove(&docker, &self.endpoint, &self.name).await?;
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A spec with every field that existed before published ports.
    fn full() -> ContainerSpec {
        ContainerSpec {
            name: "foundry-openbao".into(),
            image: "foundry-lab-openbao:1".into(),
            cmd: Some(vec![
                "server".into(),
                "-config=/etc/openbao/config.hcl".into(),
            ]),
            entrypoint: Some(vec!["/usr/local/bin/bao".into()]),
            env: BTreeMap::from([("BAO_API_ADDR".into(), "http://10.77.3.20:8200".into())]),
            labels: BTreeMap::from([("foundry.openbao".into(), "foundry-openbao".into())]),
            hostname: Some("foundry-openbao".into()),
            network: Some("foundry-lab".into()),
            ipv4: Some("10.77.3.20".into()),
            privileged: true,
            binds: vec!["foundry-openbao:/openbao/data".into()],
            tmpfs: BTreeMap::from([("/run".into(), "rw".into())]),
            secret_env: BTreeMap::new(),
            ports: BTreeMap::new(),
            files: BTreeMap::new(),
            cap_add: Vec::new(),
            cap_drop: Vec::new(),
            security_opt: Vec::new(),
        }
    }

    /// A container made by an earlier Foundry keeps its spec hash, so no upgrade recreates
    /// it: these hashes were computed before the spec had published ports.
    #[test]
    fn the_hash_of_a_spec_without_new_fields_is_unchanged() {
        assert_eq!(ContainerSpec::default().hash(), "769951f1ee8e7fac017b8a07");
        assert_eq!(full().hash(), "17174b4d1fda0d414610024c");
        let mut secret = full();
        secret
            .secret_env
            .insert("PDNS_API_KEY".into(), SecretRef("local:dns/api-key".into()));
        assert_eq!(secret.hash(), "0cb1fc16174d53bf5aa230f3");
    }

    #[test]
    fn capabilities_and_security_options_are_in_the_hash_only_when_given() {
        let mut confined = full();
        confined.cap_add = vec!["ALL".into()];
        assert_ne!(confined.hash(), full().hash());
        let json = serde_json::to_value(full()).expect("json");
        for field in ["cap_add", "cap_drop", "security_opt"] {
            assert!(json.get(field).is_none(), "{field}");
        }
    }

    #[test]
    fn ports_change_the_hash_and_become_exposed_ports_and_bindings() {
        let mut spec = full();
        spec.ports
            .insert("5000/tcp".into(), "127.0.0.1:5005".into());
        spec.ports.insert("53/udp".into(), "5353".into());
        assert_ne!(spec.hash(), full().hash());
        let (exposed, bindings) = spec.published().expect("valid ports");
        assert_eq!(
            exposed,
            Some(vec!["5000/tcp".to_string(), "53/udp".to_string()])
        );
        let bindings = bindings.expect("bindings");
        assert_eq!(
            bindings["5000/tcp"],
            Some(vec![PortBinding {
                host_ip: Some("127.0.0.1".into()),
                host_port: Some("5005".into()),
            }])
        );
        assert_eq!(
            bindings["53/udp"],
            Some(vec![PortBinding {
                host_ip: None,
                host_port: Some("5353".into()),
            }])
        );
        assert_eq!(full().published().expect("no ports"), (None, None));
    }

    #[test]
    fn a_bad_port_is_refused_naming_the_container_and_the_port() {
        for (port, host, says) in [
            ("http", "127.0.0.1:5005", "`http` is not a port number"),
            ("5000/ip", "127.0.0.1:5005", "expected tcp, udp or sctp"),
            ("5000", "localhost:5005", "`localhost` is not an IP address"),
            ("5000", "127.0.0.1:99999", "`99999` is not a port number"),
        ] {
            let mut spec = full();
            spec.ports.insert(port.into(), host.into());
            let e = spec.published().expect_err("a bad port");
            assert!(!e.transient, "{}", e.message);
            assert!(
                e.message
                    .starts_with("container foundry-openbao: publishing port")
                    && e.message.contains(says),
                "{}",
                e.message
            );
        }
        let mut twice = full();
        twice.ports.insert("5000".into(), "5005".into());
        twice.ports.insert("5000/tcp".into(), "5006".into());
        let e = twice.published().expect_err("a port given twice");
        assert!(e.message.contains("given twice"), "{}", e.message);
        assert_eq!(
            container_port("[::1]:5005").map_err(|e| e.contains("port number")),
            Err(true)
        );
        assert_eq!(
            host_binding("[::1]:5005").expect("IPv6").host_ip.as_deref(),
            Some("::1")
        );
    }
}
