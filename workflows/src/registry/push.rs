//! `foundry registry push-k3s`: K3s's binary and install.sh from this machine put into the
//! stack's registry as one OCI artifact, `foundry/k3s:<release as a tag>`, as `oras push`
//! would store them (an `artifactType`, OCI's empty config, one layer per file titled by
//! `org.opencontainers.image.title`). Each node of a cluster whose
//! `components.k3s.source` is `registry` fetches them there. Not a durable run: the push
//! is idempotent (a blob the registry has is not sent again), so running it again is the
//! way to finish one that was interrupted.

use std::collections::BTreeMap;
use std::path::PathBuf;

use foundry_activities::registry::{Blob, BlobSource, Pushed, RegistryClient};

use crate::component::ComponentError;
use crate::config::StackConfig;
use crate::k3s::node::{
    K3S_ARTIFACT_TYPE, K3S_BINARY_TITLE, K3S_BINARY_TYPE, K3S_INSTALLER_TITLE, K3S_INSTALLER_TYPE,
};

/// What to push; each absent one from the stack config.
#[derive(Clone, Debug, Default)]
pub struct PushK3s {
    /// `components.k3s.binary` when absent.
    pub binary: Option<PathBuf>,
    /// `components.k3s.installer` when absent.
    pub installer: Option<PathBuf>,
    /// The release, `v1.32.4+k3s1`; `components.k3s.tag` when absent.
    pub release: Option<String>,
    /// The registry's address (`http://10.0.0.5:5000`); the stack's registry component's
    /// when absent.
    pub registry: Option<String>,
}

/// Pushes K3s into the registry: what was sent and what the registry had.
pub async fn push_k3s(stack: &StackConfig, push: PushK3s) -> Result<Pushed, ComponentError> {
    let mut k3s = stack
        .components
        .as_ref()
        .map(|c| c.k3s.clone())
        .unwrap_or_default();
    if let Some(release) = push.release {
        crate::config::value::check_k3s_tag(&release)
            .map_err(|e| ComponentError::new(format!("--release: {e}")))?;
        k3s.tag = Some(release);
    }
    let release = k3s.tag.clone().ok_or_else(|| {
        ComponentError::new("no K3s release to push: components.k3s.tag is not set").hint(
            "give --release v1.32.4+k3s1 (the binary's `k3s --version`), or set components.k3s.tag",
        )
    })?;
    let file = |given: Option<PathBuf>, field: &str, what: &str| {
        given
            .or_else(|| match field {
                "binary" => k3s.binary.as_ref().map(|b| b.value.clone()),
                _ => k3s.installer.as_ref().map(|b| b.value.clone()),
            })
            .ok_or_else(|| {
                ComponentError::new(format!(
                    "no {what} to push: components.k3s.{field} is not set"
                ))
                .hint(format!("give --{field} PATH"))
            })
    };
    let binary = file(push.binary, "binary", "K3s binary")?;
    let installer = file(push.installer, "installer", "install.sh")?;
    for path in [&binary, &installer] {
        if !path.is_file() {
            return Err(ComponentError::new(format!(
                "{} is not a file on this machine",
                path.display()
            )));
        }
    }
    let mut artifact = match push.registry {
        Some(registry) => crate::k3s::artifact_at(registry, &release),
        None => crate::k3s::artifact(stack, &k3s)?,
    };
    artifact.registry = artifact.registry.trim_end_matches('/').to_string();
    let client =
        RegistryClient::new(&artifact.registry).map_err(|e| ComponentError::new(e.message))?;
    let blob = |media_type: &str, title: &str, path: PathBuf| Blob {
        media_type: media_type.into(),
        title: Some(title.into()),
        source: BlobSource::File(path),
    };
    let annotations = BTreeMap::from([(
        "org.opencontainers.image.version".to_string(),
        release.clone(),
    )]);
    client
        .push_artifact(
            &artifact.repository,
            &artifact.tag,
            Some(K3S_ARTIFACT_TYPE),
            None,
            &[
                blob(K3S_BINARY_TYPE, K3S_BINARY_TITLE, binary),
                blob(K3S_INSTALLER_TYPE, K3S_INSTALLER_TITLE, installer),
            ],
            annotations,
        )
        .await
        .map_err(|e| {
            let mut error = ComponentError::new(format!("pushing K3s {release}: {}", e.message));
            if e.transient {
                error = error.hint(
                    "the registry must be reachable from this machine: give --registry URL, or check `foundry component status registry`",
                );
            }
            error
        })
}
