//! Foundry's workflows: what `foundry` starts and resumes, composed of activities through
//! the engine.

pub mod bench;
pub mod chart;
pub mod component;
pub mod config;
pub mod dns;
pub mod host;
mod image;
mod install;
pub mod k3s;
pub mod keys;
pub mod lab;
pub mod local;
pub mod network;
pub mod openbao;
pub mod registry;
pub mod secret_ref;
pub mod secrets;
pub mod setup;
pub mod stack;
pub mod upgrade;
pub mod version;

use foundry_core::Registry;

/// Every workflow this build can start or resume.
pub fn registry() -> Registry {
    Registry::new()
        .register(local::LocalPlan)
        .register(bench::EngineBench)
        .register(lab::LabUp)
        .register(lab::LabDown)
        .register(host::HostConfigure)
        .register(keys::KeysMove)
        .register(dns::DnsInstall)
        .register(openbao::OpenbaoInstall)
        .register(registry::RegistryInstall)
        .register(chart::ChartInstall)
        .register(stack::StackInstall)
        .register(upgrade::StackUpgrade)
        .register(openbao::component::OpenbaoUpgrade)
        .register(setup::Setup)
        .register(k3s::init::K3sInit)
        .register(k3s::add::K3sNodeAdd)
        .register(k3s::component::K3sCluster)
        .register(k3s::remove::K3sNodeRemove)
        .register(k3s::upgrade::K3sUpgrade)
}
