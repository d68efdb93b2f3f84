//! `registry-install`: the stack's OCI registry, Zot, as a container on an infra host's
//! Docker Engine, on a network at a fixed address, its storage in a named volume,
//! optionally published on a host address. Foundry speaks to it as to upstream Zot's
//! image (`ghcr.io/project-zot/zot`, pinned by [`ZOT_IMAGE`]): it renders Zot's
//! `config.json`, puts it into the container at `/etc/zot/config.json` through the
//! Engine's archive API (so it is part of the spec's hash), and runs the image's own
//! command, `serve /etc/zot/config.json`, with no environment. The lab runs the stand-in
//! built in `registry/image.rs`, which keeps that contract. `status` answers from the live
//! container and registry only.

pub mod component;
pub mod image;
pub mod push;

use std::collections::BTreeMap;

use foundry_activities::container::{ContainerFile, ContainerSpec, labelled_state};
use foundry_activities::local::EnsureFile;
use foundry_activities::registry::{RegistryClient, RegistryReady};
use foundry_core::{ActivityError, Ctx, RunError, SecretValue, Workflow};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::install;

pub use foundry_activities::container::Endpoint;
pub use image::{REGISTRY_IMAGE, build_step};

/// Upstream Zot's image, pinned: the default when the config names no image. Release tags
/// are `v<version>`; `ghcr.io/project-zot/zot` is the multi-arch index of
/// `zot-linux-amd64`, `zot-linux-arm64`, ….
pub const ZOT_IMAGE: &str = "ghcr.io/project-zot/zot:v2.1.20";
/// Where Zot's image reads its config: its command is `serve` with this path.
pub const CONFIG_PATH: &str = "/etc/zot/config.json";
/// Where Zot keeps its blobs and manifests (`storage.rootDirectory`): the container mounts
/// a named volume there.
pub const DATA_PATH: &str = "/var/lib/registry";
/// The port Zot serves the OCI distribution API on (`http.port`).
pub const PORT: u16 = 5000;
/// The distribution spec version Zot v2.1 serves (`distSpecVersion`).
const DIST_SPEC_VERSION: &str = "1.1.1";

/// The label on the registry's container, with its name.
pub const REGISTRY_LABEL: &str = "foundry.registry";
/// How long the API may take to answer once the container runs.
const READY_TIMEOUT_S: u64 = 60;

fn default_name() -> String {
    "foundry-registry".into()
}

fn default_image() -> String {
    ZOT_IMAGE.into()
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistryInput {
    /// The infra host's Docker Engine.
    #[serde(default)]
    pub endpoint: Endpoint,
    /// The container's name (`foundry-registry`).
    #[serde(default = "default_name")]
    pub name: String,
    /// Upstream Zot's pinned image unless given (the lab gives its stand-in's).
    #[serde(default = "default_image")]
    pub image: String,
    /// Build the image on this machine's Engine when it is missing: only the lab's
    /// stand-in ([`REGISTRY_IMAGE`]) can be built; any other image must be on the Engine
    /// already (`registry/image` refuses to go on without it).
    #[serde(default)]
    pub build_image: bool,
    /// How the image reaches the Engine when it is not there: `pull` (by that Engine, from
    /// its registry) or `load` (from this machine's Engine, through the endpoint); by
    /// default `load` for an image built here and `pull` for any other.
    #[serde(default)]
    pub image_source: Option<foundry_activities::container::ImageSource>,
    /// A registry (`host[:port][/prefix]`) the Engine pulls the image through instead of
    /// its own registry.
    #[serde(default)]
    pub registry_mirror: Option<String>,
    #[serde(default = "install::lab_base_image")]
    pub base_image: String,
    /// The Docker network to join, and the fixed address on it.
    pub network: String,
    pub ipv4: String,
    /// The named volume holding the registry's storage.
    pub volume: String,
    /// A host address and port to publish the API on (`127.0.0.1:5005`). The Docker
    /// daemon treats a registry on 127.0.0.0/8 as insecure (plain HTTP) without any
    /// daemon configuration, so `docker push 127.0.0.1:5005/...` works as it is.
    #[serde(default)]
    pub publish: Option<String>,
}

impl RegistryInput {
    /// The API on the container's network: `http://<ipv4>:5000`.
    pub fn addr(&self) -> String {
        format!("http://{}:{PORT}", self.ipv4)
    }

    /// Zot's `config.json` for this registry: its storage in the volume, the API on every
    /// address of the container at [`PORT`], Docker's image manifests accepted (`docker
    /// push` sends them; Zot refuses them without `compat`), logs at `info`.
    pub fn zot_config(&self) -> String {
        let config = ZotConfig {
            dist_spec_version: DIST_SPEC_VERSION.into(),
            storage: ZotStorage {
                root_directory: DATA_PATH.into(),
            },
            http: ZotHttp {
                address: "0.0.0.0".into(),
                port: PORT.to_string(),
                compat: vec!["docker2s2".into()],
            },
            log: ZotLog {
                level: "info".into(),
            },
        };
        // A struct of strings always serializes.
        let mut text = serde_json::to_string_pretty(&config).unwrap_or_default();
        text.push('\n');
        text
    }

    /// Where this machine keeps the registry's `config.json`, the source of the file put
    /// into its container: `$FOUNDRY_HOME/registry/<name>-config.json`.
    fn config_source(&self) -> Result<std::path::PathBuf, RunError> {
        let home = foundry_core::Home::from_env().map_err(|e| RunError::workflow(e.to_string()))?;
        Ok(home
            .root()
            .join("registry")
            .join(format!("{}-config.json", self.name)))
    }

    fn spec(&self, config: ContainerFile) -> ContainerSpec {
        ContainerSpec {
            name: self.name.clone(),
            image: self.image.clone(),
            cmd: Some(vec!["serve".into(), CONFIG_PATH.into()]),
            labels: BTreeMap::from([(REGISTRY_LABEL.to_string(), self.name.clone())]),
            hostname: Some(self.name.clone()),
            network: Some(self.network.clone()),
            ipv4: Some(self.ipv4.clone()),
            binds: vec![format!("{}:{DATA_PATH}", self.volume)],
            ports: self
                .publish
                .iter()
                .map(|host| (format!("{PORT}/tcp"), host.clone()))
                .collect(),
            files: BTreeMap::from([(CONFIG_PATH.to_string(), config)]),
            ..ContainerSpec::default()
        }
    }
}

/// Zot's `config.json`: the keys Foundry writes, in Zot's spelling.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ZotConfig {
    pub dist_spec_version: String,
    pub storage: ZotStorage,
    pub http: ZotHttp,
    pub log: ZotLog,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ZotStorage {
    pub root_directory: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ZotHttp {
    pub address: String,
    /// A string, as Zot reads it.
    pub port: String,
    pub compat: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ZotLog {
    pub level: String,
}

/// What the install did; both flags false on a run that changed nothing.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegistryOutput {
    /// The API on the container's network.
    pub addr: String,
    /// The API where it is published on the host, if it is.
    pub published: Option<String>,
    pub container_created: bool,
    pub container_recreated: bool,
}

impl RegistryOutput {
    pub fn changed(&self) -> bool {
        !self.changes().is_empty()
    }

    /// What this run changed, for people; empty when nothing changed.
    pub fn changes(&self) -> Vec<String> {
        [
            (self.container_created, "container created"),
            (self.container_recreated, "container replaced"),
        ]
        .into_iter()
        .filter(|(done, _)| *done)
        .map(|(_, what)| what.to_string())
        .collect()
    }
}

#[derive(Default)]
pub struct RegistryInstall;

impl Workflow for RegistryInstall {
    const NAME: &'static str = "registry-install";
    /// 2: Zot's contract (its image by default, its `config.json` put into the container,
    /// a `registry/config` step); 1 ran docker-registry's own command line.
    const VERSION: u32 = 2;
    type Input = RegistryInput;
    type Output = RegistryOutput;

    fn check(&self, input: &RegistryInput) -> Result<(), String> {
        install::check_names(&[
            ("name", &input.name),
            ("network", &input.network),
            ("volume", &input.volume),
        ])?;
        install::check_ipv4(&input.ipv4)?;
        if let Some(publish) = &input.publish
            && publish.parse::<std::net::SocketAddr>().is_err()
        {
            return Err(format!(
                "publish `{publish}`: expected a host address and port such as 127.0.0.1:5005"
            ));
        }
        Ok(())
    }

    async fn run(&self, ctx: Ctx, input: RegistryInput) -> Result<RegistryOutput, RunError> {
        let build = input
            .build_image
            .then(|| build_step(&input.image, &input.base_image));
        let config = input.zot_config();
        let source = input.config_source()?;
        let write = EnsureFile {
            path: source.clone(),
            content: SecretValue::new(config.clone()),
            mode: 0o644,
        };
        ctx.step("registry/config", &write).await?;
        let config = ContainerFile {
            source,
            sha256: hex::encode(Sha256::digest(config.as_bytes())),
            mode: 0o644,
            uid: 0,
            gid: 0,
        };
        let delivery = (
            install::source(input.build_image, input.image_source),
            input.registry_mirror.clone(),
        );
        let spec = input.spec(config);
        let container =
            install::container(&ctx, "registry", &input.endpoint, build, delivery, spec).await?;
        let ready = RegistryReady {
            addr: input.addr(),
            timeout_s: READY_TIMEOUT_S,
        };
        ctx.step("registry/ready", &ready).await?;
        Ok(RegistryOutput {
            addr: input.addr(),
            published: input.publish.as_ref().map(|p| format!("http://{p}")),
            container_created: container.created,
            container_recreated: container.recreated,
        })
    }
}

/// The registry as it is now: its container, and what its API says.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegistryStatus {
    pub name: String,
    pub addr: String,
    /// The container's state (`running`, `exited`, …); none when there is no container.
    pub container: Option<String>,
    /// `GET /v2/` answered 200.
    pub api: bool,
    /// Its `Docker-Distribution-Api-Version` header (`registry/2.0`), if it sent one.
    pub api_version: Option<String>,
    /// The repositories in its catalog.
    pub repositories: Vec<String>,
    /// Why the API did not answer, or its catalog could not be read.
    pub error: Option<String>,
}

/// Asks the Engine and the registry, now: nothing is remembered.
pub async fn status(
    endpoint: &Endpoint,
    name: &str,
    addr: &str,
) -> Result<RegistryStatus, ActivityError> {
    let container = labelled_state(endpoint, REGISTRY_LABEL, name).await?;
    let client = RegistryClient::new(addr)?;
    let mut found = RegistryStatus {
        name: name.to_string(),
        addr: addr.to_string(),
        container,
        api: false,
        api_version: None,
        repositories: Vec::new(),
        error: None,
    };
    let answered = match client.ping().await {
        Ok(version) => {
            found.api = true;
            found.api_version = version;
            client.catalog().await
        }
        Err(e) => Err(e),
    };
    match answered {
        Ok(repositories) => found.repositories = repositories,
        Err(e) => found.error = Some(e.message),
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(extra: serde_json::Value) -> RegistryInput {
        let mut value = serde_json::json!({
            "network": "lab", "ipv4": "10.77.251.30", "volume": "registry-data",
        });
        if let (Some(all), Some(more)) = (value.as_object_mut(), extra.as_object()) {
            all.extend(more.clone());
        }
        serde_json::from_value(value).expect("a registry-install input")
    }

    /// A file for the spec, as the install makes it.
    fn config_file(input: &RegistryInput) -> ContainerFile {
        ContainerFile {
            source: "/home/u/.foundry/registry/foundry-registry-config.json".into(),
            sha256: hex::encode(Sha256::digest(input.zot_config().as_bytes())),
            mode: 0o644,
            uid: 0,
            gid: 0,
        }
    }

    #[test]
    fn defaults_name_upstream_zot_and_publish_nothing() {
        let input = input(serde_json::json!({}));
        assert_eq!(input.name, "foundry-registry");
        assert_eq!(input.image, ZOT_IMAGE);
        assert!(!input.build_image, "upstream Zot's image is not built here");
        assert_eq!(input.base_image, crate::lab::LAB_IMAGE);
        assert_eq!(input.addr(), "http://10.77.251.30:5000");
        let spec = input.spec(config_file(&input));
        assert!(spec.ports.is_empty());
        assert_eq!(spec.binds, ["registry-data:/var/lib/registry"]);
        assert_eq!(
            spec.labels.get(REGISTRY_LABEL).map(String::as_str),
            Some("foundry-registry")
        );
        assert_eq!(RegistryInstall.check(&input), Ok(()));
    }

    /// The pinned image is upstream's, by its release tag (`v2.1.20`), and the lab's
    /// stand-in is named apart from it.
    #[test]
    fn the_default_image_is_upstream_zot_pinned_by_its_release_tag() {
        let (name, tag) = ZOT_IMAGE.rsplit_once(':').expect("a tag");
        assert_eq!(name, "ghcr.io/project-zot/zot");
        let version = tag.strip_prefix('v').expect("a v-prefixed release tag");
        let parts: Vec<u32> = version
            .split('.')
            .map(|p| p.parse().expect("a numeric version"))
            .collect();
        assert_eq!(parts.len(), 3, "{tag}");
        assert_eq!(parts[..2], [2, 1], "{tag}");
        assert!(REGISTRY_IMAGE.starts_with("foundry-lab-registry:"));
    }

    /// Zot's command and its config file, and nothing of docker-registry's: no flags, no
    /// environment, no entrypoint of Foundry's.
    #[test]
    fn the_container_runs_zots_command_with_its_config_file() {
        let input = input(serde_json::json!({}));
        let file = config_file(&input);
        let spec = input.spec(file.clone());
        assert_eq!(spec.entrypoint, None);
        assert_eq!(
            spec.cmd,
            Some(vec![
                "serve".to_string(),
                "/etc/zot/config.json".to_string()
            ])
        );
        assert!(spec.env.is_empty(), "{:?}", spec.env);
        assert!(spec.secret_env.is_empty());
        assert_eq!(
            spec.files,
            BTreeMap::from([(CONFIG_PATH.to_string(), file)])
        );
        let text = serde_json::to_string(&spec).expect("a spec");
        for docker_registry in ["config.yml", "docker-registry", "REGISTRY_"] {
            assert!(!text.contains(docker_registry), "{text}");
        }
    }

    /// The rendered `config.json` has Zot's shape, key by key, and says nothing else.
    #[test]
    fn the_rendered_config_has_zots_shape() {
        let text = input(serde_json::json!({})).zot_config();
        assert!(text.ends_with('\n'));
        let value: serde_json::Value = serde_json::from_str(&text).expect("JSON");
        assert_eq!(
            value,
            serde_json::json!({
                "distSpecVersion": "1.1.1",
                "storage": { "rootDirectory": "/var/lib/registry" },
                "http": { "address": "0.0.0.0", "port": "5000", "compat": ["docker2s2"] },
                "log": { "level": "info" },
            })
        );
        let typed: ZotConfig = serde_json::from_str(&text).expect("Zot's keys only");
        assert_eq!(typed.storage.root_directory, DATA_PATH);
    }

    /// A stack config placing the registry on one host, with `image` as its config says.
    fn stack(image: Option<&str>, image_tag: Option<&str>) -> crate::config::StackConfig {
        use crate::config::{At, HostEntry, StackConfig, schema};
        StackConfig {
            hosts: vec![HostEntry {
                name: "infra-1".into(),
                address: "10.9.0.10".into(),
                user: "foundry".into(),
                port: 22,
                key: Some(crate::config::KeyField::File("/k/infra-1".into())),
                host_key: Some("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOr5".into()),
            }],
            components: Some(schema::Components {
                zot: schema::Service {
                    host: Some(At::new("infra-1".to_string())),
                    docker_network: Some("infra".into()),
                    address: Some(At::new("10.9.0.44".parse().expect("an address"))),
                    image: image.map(str::to_string),
                    image_tag: image_tag.map(str::to_string),
                    ..schema::Service::default()
                },
                ..schema::Components::default()
            }),
            ..StackConfig::default()
        }
    }

    /// A user's config without an image gets upstream Zot, not built; the lab's config names
    /// the stand-in, which is built; a tag alone is upstream Zot's tag.
    #[test]
    fn the_config_picks_upstream_zot_unless_it_names_the_lab_stand_in() {
        let place = |image, tag| {
            super::component::Zot
                .place(&stack(image, tag))
                .expect("placed")
        };
        let user = place(None, None);
        assert_eq!((user.image.as_str(), user.build_image), (ZOT_IMAGE, false));
        let lab = place(Some(REGISTRY_IMAGE), None);
        assert_eq!(
            (lab.image.as_str(), lab.build_image),
            (REGISTRY_IMAGE, true)
        );
        let tagged = place(None, Some("v2.1.15"));
        assert_eq!(
            (tagged.image.as_str(), tagged.build_image),
            ("ghcr.io/project-zot/zot:v2.1.15", false)
        );
        assert_eq!(crate::config::value::check_image(ZOT_IMAGE), Ok(()));
    }

    #[test]
    fn publish_maps_the_api_port_to_the_host_address() {
        let input = input(serde_json::json!({"publish": "127.0.0.1:5005"}));
        assert_eq!(
            input.spec(config_file(&input)).ports,
            BTreeMap::from([("5000/tcp".to_string(), "127.0.0.1:5005".to_string())])
        );
        assert_eq!(RegistryInstall.check(&input), Ok(()));
    }

    #[test]
    fn bad_inputs_are_refused_before_a_run() {
        for (extra, says) in [
            (serde_json::json!({"publish": "5005"}), "publish `5005`"),
            (
                serde_json::json!({"publish": "localhost:5005"}),
                "publish `localhost:5005`",
            ),
            (serde_json::json!({"ipv4": "10.77.251"}), "ipv4 `10.77.251`"),
            (serde_json::json!({"volume": "a/b"}), "volume `a/b`"),
        ] {
            let e = RegistryInstall
                .check(&input(extra))
                .expect_err("a bad input");
            assert!(e.starts_with(says), "{e}");
        }
        let unknown: Result<RegistryInput, _> = serde_json::from_value(serde_json::json!({
            "network": "lab", "ipv4": "10.77.251.30", "volume": "v", "port": 5005,
        }));
        assert!(unknown.is_err());
    }
}
