//! Contour, the stack's ingress controller (Envoy as its proxy), from the Contour
//! project's own chart: `contour` at https://projectcontour.github.io/helm-charts/
//! (github.com/projectcontour/helm-charts). Contour's getting-started guide long sent
//! people to Bitnami's chart; since Bitnami's catalog change of August 2025 (its
//! versioned images moved to `bitnamilegacy`, without updates), the project publishes
//! this chart itself, a continuation of Bitnami's with the same values layout and
//! upstream's images. Pinned at 0.7.0 (Contour 1.33.6), the newest its repository's
//! index lists. Installed into `projectcontour`, as upstream's own manifests do.

use serde_json::{Value, json};

use super::ChartComponent;
use crate::config::StackConfig;
use crate::config::charts::ChartConfig;

pub static CONTOUR: ChartComponent = ChartComponent {
    name: "contour",
    aliases: &[],
    about: "Contour: the cluster's ingress (Envoy), a chart",
    needs: &["k3s"],
    release: "contour",
    namespace: "projectcontour",
    repo: "https://projectcontour.github.io/helm-charts/",
    chart: "contour",
    version: "0.7.0",
    defaults,
    config,
    then_apply: |_| Ok(Vec::new()),
    ready: |_| None,
};

/// The chart installs its CRDs (HTTPProxy and the rest), which Foundry relies on.
fn defaults() -> Value {
    json!({ "contour": { "manageCRDs": true } })
}

fn config(stack: &StackConfig) -> ChartConfig {
    stack
        .components
        .as_ref()
        .map(|c| c.contour.clone())
        .unwrap_or_default()
}
