//! An image that must be present before containers use it. Nothing is pulled: images are
//! built where they are used (the lab builds its own from Debian packages).

use foundry_core::{Activity, ActivityCx, ActivityError, InDoubt};
use serde::{Deserialize, Serialize};

use super::{Endpoint, not_found};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnsureImage {
    pub endpoint: Endpoint,
    pub name: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageOutput {
    pub id: String,
}

impl Activity for EnsureImage {
    type Output = ImageOutput;

    fn kind(&self) -> &'static str {
        "image"
    }

    fn in_doubt(&self) -> InDoubt {
        InDoubt::Probe
    }

    async fn probe(&self, _cx: &ActivityCx) -> Result<Option<ImageOutput>, ActivityError> {
        let docker = self.endpoint.connect().await?;
        match docker.inspect_image(&self.name).await {
            Ok(image) => Ok(Some(ImageOutput {
                id: image.id.unwrap_or_default(),
            })),
            Err(e) if not_found(&e) => Ok(None),
            Err(e) => Err(self
                .endpoint
                .error(&format!("inspecting image {}", self.name), &e)),
        }
    }

    async fn apply(&self, cx: &ActivityCx) -> Result<ImageOutput, ActivityError> {
        self.probe(cx).await?.ok_or_else(|| {
            ActivityError::permanent(format!(
                "image {} is not on {}: build or load it there first",
                self.name, self.endpoint
            ))
        })
    }
}
