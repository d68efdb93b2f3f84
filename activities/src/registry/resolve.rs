//! An artifact's files looked up by tag, from this machine: the digest and size of each
//! layer it names by title. A tag the registry lacks, or an artifact without one of the
//! files, is a permanent error naming the reference and the registry.

use foundry_core::{Activity, ActivityCx, ActivityError, InDoubt};
use serde::{Deserialize, Serialize};

use super::RegistryClient;
use super::artifact::Descriptor;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResolveArtifact {
    /// `http://<address>:5000`.
    pub registry: String,
    pub repository: String,
    pub tag: String,
    /// The layers' titles (`org.opencontainers.image.title`) it must have.
    pub files: Vec<String>,
}

/// The layers named, in the order asked.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArtifactFiles {
    pub files: Vec<Descriptor>,
}

impl ArtifactFiles {
    /// The layer titled `title`.
    pub fn file(&self, title: &str) -> Option<&Descriptor> {
        self.files.iter().find(|d| d.title() == Some(title))
    }
}

impl ResolveArtifact {
    pub fn reference(&self) -> String {
        format!("{}:{}", self.repository, self.tag)
    }
}

impl Activity for ResolveArtifact {
    type Output = ArtifactFiles;

    fn kind(&self) -> &'static str {
        "registry-resolve"
    }

    fn in_doubt(&self) -> InDoubt {
        InDoubt::Rerun
    }

    async fn probe(&self, _cx: &ActivityCx) -> Result<Option<ArtifactFiles>, ActivityError> {
        Ok(None)
    }

    async fn apply(&self, _cx: &ActivityCx) -> Result<ArtifactFiles, ActivityError> {
        let client = RegistryClient::new(&self.registry)?;
        let manifest = client
            .manifest(&self.repository, &self.tag)
            .await
            .map_err(|mut e| {
                if !e.transient {
                    e.message.push_str(
                        "\nhint: push it with `foundry registry push-k3s`, or set components.k3s.tag to a release the registry has",
                    );
                }
                e
            })?;
        let files = self
            .files
            .iter()
            .map(|title| {
                manifest.layer(title).cloned().ok_or_else(|| {
                    ActivityError::permanent(format!(
                        "{} in the registry at {} has no file `{title}`",
                        self.reference(),
                        client.addr()
                    ))
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(ArtifactFiles { files })
    }
}
