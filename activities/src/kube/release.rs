//! A chart as it is now, read through the API: its HelmChart (the version asked for, the
//! helm-controller's `Failed` condition), the install Job it names, and the newest release
//! Secret (labels `owner=helm,name=<name>`): its status and the version of the chart it
//! deployed, read from the release record itself (base64 of gzipped JSON, as helm keeps
//! it), not from the HelmChart.

use std::io::Read;

use ::kube::Api;
use ::kube::api::{ApiResource, DynamicObject, GroupVersionKind, ListParams};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use foundry_core::{ActivityCx, ActivityError};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::client::{KubeAccess, api_error};

/// The HelmChart resource of K3s's helm-controller.
pub(super) fn helmchart_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("helm.cattle.io", "v1", "HelmChart"),
        "helmcharts",
    )
}

/// The newest release among a chart's release Secrets: the highest `version` label.
pub(super) fn newest_release<'a>(
    secrets: impl Iterator<Item = &'a ObjectMeta>,
) -> Option<(u64, &'a ObjectMeta)> {
    secrets
        .filter_map(|meta| {
            let version: u64 = meta.labels.as_ref()?.get("version")?.parse().ok()?;
            Some((version, meta))
        })
        .max_by_key(|(version, _)| *version)
}

/// A chart, as the API shows it now.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChartLive {
    /// There is a HelmChart of that name.
    pub chart: bool,
    /// The version its spec asks for.
    pub asked_version: Option<String>,
    /// The helm-controller's `Failed` condition, when it holds: its message.
    pub chart_failed: Option<String>,
    /// The install Job the HelmChart names, and its state: `complete`, `failed`,
    /// `running` (or `missing`).
    pub job: Option<String>,
    pub job_state: Option<String>,
    /// The newest release Secret: its name, revision, status (`deployed`, `failed`, …)
    /// and the version of the chart it deployed.
    pub release: Option<String>,
    pub revision: Option<u64>,
    pub release_status: Option<String>,
    pub chart_version: Option<String>,
}

impl ChartLive {
    /// Installed as asked: the Job complete and the newest release deployed.
    pub fn deployed(&self) -> bool {
        self.chart
            && self.job_state.as_deref() == Some("complete")
            && self.release_status.as_deref() == Some("deployed")
    }
}

/// The chart version a release record names: the record is base64 (of gzipped JSON, as
/// helm writes it; plain JSON is read too).
pub fn release_chart_version(record: &[u8]) -> Option<String> {
    let text: Vec<u8> = record
        .iter()
        .copied()
        .filter(|b| !b.is_ascii_whitespace())
        .collect();
    let bytes = STANDARD.decode(text).ok()?;
    let json = if bytes.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        // A record is a few hundred KiB at most; a bound keeps a hostile one small.
        flate2::read::GzDecoder::new(bytes.as_slice())
            .take(16 * 1024 * 1024)
            .read_to_end(&mut out)
            .ok()?;
        out
    } else {
        bytes
    };
    let release: Value = serde_json::from_slice(&json).ok()?;
    release
        .pointer("/chart/metadata/version")
        .and_then(Value::as_str)
        .map(str::to_string)
}

/// The HelmChart `name` in `namespace` (its release in `target`), as it is now.
pub async fn chart_live(
    cx: &ActivityCx,
    access: &KubeAccess,
    namespace: &str,
    name: &str,
    target: &str,
) -> Result<ChartLive, ActivityError> {
    let client = access.client(cx).await?;
    let place = format!("HelmChart {namespace}/{name} at {}", access.place());
    let charts: Api<DynamicObject> =
        Api::namespaced_with(client.clone(), namespace, &helmchart_resource());
    let mut live = ChartLive::default();
    let chart = charts
        .get_opt(name)
        .await
        .map_err(|e| api_error("reading the HelmChart", &place, e))?;
    if let Some(chart) = &chart {
        live.chart = true;
        live.asked_version = chart
            .data
            .pointer("/spec/version")
            .and_then(Value::as_str)
            .map(str::to_string);
        live.chart_failed = chart
            .data
            .pointer("/status/conditions")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .find(|c| c["type"] == "Failed" && c["status"] == "True")
            .map(|c| c["message"].as_str().unwrap_or("").to_string());
        let job_name = chart
            .data
            .pointer("/status/jobName")
            .and_then(Value::as_str)
            .filter(|n| !n.is_empty())
            .map(str::to_string)
            .unwrap_or_else(|| format!("helm-install-{name}"));
        let jobs: Api<Job> = Api::namespaced(client.clone(), namespace);
        let job = jobs
            .get_opt(&job_name)
            .await
            .map_err(|e| api_error(&format!("reading Job {job_name}"), &place, e))?;
        live.job_state = Some(job_state(job.as_ref()).into());
        live.job = Some(job_name);
    }
    let secrets: Api<Secret> = Api::namespaced(client, target);
    let params = ListParams::default().labels(&format!("owner=helm,name={name}"));
    let listed = secrets
        .list(&params)
        .await
        .map_err(|e| api_error("listing the chart's releases", &place, e))?;
    if let Some((revision, meta)) = newest_release(listed.items.iter().map(|s| &s.metadata)) {
        let secret = listed.items.iter().find(|s| s.metadata.name == meta.name);
        live.release = meta.name.clone();
        live.revision = Some(revision);
        live.release_status = meta.labels.as_ref().and_then(|l| l.get("status").cloned());
        live.chart_version = secret
            .and_then(|s| s.data.as_ref())
            .and_then(|d| d.get("release"))
            .and_then(|record| release_chart_version(&record.0));
    }
    Ok(live)
}

/// A Job as its conditions say: `missing`, `failed`, `complete` or `running`.
pub(crate) fn job_state(job: Option<&Job>) -> &'static str {
    let Some(job) = job else {
        return "missing";
    };
    let conditions = job
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .cloned()
        .unwrap_or_default();
    let holds = |kind: &str| {
        conditions
            .iter()
            .any(|c| c.type_ == kind && c.status == "True")
    };
    if holds("Failed") {
        "failed"
    } else if holds("Complete") {
        "complete"
    } else {
        "running"
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    #[test]
    fn a_release_records_chart_version_is_read_gzipped_or_plain() {
        let record =
            br#"{"name":"contour","chart":{"metadata":{"name":"contour","version":"0.7.0"}}}"#;
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(record).expect("gzip");
        let gzipped = STANDARD.encode(gz.finish().expect("gzip"));
        assert_eq!(
            release_chart_version(gzipped.as_bytes()).as_deref(),
            Some("0.7.0")
        );
        let plain = STANDARD.encode(record);
        assert_eq!(
            release_chart_version(plain.as_bytes()).as_deref(),
            Some("0.7.0")
        );
        assert_eq!(release_chart_version(b"not base64 at all!"), None);
    }
}
