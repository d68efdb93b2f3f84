//! The one per-node install, used by `cluster init`, `cluster node add` and upgrades: the
//! binary and K3s's install.sh uploaded (probed by hash: nothing sent again when the host
//! has them), or, with K3s from the stack's registry, fetched there by the node itself
//! (verified by digest) with `registries.yaml` pointing its images at that registry; the
//! token in a 0600 file of its own, the flags in
//! `/etc/rancher/k3s/config.yaml` (arguments given to install.sh are lost when it is run
//! again), kube-vip's manifest on a server, then install.sh run as a detached command: K3s's
//! unit blocks the installer until the node is ready, for ever on a stalled join, so the
//! command survives a dropped connection and a killed `foundry`, and a resumed step
//! reattaches to it. A node whose unit runs and whose files were all there already is left
//! alone: its unit is not restarted (restarting servers together loses etcd's quorum).

use std::path::PathBuf;

use foundry_activities::local::FileOutput;
use foundry_activities::registry::{ArtifactFiles, ResolveArtifact, SshFetchBlob};
use foundry_activities::ssh::{SshDetached, SshPool, SshSendFile, SshTarget, SshUpload};
use foundry_core::{
    Activity, ActivityCx, ActivityError, Ctx, InDoubt, RetryPolicy, RunError, SecretRef,
    SecretValue,
};
use serde::{Deserialize, Serialize};

/// Where the binary goes, as K3s's installer expects it for an air-gapped install.
pub const BINARY_PATH: &str = "/usr/local/bin/k3s";
/// Where Foundry keeps K3s's install.sh on a node.
pub const INSTALLER_PATH: &str = "/usr/local/lib/foundry/k3s-install.sh";
/// K3s's config file: the flags live here, so a re-run of the installer keeps them.
pub const CONFIG_PATH: &str = "/etc/rancher/k3s/config.yaml";
/// The token, 0600, named by `token-file` in the config: the value is in no argv, no
/// environment and no unit.
pub const TOKEN_PATH: &str = "/etc/rancher/k3s/foundry-token";
/// Where K3s's containerd reads its registry mirrors.
pub const REGISTRIES_PATH: &str = "/etc/rancher/k3s/registries.yaml";
/// The admin kubeconfig K3s writes on a server.
pub const KUBECONFIG_PATH: &str = "/etc/rancher/k3s/k3s.yaml";
/// The token file K3s keeps on a server once it has a cluster.
pub const SERVER_TOKEN_PATH: &str = "/var/lib/rancher/k3s/server/token";

/// A node's role in K3s's terms.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Server,
    Agent,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Server => "server",
            Role::Agent => "agent",
        }
    }

    /// The systemd unit install.sh writes for it.
    pub fn unit(self) -> &'static str {
        match self {
            Role::Server => "k3s",
            Role::Agent => "k3s-agent",
        }
    }
}

/// A node of the cluster: the host's name (the node's name), its address (the node's IP),
/// and how to reach it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeHost {
    pub name: String,
    pub address: String,
    pub target: SshTarget,
}

/// What every node's install shares, from the stack config.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct K3sSetup {
    pub cluster: String,
    /// The k3s binary and install.sh on this machine.
    pub binary: PathBuf,
    pub installer: PathBuf,
    pub disable: Vec<String>,
    /// The API certificate's extra names: the VIP and `api.<domain>` among them.
    pub tls_san: Vec<String>,
    pub join_timeout_s: u64,
    /// OpenBAO's address, where the token and the kubeconfig are kept.
    pub openbao: Option<String>,
    /// The API's VIP; none for a single node.
    pub vip: Option<String>,
    pub kube_vip_image: String,
    /// K3s from the stack's registry (`components.k3s.source: registry`): the nodes fetch
    /// the binary and install.sh there and pull their images through it. None: uploaded
    /// from `binary` and `installer`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registry: Option<K3sArtifact>,
}

/// K3s's binary and install.sh as an OCI artifact in the stack's registry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct K3sArtifact {
    /// The registry as the nodes (and this machine) reach it: `http://10.0.0.5:5000`.
    pub registry: String,
    pub repository: String,
    pub tag: String,
}

/// Where `foundry registry push-k3s` puts K3s, and the nodes fetch it.
pub const K3S_REPOSITORY: &str = "foundry/k3s";
/// The artifact's type, and its two files' media types and titles.
pub const K3S_ARTIFACT_TYPE: &str = "application/vnd.foundry.k3s.v1";
pub const K3S_BINARY_TYPE: &str = "application/vnd.foundry.k3s.binary.v1";
pub const K3S_INSTALLER_TYPE: &str = "application/vnd.foundry.k3s.installer.v1";
pub const K3S_BINARY_TITLE: &str = "k3s";
pub const K3S_INSTALLER_TITLE: &str = "install.sh";

/// The registries whose images a node of a cluster with K3s from the stack's registry
/// pulls through it.
pub const MIRRORED: [&str; 5] = [
    "docker.io",
    "ghcr.io",
    "quay.io",
    "registry.k8s.io",
    "gcr.io",
];

impl K3sArtifact {
    pub fn reference(&self) -> String {
        format!("{}:{}", self.repository, self.tag)
    }

    /// The step that looks the artifact up (from this machine): a missing tag stops the
    /// run before a node is touched.
    pub fn resolve(&self) -> ResolveArtifact {
        ResolveArtifact {
            registry: self.registry.clone(),
            repository: self.repository.clone(),
            tag: self.tag.clone(),
            files: vec![K3S_BINARY_TITLE.into(), K3S_INSTALLER_TITLE.into()],
        }
    }

    /// K3s's `registries.yaml`: each of [`MIRRORED`] pulled through the stack's registry
    /// (containerd keeps the image's path: `ghcr.io/kube-vip/kube-vip:v0.8.9` is
    /// `kube-vip/kube-vip:v0.8.9` there).
    pub fn registries_yaml(&self) -> String {
        #[derive(Serialize)]
        struct Mirror<'a> {
            endpoint: [&'a str; 1],
        }
        #[derive(Serialize)]
        struct Registries<'a> {
            mirrors: std::collections::BTreeMap<&'a str, Mirror<'a>>,
        }
        let mirrors = MIRRORED
            .iter()
            .map(|r| {
                (
                    *r,
                    Mirror {
                        endpoint: [self.registry.as_str()],
                    },
                )
            })
            .collect();
        let body = serde_saphyr::to_string(&Registries { mirrors }).unwrap_or_default();
        format!("# Written by Foundry: images through the stack's registry.\n{body}")
    }
}

/// The flags of a node's `/etc/rancher/k3s/config.yaml`, in K3s's names.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
struct K3sConfig<'a> {
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    cluster_init: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    server: Option<&'a str>,
    token_file: &'static str,
    node_name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    node_ip: Option<&'a str>,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    tls_san: &'a [String],
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    disable: &'a [String],
}

/// A node's config.yaml: `join` is the server to join (none: the first server, with
/// `cluster-init`, embedded etcd); a server gets the SANs and what is disabled.
pub fn config_yaml(setup: &K3sSetup, node: &NodeHost, role: Role, join: Option<&str>) -> String {
    let server = role == Role::Server;
    let config = K3sConfig {
        cluster_init: server && join.is_none(),
        server: join,
        token_file: TOKEN_PATH,
        node_name: &node.name,
        // A host reached by a DNS name: K3s takes the address of its default route.
        node_ip: node
            .address
            .parse::<std::net::IpAddr>()
            .is_ok()
            .then_some(node.address.as_str()),
        tls_san: if server { &setup.tls_san } else { &[] },
        disable: if server { &setup.disable } else { &[] },
    };
    let body = serde_saphyr::to_string(&config).unwrap_or_default();
    format!("# Written by Foundry: `foundry cluster` keeps this file.\n{body}")
}

/// What one node's install did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeOutput {
    pub name: String,
    pub role: Role,
    /// The files that were sent because the host's differed.
    pub uploaded: Vec<String>,
    /// install.sh ran (else the node ran as it should already).
    pub installed: bool,
}

impl NodeOutput {
    pub fn changed(&self) -> bool {
        self.installed || !self.uploaded.is_empty()
    }
}

/// Installs K3s on `node` in its own scope of `ctx` (keys `binary`, `installer`, or from
/// the registry `artifact`, `fetch-binary`, `fetch-installer`, `registries`; then `token`,
/// `config`, `kube-vip`, `running`, `install`: a changed registries.yaml runs install.sh
/// again, since K3s reads it when it starts): `join` is the server URL to join, none for
/// the first server; `manifest` kube-vip's, for a server of an HA cluster. Returns once
/// install.sh has (the node's unit said it is ready); the caller waits for the node to be
/// Ready in the API.
pub async fn install(
    ctx: &Ctx,
    setup: &K3sSetup,
    node: &NodeHost,
    role: Role,
    join: Option<&str>,
    token: &SecretRef,
    manifest: Option<&str>,
) -> Result<NodeOutput, RunError> {
    let target = &node.target;
    let send = |source: &PathBuf, path: &str| {
        SshSendFile::of(target.clone(), source, path, 0o755)
            .map_err(|e| RunError::workflow(format!("{}: {}", node.name, e.message)))
    };
    let upload = |path: &str, content: SecretValue| SshUpload {
        target: target.clone(),
        path: path.into(),
        content,
        mode: 0o600,
        owner: "root:root".into(),
        sudo: true,
    };
    let mut sent: Vec<FileOutput> = match &setup.registry {
        None => vec![
            put_binary(ctx, "binary", setup, None, node, BINARY_PATH).await?,
            ctx.step("installer", &send(&setup.installer, INSTALLER_PATH)?)
                .await?,
        ],
        Some(artifact) => {
            let files = ctx.step("artifact", &artifact.resolve()).await?;
            let from = Some((artifact, &files));
            let mut got = vec![
                put_binary(ctx, "binary", setup, from, node, BINARY_PATH).await?,
                ctx.step(
                    "fetch-installer",
                    &fetch(node, artifact, &files, K3S_INSTALLER_TITLE, INSTALLER_PATH)?,
                )
                .await?,
            ];
            let mirrors = upload(
                REGISTRIES_PATH,
                SecretValue::new(artifact.registries_yaml()),
            );
            got.push(ctx.step("registries", &mirrors).await?);
            got
        }
    };
    sent.extend([
        ctx.step("token", &upload(TOKEN_PATH, ctx.reveal(token)?))
            .await?,
        ctx.step(
            "config",
            &upload(
                CONFIG_PATH,
                SecretValue::new(config_yaml(setup, node, role, join)),
            ),
        )
        .await?,
    ]);
    if let (Role::Server, Some(manifest)) = (role, manifest) {
        let path = super::kube_vip::MANIFEST_PATH;
        sent.push(
            ctx.step("kube-vip", &upload(path, SecretValue::new(manifest)))
                .await?,
        );
    }
    let uploaded: Vec<String> = sent
        .iter()
        .filter(|f| f.changed)
        .map(|f| f.path.display().to_string())
        .collect();
    let running = HostRead::new(
        target.clone(),
        &format!("systemctl is-active {} || true", role.unit()),
    );
    let running = ctx.step("running", &running).await?.text == "active";
    let installed = !running || !uploaded.is_empty();
    if installed {
        ctx.step("install", &installer(setup, node, role)).await?;
    }
    Ok(NodeOutput {
        name: node.name.clone(),
        role,
        uploaded,
        installed,
    })
}

/// K3s's binary put at `path` on `node`, as step `key`: sent from this machine's
/// `components.k3s.binary`, or, with K3s from the stack's registry (`from`: the artifact
/// and its files, looked up once), fetched there by the node itself as step `fetch-KEY`.
/// Probed by hash either way: a node that has it gets nothing.
pub async fn put_binary(
    ctx: &Ctx,
    key: &str,
    setup: &K3sSetup,
    from: Option<(&K3sArtifact, &ArtifactFiles)>,
    node: &NodeHost,
    path: &str,
) -> Result<FileOutput, RunError> {
    match from {
        None => {
            let send = SshSendFile::of(node.target.clone(), &setup.binary, path, 0o755)
                .map_err(|e| RunError::workflow(format!("{}: {}", node.name, e.message)))?;
            ctx.step(key, &send).await
        }
        Some((artifact, files)) => {
            let fetch = fetch(node, artifact, files, K3S_BINARY_TITLE, path)?;
            ctx.step(&format!("fetch-{key}"), &fetch).await
        }
    }
}

/// The node's fetch of one file of K3s's artifact, by the digest [`ResolveArtifact`] found.
fn fetch(
    node: &NodeHost,
    artifact: &K3sArtifact,
    files: &ArtifactFiles,
    title: &str,
    path: &str,
) -> Result<SshFetchBlob, RunError> {
    let file = files.file(title).ok_or_else(|| {
        RunError::workflow(format!(
            "{}: {} has no file `{title}`",
            node.name,
            artifact.reference()
        ))
    })?;
    Ok(SshFetchBlob {
        target: node.target.clone(),
        registry: artifact.registry.clone(),
        repository: artifact.repository.clone(),
        reference: format!("{} ({title})", artifact.reference()),
        digest: file.digest.clone(),
        path: path.into(),
        mode: 0o755,
    })
}

/// install.sh as K3s documents it for an air-gapped host: the binary in place, nothing
/// downloaded, the role in `INSTALL_K3S_EXEC`, every flag in config.yaml. Bounded by the
/// join timeout (the installer would wait for ever on a stalled join).
fn installer(setup: &K3sSetup, node: &NodeHost, role: Role) -> SshDetached {
    let argv = [
        "timeout",
        &setup.join_timeout_s.to_string(),
        "env",
        "INSTALL_K3S_SKIP_DOWNLOAD=true",
        &format!("INSTALL_K3S_EXEC={}", role.as_str()),
        "sh",
        INSTALLER_PATH,
    ]
    .map(String::from)
    .to_vec();
    // A failed install pauses the run for a person rather than restarting the unit again
    // and again; `workflow resume` tries again.
    detached_once(node, argv)
}

/// `argv` as root on `node`, detached, tried once: a failure pauses the run for a person.
pub(super) fn detached_once(node: &NodeHost, argv: Vec<String>) -> SshDetached {
    let mut run = SshDetached::new(node.target.clone(), argv);
    run.sudo = true;
    run.policy = RetryPolicy {
        max_attempts: 1,
        ..RetryPolicy::default()
    };
    run
}

/// A short read-only script run on a host (as root): what it printed, trimmed. For facts
/// that are no secret (a unit's state, an interface's name).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostRead {
    pub target: SshTarget,
    pub script: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostReadOutput {
    pub text: String,
}

impl HostRead {
    pub fn new(target: SshTarget, script: &str) -> HostRead {
        HostRead {
            target,
            script: script.into(),
        }
    }
}

/// Runs `script` with `sh -c` as root on `target`, `input` on its stdin; its exit code and
/// stdout, never shown as events (it may be a secret: the kubeconfig).
pub(crate) async fn capture(
    target: &SshTarget,
    script: &str,
    input: Option<&[u8]>,
    cx: &ActivityCx,
) -> Result<(u32, Vec<u8>, String), ActivityError> {
    let argv = ["sh", "-c", script].map(String::from);
    let line = foundry_activities::ssh::command_line(&argv, true)?;
    let session = SshPool::global().session(target).await?;
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let code = session
        .channel()
        .await?
        .exec_with_input(&line, input, cx, |stream, data| match stream {
            foundry_core::Stream::Stdout => out.extend_from_slice(data),
            foundry_core::Stream::Stderr => err.extend_from_slice(data),
        })
        .await?;
    let err = String::from_utf8_lossy(&err)
        .trim()
        .lines()
        .last()
        .unwrap_or_default()
        .to_string();
    Ok((code, out, err))
}

impl Activity for HostRead {
    type Output = HostReadOutput;

    fn kind(&self) -> &'static str {
        "ssh-read"
    }

    fn in_doubt(&self) -> InDoubt {
        InDoubt::Rerun
    }

    async fn probe(&self, _cx: &ActivityCx) -> Result<Option<HostReadOutput>, ActivityError> {
        Ok(None)
    }

    async fn apply(&self, cx: &ActivityCx) -> Result<HostReadOutput, ActivityError> {
        let (code, out, err) = capture(&self.target, &self.script, None, cx).await?;
        if code != 0 {
            return Err(ActivityError::transient(format!(
                "{}: reading the host's state exited with status {code}: {err}",
                self.target
            )));
        }
        Ok(HostReadOutput {
            text: String::from_utf8_lossy(&out).trim().to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup() -> K3sSetup {
        K3sSetup {
            cluster: "lab".into(),
            binary: "/opt/k3s".into(),
            installer: "/opt/install.sh".into(),
            disable: vec!["traefik".into(), "servicelb".into()],
            tls_san: vec!["10.77.3.220".into(), "api.lab.example".into()],
            join_timeout_s: 600,
            openbao: None,
            vip: Some("10.77.3.220".into()),
            kube_vip_image: super::super::kube_vip::KUBE_VIP_IMAGE.into(),
            registry: None,
        }
    }

    fn node() -> NodeHost {
        NodeHost {
            name: "host-2".into(),
            address: "10.77.3.12".into(),
            target: SshTarget {
                address: "10.77.3.12".into(),
                port: 22,
                user: "admin".into(),
                key: std::path::PathBuf::from("/k").into(),
                host_key: "ssh-ed25519 AAAA".into(),
            },
        }
    }

    fn read(text: &str) -> serde_json::Value {
        serde_saphyr::from_str(text).expect("YAML")
    }

    #[test]
    fn registries_yaml_sends_each_registrys_images_through_the_stacks() {
        let artifact = K3sArtifact {
            registry: "http://10.77.3.244:5000".into(),
            repository: K3S_REPOSITORY.into(),
            tag: "v1.32.4-k3s1".into(),
        };
        let yaml = read(&artifact.registries_yaml());
        for registry in MIRRORED {
            assert_eq!(
                yaml["mirrors"][registry]["endpoint"],
                serde_json::json!(["http://10.77.3.244:5000"]),
                "{registry}"
            );
        }
        assert_eq!(artifact.reference(), "foundry/k3s:v1.32.4-k3s1");
        let resolve = artifact.resolve();
        assert_eq!(resolve.files, [K3S_BINARY_TITLE, K3S_INSTALLER_TITLE]);
        assert_eq!(resolve.registry, "http://10.77.3.244:5000");
    }

    #[test]
    fn config_yaml_holds_every_flag_and_never_the_token() {
        let first = read(&config_yaml(&setup(), &node(), Role::Server, None));
        assert_eq!(first["cluster-init"], true);
        assert!(first.get("server").is_none());
        assert_eq!(first["token-file"], TOKEN_PATH);
        assert_eq!(first["node-ip"], "10.77.3.12");
        assert_eq!(first["node-name"], "host-2");
        assert_eq!(
            first["tls-san"],
            serde_json::json!(["10.77.3.220", "api.lab.example"])
        );
        assert_eq!(
            first["disable"],
            serde_json::json!(["traefik", "servicelb"])
        );
        assert!(first.get("token").is_none());

        let join = "https://10.77.3.11:6443";
        let server = read(&config_yaml(&setup(), &node(), Role::Server, Some(join)));
        assert!(server.get("cluster-init").is_none());
        assert_eq!(server["server"], join);

        let mut named = node();
        named.address = "node-2.lab.example".into();
        let by_name = read(&config_yaml(&setup(), &named, Role::Server, Some(join)));
        assert!(by_name.get("node-ip").is_none(), "node-ip is an address");

        let agent = read(&config_yaml(&setup(), &node(), Role::Agent, Some(join)));
        assert_eq!(agent["server"], join);
        assert_eq!(agent["token-file"], TOKEN_PATH);
        assert!(agent.get("tls-san").is_none() && agent.get("disable").is_none());
    }
}
