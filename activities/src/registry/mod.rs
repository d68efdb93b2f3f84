//! An OCI registry through the distribution API (`/v2/`, reqwest): whether it answers, its
//! repositories and their tags, and waiting until it answers. Zot serves this API in real
//! deployments; the lab runs a stand-in for Zot, Debian's `docker-registry` (the Docker
//! distribution registry), which serves the same API.

mod client;
mod ready;

pub use client::{API_VERSION_HEADER, RegistryClient};
pub use ready::{RegistryReady, RegistryUp};
