//! `registry-install`: the stack's OCI registry as a container on an infra host's Docker
//! Engine, on a network at a fixed address, its storage in a named volume, optionally
//! published on a host address. Real deployments run Zot; the lab runs a stand-in for Zot,
//! Debian's `docker-registry` (same OCI distribution API), from the image built in
//! `registry/image.rs`. `status` answers from the live container and registry only.

pub mod image;

use std::collections::BTreeMap;

use foundry_activities::container::{ContainerSpec, labelled_state};
use foundry_activities::registry::{RegistryClient, RegistryReady};
use foundry_core::{ActivityError, Ctx, RunError, Workflow};
use serde::{Deserialize, Serialize};

use crate::install;

pub use foundry_activities::container::Endpoint;
pub use image::{PORT, REGISTRY_IMAGE, build_step};

/// The label on the registry's container, with its name.
pub const REGISTRY_LABEL: &str = "foundry.registry";
/// How long the API may take to answer once the container runs.
const READY_TIMEOUT_S: u64 = 60;

fn default_name() -> String {
    "foundry-registry".into()
}

fn default_image() -> String {
    REGISTRY_IMAGE.into()
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
    #[serde(default = "default_image")]
    pub image: String,
    /// Build the image on this machine's Engine when it is missing (the lab's image).
    #[serde(default = "install::yes")]
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

    fn spec(&self) -> ContainerSpec {
        ContainerSpec {
            name: self.name.clone(),
            image: self.image.clone(),
            cmd: Some(vec!["serve".into(), image::CONFIG_PATH.into()]),
            labels: BTreeMap::from([(REGISTRY_LABEL.to_string(), self.name.clone())]),
            hostname: Some(self.name.clone()),
            network: Some(self.network.clone()),
            ipv4: Some(self.ipv4.clone()),
            binds: vec![format!("{}:{}", self.volume, image::DATA_PATH)],
            ports: self
                .publish
                .iter()
                .map(|host| (format!("{PORT}/tcp"), host.clone()))
                .collect(),
            ..ContainerSpec::default()
        }
    }
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

pub struct RegistryInstall;

impl Workflow for RegistryInstall {
    const NAME: &'static str = "registry-install";
    const VERSION: u32 = 1;
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
        let source = install::source(input.build_image, input.image_source);
        let delivery = (source, input.registry_mirror.clone());
        let spec = input.spec();
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

    #[test]
    fn defaults_name_the_lab_image_and_publish_nothing() {
        let input = input(serde_json::json!({}));
        assert_eq!(input.name, "foundry-registry");
        assert_eq!(input.image, REGISTRY_IMAGE);
        assert_eq!(input.base_image, crate::lab::LAB_IMAGE);
        assert!(input.build_image);
        assert_eq!(input.addr(), "http://10.77.251.30:5000");
        let spec = input.spec();
        assert!(spec.ports.is_empty());
        assert_eq!(spec.binds, ["registry-data:/var/lib/docker-registry"]);
        assert_eq!(
            spec.labels.get(REGISTRY_LABEL).map(String::as_str),
            Some("foundry-registry")
        );
        assert_eq!(RegistryInstall.check(&input), Ok(()));
    }

    #[test]
    fn publish_maps_the_api_port_to_the_host_address() {
        let input = input(serde_json::json!({"publish": "127.0.0.1:5005"}));
        assert_eq!(
            input.spec().ports,
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
