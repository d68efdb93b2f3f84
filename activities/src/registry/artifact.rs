//! Files as an OCI artifact, as `oras push` stores them: an image manifest whose config is
//! OCI's empty descriptor, with an `artifactType`, and one layer per file, titled by
//! `org.opencontainers.image.title`. Pushed through the distribution API (each blob asked
//! with `HEAD` first and sent only when the registry lacks it, then the manifest `PUT` to
//! its tag) and read back by tag.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use foundry_core::ActivityError;
use reqwest::StatusCode;
use reqwest::header::{ACCEPT, CONTENT_TYPE, LOCATION};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::client::{RegistryClient, errors, valid_repository};
use crate::http;

/// An OCI image manifest's media type.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// A Docker image manifest's (what `docker push` stores).
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// OCI's empty config (`{}`), the config of an artifact that needs none.
pub const OCI_EMPTY: &str = "application/vnd.oci.empty.v1+json";
/// The annotation naming a layer's file, as `oras` writes and reads it.
pub const TITLE: &str = "org.opencontainers.image.title";

/// How long one blob's upload may take: a K3s binary is about 70 MB.
const UPLOAD_TIMEOUT: Duration = Duration::from_secs(600);

/// A descriptor: what a manifest says of a blob.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Descriptor {
    #[serde(rename = "mediaType")]
    pub media_type: String,
    pub digest: String,
    pub size: u64,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

impl Descriptor {
    /// The file name a layer carries (`org.opencontainers.image.title`).
    pub fn title(&self) -> Option<&str> {
        self.annotations.get(TITLE).map(String::as_str)
    }
}

/// An image manifest, OCI's or Docker's (the fields Foundry reads and writes).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    #[serde(rename = "schemaVersion")]
    pub schema_version: u32,
    #[serde(rename = "mediaType", default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    #[serde(
        rename = "artifactType",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub artifact_type: Option<String>,
    pub config: Descriptor,
    #[serde(default)]
    pub layers: Vec<Descriptor>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

impl Manifest {
    /// The layer titled `title`.
    pub fn layer(&self, title: &str) -> Option<&Descriptor> {
        self.layers.iter().find(|l| l.title() == Some(title))
    }
}

/// One blob to push: its media type, its title (a layer's file name) and its bytes, from
/// a file of this machine or from memory.
#[derive(Clone, Debug)]
pub struct Blob {
    pub media_type: String,
    pub title: Option<String>,
    pub source: BlobSource,
}

#[derive(Clone, Debug)]
pub enum BlobSource {
    File(PathBuf),
    Bytes(Vec<u8>),
}

impl Blob {
    async fn bytes(&self) -> Result<Vec<u8>, ActivityError> {
        match &self.source {
            BlobSource::Bytes(b) => Ok(b.clone()),
            BlobSource::File(path) => tokio::fs::read(path)
                .await
                .map_err(|e| ActivityError::permanent(format!("reading {}: {e}", path.display()))),
        }
    }
}

/// What a push did for one blob.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PushedBlob {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    pub media_type: String,
    pub digest: String,
    pub size: u64,
    /// Sent now (false: the registry had it).
    pub sent: bool,
}

/// What a push did: the reference, the manifest's digest, each layer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pushed {
    pub registry: String,
    pub reference: String,
    pub digest: String,
    pub layers: Vec<PushedBlob>,
    /// The bytes sent, the manifest's included.
    pub bytes_sent: u64,
}

/// `sha256:<hex>` of `bytes`.
pub fn digest_of(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// A tag as the distribution spec allows it: `[A-Za-z0-9_][A-Za-z0-9._-]{0,127}`.
pub fn valid_tag(tag: &str) -> bool {
    let bytes = tag.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 128
        && (bytes[0].is_ascii_alphanumeric() || bytes[0] == b'_')
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

impl RegistryClient {
    fn check(&self, repo: &str, tag: &str) -> Result<(), ActivityError> {
        if !valid_repository(repo) {
            return Err(ActivityError::permanent(format!(
                "{repo}:{tag} at {}: `{repo}` is not a repository name",
                self.addr
            )));
        }
        if !valid_tag(tag) {
            return Err(ActivityError::permanent(format!(
                "{repo}:{tag} at {}: `{tag}` is not a tag (letters, digits, `.`, `_`, `-`)",
                self.addr
            )));
        }
        Ok(())
    }

    async fn send(
        &self,
        what: &str,
        request: reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, ActivityError> {
        request.send().await.map_err(|e| {
            ActivityError::transient(format!(
                "{what} at {}: {}",
                self.addr,
                http::without_url(&e)
            ))
        })
    }

    async fn refusal(&self, what: &str, response: reqwest::Response) -> ActivityError {
        let status = response.status();
        let body = response.text().await.unwrap_or_default();
        http::refused(
            status,
            format!("{what} at {}: {status}{}", self.addr, errors(status, &body)),
        )
    }

    /// `HEAD /v2/<repo>/blobs/<digest>`: whether the registry has the blob.
    pub async fn has_blob(&self, repo: &str, digest: &str) -> Result<bool, ActivityError> {
        let what = format!("HEAD /v2/{repo}/blobs/{digest}");
        let url = format!("{}/v2/{repo}/blobs/{digest}", self.addr);
        let response = self.send(&what, self.http.head(&url)).await?;
        match response.status() {
            s if s.is_success() => Ok(true),
            StatusCode::NOT_FOUND => Ok(false),
            _ => Err(self.refusal(&what, response).await),
        }
    }

    /// A blob sent whole: `POST /v2/<repo>/blobs/uploads/`, then `PUT` to the upload's
    /// `Location` with `?digest=`; the registry checks the digest.
    pub async fn push_blob(
        &self,
        repo: &str,
        digest: &str,
        bytes: Vec<u8>,
    ) -> Result<(), ActivityError> {
        let what = format!("POST /v2/{repo}/blobs/uploads/");
        let url = format!("{}/v2/{repo}/blobs/uploads/", self.addr);
        let response = self.send(&what, self.http.post(&url)).await?;
        if response.status() != StatusCode::ACCEPTED {
            return Err(self.refusal(&what, response).await);
        }
        let location = response
            .headers()
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        let upload = self.same_registry(&location).ok_or_else(|| {
            ActivityError::permanent(format!(
                "{what} at {}: the upload's location `{location}` is not on this registry",
                self.addr
            ))
        })?;
        let sep = if upload.contains('?') { '&' } else { '?' };
        let url = format!("{upload}{sep}digest={digest}");
        let what = format!("PUT the upload of {digest} to {repo}");
        let request = self
            .http
            .put(&url)
            .timeout(UPLOAD_TIMEOUT)
            .header(CONTENT_TYPE, "application/octet-stream")
            .body(bytes);
        let response = self.send(&what, request).await?;
        if response.status() != StatusCode::CREATED {
            return Err(self.refusal(&what, response).await);
        }
        Ok(())
    }

    /// An upload's `Location`: a path on this registry, or a URL of it; anything else is
    /// not followed.
    fn same_registry(&self, location: &str) -> Option<String> {
        if location.starts_with("/v2/") {
            return Some(format!("{}{location}", self.addr));
        }
        location
            .strip_prefix(self.addr.as_str())
            .filter(|rest| rest.starts_with("/v2/"))
            .map(|_| location.to_string())
    }

    /// `PUT /v2/<repo>/manifests/<tag>`: the manifest's digest.
    pub async fn put_manifest(
        &self,
        repo: &str,
        tag: &str,
        manifest: &Manifest,
    ) -> Result<(String, u64), ActivityError> {
        self.check(repo, tag)?;
        let body = serde_json::to_vec(manifest)
            .map_err(|e| ActivityError::permanent(format!("the manifest of {repo}:{tag}: {e}")))?;
        let (digest, size) = (digest_of(&body), body.len() as u64);
        let media_type = manifest.media_type.as_deref().unwrap_or(OCI_MANIFEST);
        let what = format!("PUT /v2/{repo}/manifests/{tag}");
        let url = format!("{}/v2/{repo}/manifests/{tag}", self.addr);
        let request = self
            .http
            .put(&url)
            .header(CONTENT_TYPE, media_type)
            .body(body);
        let response = self.send(&what, request).await?;
        if response.status() != StatusCode::CREATED {
            return Err(self.refusal(&what, response).await);
        }
        Ok((digest, size))
    }

    /// `GET /v2/<repo>/manifests/<tag>`, an OCI or Docker image manifest. A tag the
    /// registry lacks is a permanent error naming the reference and the registry.
    pub async fn manifest(&self, repo: &str, tag: &str) -> Result<Manifest, ActivityError> {
        self.check(repo, tag)?;
        let what = format!("GET /v2/{repo}/manifests/{tag}");
        let url = format!("{}/v2/{repo}/manifests/{tag}", self.addr);
        let request = self
            .http
            .get(&url)
            .header(ACCEPT, format!("{OCI_MANIFEST}, {DOCKER_MANIFEST}"));
        let response = self.send(&what, request).await?;
        let status = response.status();
        if status == StatusCode::NOT_FOUND {
            let body = response.text().await.unwrap_or_default();
            return Err(ActivityError::permanent(format!(
                "{repo}:{tag} is not in the registry at {}{}",
                self.addr,
                errors(status, &body)
            )));
        }
        if !status.is_success() {
            return Err(self.refusal(&what, response).await);
        }
        let text = response.text().await.map_err(|e| {
            ActivityError::transient(format!(
                "{what} at {}: reading the answer: {}",
                self.addr,
                http::without_url(&e)
            ))
        })?;
        serde_json::from_str(&text).map_err(|e| {
            ActivityError::permanent(format!(
                "{what} at {}: not an image manifest: {e}",
                self.addr
            ))
        })
    }

    /// Pushes `layers` (and `config`, OCI's empty one when none) as one manifest tagged
    /// `tag` in `repo`. A blob the registry has is not sent again.
    pub async fn push_artifact(
        &self,
        repo: &str,
        tag: &str,
        artifact_type: Option<&str>,
        config: Option<Blob>,
        layers: &[Blob],
        annotations: BTreeMap<String, String>,
    ) -> Result<Pushed, ActivityError> {
        self.check(repo, tag)?;
        let config = config.unwrap_or(Blob {
            media_type: OCI_EMPTY.into(),
            title: None,
            source: BlobSource::Bytes(b"{}".to_vec()),
        });
        let mut bytes_sent = 0;
        let mut pushed = Vec::new();
        for blob in std::iter::once(&config).chain(layers) {
            let bytes = blob.bytes().await?;
            let digest = digest_of(&bytes);
            let size = bytes.len() as u64;
            let sent = !self.has_blob(repo, &digest).await?;
            if sent {
                self.push_blob(repo, &digest, bytes).await?;
                bytes_sent += size;
            }
            pushed.push(PushedBlob {
                title: blob.title.clone(),
                media_type: blob.media_type.clone(),
                digest,
                size,
                sent,
            });
        }
        let descriptor = |p: &PushedBlob| Descriptor {
            media_type: p.media_type.clone(),
            digest: p.digest.clone(),
            size: p.size,
            annotations: p
                .title
                .iter()
                .map(|t| (TITLE.to_string(), t.clone()))
                .collect(),
        };
        let manifest = Manifest {
            schema_version: 2,
            media_type: Some(OCI_MANIFEST.into()),
            artifact_type: artifact_type.map(str::to_string),
            config: descriptor(&pushed[0]),
            layers: pushed[1..].iter().map(descriptor).collect(),
            annotations,
        };
        let (digest, size) = self.put_manifest(repo, tag, &manifest).await?;
        Ok(Pushed {
            registry: self.addr.clone(),
            reference: format!("{repo}:{tag}"),
            digest,
            layers: pushed.split_off(1),
            bytes_sent: bytes_sent + size,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_follow_the_distribution_grammar() {
        for ok in ["v1.32.4-k3s1", "latest", "_x", "1"] {
            assert!(valid_tag(ok), "{ok}");
        }
        for bad in [
            "",
            "v1.32.4+k3s1",
            "-a",
            ".a",
            "a/b",
            "a:b",
            &"a".repeat(129),
        ] {
            assert!(!valid_tag(bad), "{bad}");
        }
    }

    #[test]
    fn an_artifact_manifest_is_read_as_oras_writes_it() {
        let text = r#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",
          "artifactType":"application/vnd.foundry.k3s.v1",
          "config":{"mediaType":"application/vnd.oci.empty.v1+json","digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":2,"data":"e30="},
          "layers":[{"mediaType":"application/vnd.foundry.k3s.binary.v1","digest":"sha256:aa","size":3,"annotations":{"org.opencontainers.image.title":"k3s"}}]}"#;
        let m: Manifest = serde_json::from_str(text).expect("a manifest");
        assert_eq!(m.layer("k3s").map(|l| l.digest.as_str()), Some("sha256:aa"));
        assert!(m.layer("install.sh").is_none());
        assert_eq!(
            digest_of(b"{}"),
            "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
        );
    }

    #[test]
    fn an_upload_location_elsewhere_is_not_followed() {
        let c = RegistryClient::new("http://10.0.0.5:5000").expect("client");
        assert_eq!(
            c.same_registry("/v2/a/blobs/uploads/1?x=y").as_deref(),
            Some("http://10.0.0.5:5000/v2/a/blobs/uploads/1?x=y")
        );
        assert_eq!(
            c.same_registry("http://10.0.0.5:5000/v2/a/blobs/uploads/1")
                .as_deref(),
            Some("http://10.0.0.5:5000/v2/a/blobs/uploads/1")
        );
        assert_eq!(c.same_registry("http://10.0.0.6:5000/v2/a"), None);
        assert_eq!(c.same_registry("http://10.0.0.5:50001/v2/a"), None);
        assert_eq!(c.same_registry(""), None);
    }
}
