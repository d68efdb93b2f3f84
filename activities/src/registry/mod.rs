//! An OCI registry through the distribution API (`/v2/`, reqwest): whether it answers, its
//! repositories and their tags, waiting until it answers, files pushed as an OCI artifact
//! and looked up by tag, and a blob fetched by a host over SSH. Zot serves this API in real
//! deployments; the lab runs a stand-in for Zot, Debian's `docker-registry` (the Docker
//! distribution registry), which serves the same API.

pub mod artifact;
mod client;
mod fetch;
mod ready;
mod resolve;

pub use artifact::{Blob, BlobSource, Descriptor, Manifest, Pushed, PushedBlob};
pub use client::{API_VERSION_HEADER, RegistryClient};
pub use fetch::SshFetchBlob;
pub use ready::{RegistryReady, RegistryUp};
pub use resolve::{ArtifactFiles, ResolveArtifact};
