//! The cluster's API through the `kube` crate: nodes Ready, drain and removal, and charts
//! as K3s `HelmChart` resources (no helm binary).
//!
//! The kubeconfig is a secret (it holds the client key): an activity's input carries only
//! its [`foundry_core::SecretRef`], revealed with `cx.reveal` when the client is made.

mod apply;
mod chart;
mod client;
mod drain;
mod nodes;
mod release;

pub use apply::{ApplyObjects, ApplyObjectsOutput, KubeObject, object_live};
pub use chart::{
    ApplyHelmChart, CHART_CONTENT_LIMIT, ChartArchive, ChartOutput, ValuesSecret,
    read_chart_archive,
};
pub use client::{KubeAccess, api_error};
pub use drain::{
    Cordon, CordonOutput, DeleteNode, DeleteNodeOutput, DrainNode, DrainOutput, Uncordon,
};
pub use nodes::{NodeInfo, NodesReady, NodesReadyOutput, cluster_nodes, vip_holder};
pub use release::{ChartLive, chart_live, release_chart_version};
