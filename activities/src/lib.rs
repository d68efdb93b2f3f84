//! Foundry's activities. Each file is one activity: a serde input and output, a read-only
//! `probe` and an idempotent `apply`, built on `foundry_core::Activity`.

pub mod container;
pub mod dns;
mod http;
pub mod k3s;
pub mod kube;
pub mod local;
pub mod openbao;
pub mod registry;
pub mod ssh;
