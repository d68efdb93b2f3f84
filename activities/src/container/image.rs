//! Images on an Engine. `EnsureImage`: one that must be present (nothing is fetched).
//! `PullImage`: pulled from its registry by the target Engine, optionally through a mirror.
//! `LoadImage`: exported from a source Engine (this machine's, where the lab's images are
//! built) and loaded into the target, streamed through (over SSH for a remote Engine), as
//! for an air-gapped host. `BuildImage`: built by a command unless the Engine has it. Each
//! probes the target first: an image already there is not transferred or built again.

use std::time::Duration;

use bollard::query_parameters::{CreateImageOptions, ImportImageOptions, TagImageOptions};
use foundry_core::{Activity, ActivityCx, ActivityError, InDoubt, RetryPolicy};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};

use super::{Endpoint, not_found};
use crate::local::{CommandOutput, RunCommand};

/// How an image that is not on its Engine gets there.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ImageSource {
    /// The Engine pulls it from its registry (or the registry mirror).
    #[default]
    Pull,
    /// Foundry carries it from this machine's Engine and loads it there (an air-gapped
    /// host; the lab's images, built here).
    Load,
}

impl std::fmt::Display for ImageSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ImageSource::Pull => "pull",
            ImageSource::Load => "load",
        })
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnsureImage {
    pub endpoint: Endpoint,
    pub name: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageOutput {
    pub id: String,
    /// This step put the image on the Engine (pulled or loaded); false when it was there.
    #[serde(default)]
    pub transferred: bool,
}

/// The image's id on `endpoint`, or `None` when the Engine does not have it.
async fn image_id(endpoint: &Endpoint, name: &str) -> Result<Option<String>, ActivityError> {
    let docker = endpoint.connect().await?;
    match docker.inspect_image(name).await {
        Ok(image) => Ok(Some(image.id.unwrap_or_default())),
        Err(e) if not_found(&e) => Ok(None),
        Err(e) => Err(endpoint.error(&format!("inspecting image {name}"), &e)),
    }
}

/// The probe the image activities share: the image is on the target.
async fn present(endpoint: &Endpoint, name: &str) -> Result<Option<ImageOutput>, ActivityError> {
    Ok(image_id(endpoint, name).await?.map(|id| ImageOutput {
        id,
        transferred: false,
    }))
}

/// After a transfer: the image is there now, or the transfer did not do what it said.
async fn arrived(endpoint: &Endpoint, name: &str, how: &str) -> Result<ImageOutput, ActivityError> {
    match image_id(endpoint, name).await? {
        Some(id) => Ok(ImageOutput {
            id,
            transferred: true,
        }),
        None => Err(ActivityError::permanent(format!(
            "image {name} is not on {endpoint} after its {how} said it succeeded"
        ))),
    }
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
        present(&self.endpoint, &self.name).await
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

/// `image` on `endpoint`'s Engine, built by `command` (which builds it there) unless the
/// Engine has it: asked through its API, which costs a request where the command's own
/// check costs processes. Its output is the command's (`probed` when it was there).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BuildImage {
    #[serde(default)]
    pub endpoint: Endpoint,
    pub image: String,
    pub command: RunCommand,
}

impl Activity for BuildImage {
    type Output = CommandOutput;

    fn kind(&self) -> &'static str {
        "image-build"
    }

    fn in_doubt(&self) -> InDoubt {
        InDoubt::Probe
    }

    fn retry_policy(&self) -> RetryPolicy {
        self.command.policy.clone()
    }

    async fn probe(&self, _cx: &ActivityCx) -> Result<Option<CommandOutput>, ActivityError> {
        let found = image_id(&self.endpoint, &self.image).await?;
        Ok(found.and_then(|_| CommandOutput::from_probe(0)))
    }

    async fn apply(&self, cx: &ActivityCx) -> Result<CommandOutput, ActivityError> {
        if let Some(found) = self.probe(cx).await? {
            return Ok(found);
        }
        self.command.apply(cx).await
    }
}

/// An image reference split as the distribution spec reads it: `[domain/]path[:tag]
/// [@digest]`, with Docker Hub's defaults (`docker.io`, `library/` for a one-part path).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reference {
    pub domain: String,
    pub path: String,
    /// `:tag` or `@digest` (or both), as written; `:latest` when neither is.
    pub suffix: String,
}

impl Reference {
    pub fn parse(reference: &str) -> Result<Reference, String> {
        let bad = |why: &str| format!("image `{reference}`: {why}");
        if reference.is_empty() || reference.chars().any(|c| c.is_whitespace()) {
            return Err(bad("not an image reference"));
        }
        let (name, digest) = match reference.split_once('@') {
            Some((name, digest)) => (name, Some(digest)),
            None => (reference, None),
        };
        // A tag is after the last `:` that follows the last `/` (a port is before it).
        let last_part = name.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match name[last_part..].rfind(':') {
            Some(i) => (&name[..last_part + i], Some(&name[last_part + i + 1..])),
            None => (name, None),
        };
        let (domain, path) = match name.split_once('/') {
            Some((first, rest))
                if first.contains('.') || first.contains(':') || first == "localhost" =>
            {
                (first.to_string(), rest.to_string())
            }
            _ => ("docker.io".to_string(), name.to_string()),
        };
        if path.is_empty() || path.split('/').any(str::is_empty) {
            return Err(bad("its repository path is empty"));
        }
        let path = match (domain.as_str(), path.contains('/')) {
            ("docker.io" | "index.docker.io", false) => format!("library/{path}"),
            _ => path,
        };
        let mut suffix = String::new();
        match tag {
            Some("") => return Err(bad("its tag is empty")),
            Some(tag) => suffix.push_str(&format!(":{tag}")),
            None if digest.is_none() => suffix.push_str(":latest"),
            None => {}
        }
        if let Some(digest) = digest {
            suffix.push_str(&format!("@{digest}"));
        }
        Ok(Reference {
            domain,
            path,
            suffix,
        })
    }

    /// The same image at `mirror` (`host[:port][/prefix]`): its path under the mirror, the
    /// original registry's domain dropped.
    pub fn at_mirror(&self, mirror: &str) -> String {
        format!(
            "{}/{}{}",
            mirror.trim_end_matches('/'),
            self.path,
            self.suffix
        )
    }

    pub fn digest(&self) -> Option<&str> {
        self.suffix.split_once('@').map(|(_, d)| d)
    }

    /// `(repository, tag)` of a reference without a digest, as the Engine's create and tag
    /// calls take them.
    fn repo_and_tag(reference: &str) -> (String, Option<String>) {
        let last_part = reference.rfind('/').map_or(0, |i| i + 1);
        match reference[last_part..].rfind(':') {
            Some(i) => (
                reference[..last_part + i].to_string(),
                Some(reference[last_part + i + 1..].to_string()),
            ),
            None => (reference.to_string(), None),
        }
    }
}

/// The target Engine pulls `image` from its registry, or from `mirror` when one is given
/// (then tags it as `image`, the name containers use).
///
/// A registry that answers that the image or tag does not exist (404) is a permanent error;
/// a registry the Engine cannot reach (connection refused, no such host, a timeout: the
/// Engine's 500) is transient, since on a real network that passes (a mirror restarting,
/// a link down), and the retry policy bounds it; its last error names the image, the
/// registry and the Engine, with a hint for an air-gapped host.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PullImage {
    pub endpoint: Endpoint,
    pub image: String,
    #[serde(default)]
    pub mirror: Option<String>,
}

impl PullImage {
    /// The reference the Engine pulls.
    pub fn pulled(&self) -> Result<String, ActivityError> {
        let reference = Reference::parse(&self.image).map_err(ActivityError::permanent)?;
        Ok(match &self.mirror {
            Some(mirror) => reference.at_mirror(mirror),
            None => self.image.clone(),
        })
    }
}

impl Activity for PullImage {
    type Output = ImageOutput;

    fn kind(&self) -> &'static str {
        "image-pull"
    }

    fn in_doubt(&self) -> InDoubt {
        InDoubt::Probe
    }

    async fn probe(&self, _cx: &ActivityCx) -> Result<Option<ImageOutput>, ActivityError> {
        present(&self.endpoint, &self.image).await
    }

    async fn apply(&self, cx: &ActivityCx) -> Result<ImageOutput, ActivityError> {
        if let Some(found) = self.probe(cx).await? {
            return Ok(found);
        }
        let pulled = self.pulled()?;
        let digest = Reference::parse(&pulled)
            .map_err(ActivityError::permanent)?
            .digest()
            .map(str::to_string);
        if self.mirror.is_some() && digest.is_some() {
            return Err(ActivityError::permanent(format!(
                "image {}: a reference by digest cannot be renamed after a pull through the \
                 mirror; hint: name the mirror's reference ({pulled}) as the image",
                self.image
            )));
        }
        let (repo, tag) = match &digest {
            Some(_) => (pulled.clone(), None),
            None => Reference::repo_and_tag(&pulled),
        };
        let docker = self.endpoint.connect().await?;
        let options = CreateImageOptions {
            from_image: Some(repo),
            tag,
            ..Default::default()
        };
        let mut progress = docker.create_image(Some(options), None, None);
        while let Some(item) = progress.next().await {
            if let Err(e) = item {
                return Err(self.pull_error(&pulled, &e));
            }
        }
        if pulled != self.image {
            let (repo, tag) = Reference::repo_and_tag(&self.image);
            let options = TagImageOptions {
                repo: Some(repo),
                tag,
            };
            docker
                .tag_image(&pulled, Some(options))
                .await
                .map_err(|e| {
                    self.endpoint
                        .error(&format!("tagging {pulled} as {}", self.image), &e)
                })?;
        }
        arrived(&self.endpoint, &self.image, "pull").await
    }
}

impl PullImage {
    fn pull_error(&self, pulled: &str, e: &bollard::errors::Error) -> ActivityError {
        let mut error = self.endpoint.error(&format!("pulling image {pulled}"), e);
        if super::status_of(e) == Some(404) {
            error.message.push_str(
                "; hint: check the image's name and tag (components.<c>.image), or give \
                 the image by `image_source: load` from this machine",
            );
        } else if error.transient {
            error.message.push_str(
                "; hint: the Engine could not reach the registry: for a host without access \
                 to it, set a registry mirror it can reach or `image_source: load`",
            );
        }
        error
    }
}

/// How long one load may take: the Engine answers only once it has read the whole
/// tarball.
const LOAD_TIMEOUT: Duration = Duration::from_secs(1800);

/// `image` exported from the `source` Engine and loaded into the `target` Engine, streamed
/// through this process (the tarball is never held whole, in memory or on a disk). The
/// image keeps its id, layers and history: nothing is built on the target.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoadImage {
    /// Where the image is (this machine's Engine).
    #[serde(default)]
    pub source: Endpoint,
    pub target: Endpoint,
    pub image: String,
}

impl Activity for LoadImage {
    type Output = ImageOutput;

    fn kind(&self) -> &'static str {
        "image-load"
    }

    fn in_doubt(&self) -> InDoubt {
        InDoubt::Probe
    }

    async fn probe(&self, _cx: &ActivityCx) -> Result<Option<ImageOutput>, ActivityError> {
        present(&self.target, &self.image).await
    }

    async fn apply(&self, cx: &ActivityCx) -> Result<ImageOutput, ActivityError> {
        if let Some(found) = self.probe(cx).await? {
            return Ok(found);
        }
        if image_id(&self.source, &self.image).await?.is_none() {
            return Err(ActivityError::permanent(format!(
                "image {} is not on {}, so it cannot be loaded onto {}; hint: build or pull \
                 it there first, or set `image_source: pull`",
                self.image, self.source, self.target
            )));
        }
        let source = self.source.connect().await?.with_timeout(LOAD_TIMEOUT);
        let target = self.target.connect().await?.with_timeout(LOAD_TIMEOUT);
        let tarball = source.export_image(&self.image);
        let options = ImportImageOptions {
            quiet: true,
            ..Default::default()
        };
        let mut loading = target.import_image_stream(options, tarball, None);
        while let Some(item) = loading.next().await {
            if let Err(e) = item {
                // The export's own failure reaches the load as its body's error.
                let doing = format!("loading image {} from {} into it", self.image, self.source);
                return Err(self.target.error(&doing, &e));
            }
        }
        arrived(&self.target, &self.image, "load").await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_split_with_docker_hubs_defaults() {
        let r = |s: &str| Reference::parse(s).expect(s);
        assert_eq!(
            r("openbao/openbao:2.1.0"),
            Reference {
                domain: "docker.io".into(),
                path: "openbao/openbao".into(),
                suffix: ":2.1.0".into()
            }
        );
        assert_eq!(r("nginx").path, "library/nginx");
        assert_eq!(r("nginx").suffix, ":latest");
        let zot = r("ghcr.io/project-zot/zot-linux-amd64:v2.1.2");
        assert_eq!(zot.domain, "ghcr.io");
        assert_eq!(zot.path, "project-zot/zot-linux-amd64");
        let port = r("localhost:5000/a/b");
        assert_eq!(
            (port.domain.as_str(), port.suffix.as_str()),
            ("localhost:5000", ":latest")
        );
        let digest = r("10.0.0.1:5000/x@sha256:abc");
        assert_eq!(digest.digest(), Some("sha256:abc"));
        assert_eq!(digest.suffix, "@sha256:abc");
        for bad in ["", "a b", "registry.example/", "x:", "a//b"] {
            assert!(Reference::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_mirror_takes_the_path_and_drops_the_registry() {
        let at =
            |image: &str, mirror: &str| Reference::parse(image).expect(image).at_mirror(mirror);
        assert_eq!(
            at("openbao/openbao:2.1.0", "mirror.lan:5000"),
            "mirror.lan:5000/openbao/openbao:2.1.0"
        );
        assert_eq!(
            at("nginx", "mirror.lan/hub/"),
            "mirror.lan/hub/library/nginx:latest"
        );
        assert_eq!(
            at("ghcr.io/project-zot/zot:v2", "10.0.0.5:5000"),
            "10.0.0.5:5000/project-zot/zot:v2"
        );
        assert_eq!(
            Reference::repo_and_tag("10.0.0.5:5000/project-zot/zot"),
            ("10.0.0.5:5000/project-zot/zot".into(), None)
        );
        assert_eq!(
            Reference::repo_and_tag("10.0.0.5:5000/zot:v2"),
            ("10.0.0.5:5000/zot".into(), Some("v2".into()))
        );
    }

    #[test]
    fn an_image_output_journaled_before_transfers_existed_still_reads() {
        let old: ImageOutput =
            serde_json::from_value(serde_json::json!({"id": "sha256:1"})).expect("reads");
        assert!(!old.transferred);
        let source: ImageSource = serde_json::from_value(serde_json::json!("load")).expect("load");
        assert_eq!(source, ImageSource::Load);
        assert_eq!(ImageSource::default(), ImageSource::Pull);
    }
}
