//! A chart installed without a helm binary: a K3s `HelmChart` (helm.cattle.io/v1) applied
//! server-side, its secret values in Kubernetes Secrets named by `valuesSecrets`, and the
//! install waited for. The resource has no success condition of its own: success is the
//! `helm-install-<name>` Job complete for this spec and the newest release Secret (labels
//! `owner=helm,name=<name>`) at `status=deployed`; failure is the Job failed, reported
//! with the tail of its pod's log (helm's own message).
//!
//! K3s's helm-controller runs one Job per spec, named in the chart's `status.jobName`, and
//! replaces it when the spec (or a values Secret) changes; until it does, the old Job of
//! the previous spec is still there, finished. So that it is not taken for this spec's,
//! an apply that changes anything records the uid of the Job it supersedes on the chart
//! (`foundry.dev/superseded-job`): this spec's Job is any other.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use ::kube::Api;
use ::kube::api::{DynamicObject, ListParams, LogParams, Patch, PatchParams};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use foundry_core::{Activity, ActivityCx, ActivityError, InDoubt, SecretRef};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Pod, Secret};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::client::{KubeAccess, api_error};
use super::nodes::POLL;
use super::release::{helmchart_resource, newest_release};

/// The largest `chartContent` (base64) a HelmChart may carry: Kubernetes stores an object
/// of at most about 1.5 MiB in etcd, and K3s's HelmChart refuses content over 1 MiB.
pub const CHART_CONTENT_LIMIT: usize = 1024 * 1024;
const MANAGER: &str = "foundry";
const SPEC_HASH: &str = "foundry.dev/spec-hash";
const SUPERSEDED: &str = "foundry.dev/superseded-job";

/// A chart archive (.tgz) on this machine, as helm reads it: the name and version its
/// `Chart.yaml` gives.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChartArchive {
    pub name: String,
    pub version: String,
}

/// The archive at `path` and its `chartContent` (base64): refused when it is not a chart
/// helm can read, or when its content is over [`CHART_CONTENT_LIMIT`], each with what to
/// do.
pub fn read_chart_archive(path: &std::path::Path) -> Result<(ChartArchive, String), String> {
    use std::io::Read;
    let shown = path.display();
    let bytes = std::fs::read(path).map_err(|e| format!("reading the chart {shown}: {e}"))?;
    let encoded = STANDARD.encode(&bytes);
    if encoded.len() > CHART_CONTENT_LIMIT {
        return Err(format!(
            "the chart {shown} is {} bytes, {} once base64-encoded, over the 1 MiB a \
             HelmChart's chartContent may hold\nhint: serve the chart from a registry (the \
             stack's own) and name it with chart and repo instead",
            bytes.len(),
            encoded.len()
        ));
    }
    let not_chart = |why: String| {
        format!(
            "{shown} is not a chart archive helm can read: {why}\nhint: make one with \
             `helm package DIR`, or `helm pull CHART --version V` where the repository is \
             reachable"
        )
    };
    let gz = flate2::read::GzDecoder::new(bytes.as_slice());
    let mut tar = tar::Archive::new(gz);
    let entries = tar.entries().map_err(|e| not_chart(e.to_string()))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| not_chart(e.to_string()))?;
        let name = entry.path().map_err(|e| not_chart(e.to_string()))?;
        let parts: Vec<_> = name.components().collect();
        if parts.len() != 2 || name.file_name() != Some(std::ffi::OsStr::new("Chart.yaml")) {
            continue;
        }
        let mut text = String::new();
        entry
            .by_ref()
            .take(1024 * 1024)
            .read_to_string(&mut text)
            .map_err(|e| not_chart(format!("its Chart.yaml: {e}")))?;
        let field = |key: &str| {
            text.lines().find_map(|line| {
                let value = line.strip_prefix(key)?.strip_prefix(':')?;
                let value = value.split(" #").next()?.trim().trim_matches(['"', '\'']);
                (!value.is_empty()).then(|| value.to_string())
            })
        };
        return match (field("name"), field("version")) {
            (Some(name), Some(version)) => Ok((ChartArchive { name, version }, encoded)),
            _ => Err(not_chart(
                "its Chart.yaml gives no name or no version".into(),
            )),
        };
    }
    Err(not_chart("it holds no CHART/Chart.yaml".into()))
}

/// One secret value of a chart: kept in Secret `secret` (in the chart's namespace) under
/// `key`, as a values document that sets `path` (dotted, e.g. `auth.password`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ValuesSecret {
    pub secret: String,
    pub key: String,
    pub path: String,
    pub value: SecretRef,
}

/// A chart installed (or upgraded) through a HelmChart, waited for at most `timeout_s`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ApplyHelmChart {
    #[serde(flatten)]
    pub access: KubeAccess,
    /// Where the HelmChart lives (K3s watches kube-system).
    pub namespace: String,
    pub name: String,
    pub chart: String,
    #[serde(default)]
    pub repo: Option<String>,
    #[serde(default)]
    pub version: Option<String>,
    #[serde(default)]
    pub target_namespace: Option<String>,
    /// Non-secret values (a mapping), sent as the chart's `valuesContent`.
    #[serde(default)]
    pub values: Value,
    #[serde(default)]
    pub values_secrets: Vec<ValuesSecret>,
    /// An offline chart: a local .tgz sent as `chartContent`.
    #[serde(default)]
    pub chart_content: Option<PathBuf>,
    pub timeout_s: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChartOutput {
    /// The install Job that completed for this spec.
    pub job: String,
    /// The release Secret found deployed.
    pub release: String,
    pub status: String,
    /// This apply sent a changed spec or values (a new Job ran); false when the chart was
    /// already installed as asked. A step settled in doubt says true: it may have.
    #[serde(default)]
    pub changed: bool,
}

/// `{a: {b: value}}` for path `a.b`.
fn nested(path: &str, value: &str) -> Value {
    path.rsplit('.').fold(
        Value::String(value.to_string()),
        |inner, part| json!({ part: inner }),
    )
}

/// What is sent, prepared once: the HelmChart's spec, its hash, and the values Secrets.
struct Prepared {
    spec: Value,
    hash: String,
    /// Secret name -> key -> bytes.
    secrets: BTreeMap<String, BTreeMap<String, Vec<u8>>>,
}

impl ApplyHelmChart {
    fn place(&self) -> String {
        format!(
            "HelmChart {}/{} at {}",
            self.namespace,
            self.name,
            self.access.place()
        )
    }

    fn target(&self) -> &str {
        self.target_namespace.as_deref().unwrap_or(&self.namespace)
    }

    fn prepare(&self, cx: &ActivityCx) -> Result<Prepared, ActivityError> {
        let mut spec = json!({ "chart": self.chart });
        if let Some(repo) = &self.repo {
            spec["repo"] = json!(repo);
        }
        if let Some(version) = &self.version {
            spec["version"] = json!(version);
        }
        if let Some(target) = &self.target_namespace {
            spec["targetNamespace"] = json!(target);
        }
        match &self.values {
            Value::Null => {}
            Value::Object(map) if map.is_empty() => {}
            Value::Object(_) => spec["valuesContent"] = json!(self.values.to_string()),
            other => {
                return Err(ActivityError::permanent(format!(
                    "{}: the chart's values are not a mapping: {other}\nhint: give values as \
                     a YAML mapping in the config",
                    self.place()
                )));
            }
        }
        if let Some(path) = &self.chart_content {
            let (_, encoded) = read_chart_archive(path)
                .map_err(|e| ActivityError::permanent(format!("{}: {e}", self.place())))?;
            spec["chartContent"] = json!(encoded);
        }
        let mut secrets: BTreeMap<String, BTreeMap<String, Vec<u8>>> = BTreeMap::new();
        for s in &self.values_secrets {
            let value = cx.reveal(&s.value)?;
            let document = nested(&s.path, value.expose()).to_string();
            secrets
                .entry(s.secret.clone())
                .or_default()
                .insert(s.key.clone(), document.into_bytes());
        }
        if !secrets.is_empty() {
            spec["valuesSecrets"] = Value::Array(
                secrets
                    .iter()
                    .map(|(name, keys)| json!({ "name": name, "keys": keys.keys().collect::<Vec<_>>() }))
                    .collect(),
            );
        }
        // The hash covers the spec (which names the secrets, not their values).
        let hash = hex::encode(Sha256::digest(spec.to_string().as_bytes()));
        Ok(Prepared {
            spec,
            hash,
            secrets,
        })
    }

    /// Whether the values Secrets hold these bytes already.
    async fn secrets_current(
        &self,
        client: &::kube::Client,
        prepared: &Prepared,
    ) -> Result<bool, ActivityError> {
        let api: Api<Secret> = Api::namespaced(client.clone(), &self.namespace);
        for (name, keys) in &prepared.secrets {
            let live = api
                .get_opt(name)
                .await
                .map_err(|e| api_error(&format!("reading Secret {name}"), &self.place(), e))?;
            let data = live.and_then(|s| s.data).unwrap_or_default();
            if keys
                .iter()
                .any(|(key, bytes)| data.get(key).map(|b| &b.0) != Some(bytes))
            {
                return Ok(false);
            }
        }
        Ok(true)
    }

    async fn apply_secrets(
        &self,
        client: &::kube::Client,
        prepared: &Prepared,
    ) -> Result<(), ActivityError> {
        let api: Api<Secret> = Api::namespaced(client.clone(), &self.namespace);
        for (name, keys) in &prepared.secrets {
            let data: BTreeMap<&String, String> =
                keys.iter().map(|(k, v)| (k, STANDARD.encode(v))).collect();
            let secret = json!({
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {
                    "name": name,
                    "namespace": self.namespace,
                    "labels": { "app.kubernetes.io/managed-by": "foundry" },
                },
                "type": "Opaque",
                "data": data,
            });
            api.patch(
                name,
                &PatchParams::apply(MANAGER).force(),
                &Patch::Apply(&secret),
            )
            .await
            .map_err(|e| api_error(&format!("applying Secret {name}"), &self.place(), e))?;
        }
        Ok(())
    }

    /// The live chart's annotation `key`.
    fn annotation(chart: &Option<DynamicObject>, key: &str) -> Option<String> {
        chart
            .as_ref()
            .and_then(|c| c.metadata.annotations.as_ref())
            .and_then(|a| a.get(key).cloned())
    }

    async fn chart(
        &self,
        api: &Api<DynamicObject>,
    ) -> Result<Option<DynamicObject>, ActivityError> {
        api.get_opt(&self.name)
            .await
            .map_err(|e| api_error("reading the HelmChart", &self.place(), e))
    }

    fn job_name(&self, chart: &Option<DynamicObject>) -> String {
        chart
            .as_ref()
            .and_then(|c| c.data.pointer("/status/jobName"))
            .and_then(Value::as_str)
            .filter(|n| !n.is_empty())
            .map(str::to_string)
            .unwrap_or_else(|| format!("helm-install-{}", self.name))
    }

    async fn job(&self, client: &::kube::Client, name: &str) -> Result<Option<Job>, ActivityError> {
        let api: Api<Job> = Api::namespaced(client.clone(), &self.namespace);
        api.get_opt(name)
            .await
            .map_err(|e| api_error(&format!("reading Job {name}"), &self.place(), e))
    }

    /// The newest release Secret of this chart: its name and status.
    async fn release(
        &self,
        client: &::kube::Client,
    ) -> Result<Option<(String, String)>, ActivityError> {
        let api: Api<Secret> = Api::namespaced(client.clone(), self.target());
        let params = ListParams::default().labels(&format!("owner=helm,name={}", self.name));
        let listed = api
            .list_metadata(&params)
            .await
            .map_err(|e| api_error("listing the chart's releases", &self.place(), e))?;
        let newest = newest_release(listed.items.iter().map(|s| &s.metadata));
        Ok(newest.map(|(_, meta)| {
            let status = meta
                .labels
                .as_ref()
                .and_then(|l| l.get("status").cloned())
                .unwrap_or_default();
            (meta.name.clone().unwrap_or_default(), status)
        }))
    }

    /// The tail of the Job's pod log, redacted of every secret this run knows.
    async fn job_log(&self, cx: &ActivityCx, client: &::kube::Client, job: &str) -> String {
        let api: Api<Pod> = Api::namespaced(client.clone(), &self.namespace);
        let params = ListParams::default().labels(&format!("job-name={job}"));
        let Ok(pods) = api.list(&params).await else {
            return "(the Job's pod could not be listed)".into();
        };
        let Some(pod) = pods
            .items
            .iter()
            .max_by_key(|p| p.metadata.creation_timestamp.clone())
        else {
            return "(the Job has no pod left)".into();
        };
        let name = pod.metadata.name.clone().unwrap_or_default();
        let params = LogParams {
            tail_lines: Some(20),
            ..LogParams::default()
        };
        match api.logs(&name, &params).await {
            Ok(log) => cx.redacted(log.trim_end()),
            Err(e) => format!("(the log of pod {name} could not be read: {e})"),
        }
    }

    /// This spec's install, as it stands: done, failed (with the log), or not yet.
    async fn outcome(
        &self,
        cx: &ActivityCx,
        client: &::kube::Client,
        chart: &Option<DynamicObject>,
        prepared: &Prepared,
    ) -> Result<Option<ChartOutput>, ActivityError> {
        if Self::annotation(chart, SPEC_HASH).as_deref() != Some(prepared.hash.as_str()) {
            return Ok(None);
        }
        let superseded = Self::annotation(chart, SUPERSEDED).unwrap_or_default();
        let job_name = self.job_name(chart);
        let Some(job) = self.job(client, &job_name).await? else {
            return Ok(None);
        };
        if job.metadata.uid.as_deref().unwrap_or("") == superseded {
            return Ok(None);
        }
        let state = super::release::job_state(Some(&job));
        if state == "failed" {
            let log = self.job_log(cx, client, &job_name).await;
            return Err(ActivityError::permanent(format!(
                "{}: the install Job {job_name} failed; its log ends:\n{log}\nhint: fix the \
                 chart's values in the config, then `foundry workflow resume`",
                self.place()
            )));
        }
        if state != "complete" {
            return Ok(None);
        }
        match self.release(client).await? {
            Some((release, status)) if status == "deployed" => Ok(Some(ChartOutput {
                job: job_name,
                release,
                status,
                changed: true,
            })),
            _ => Ok(None),
        }
    }
}

impl Activity for ApplyHelmChart {
    type Output = ChartOutput;

    fn kind(&self) -> &'static str {
        "kube-helm-chart"
    }

    fn in_doubt(&self) -> InDoubt {
        InDoubt::Probe
    }

    async fn probe(&self, cx: &ActivityCx) -> Result<Option<ChartOutput>, ActivityError> {
        let prepared = self.prepare(cx)?;
        let client = self.access.client(cx).await?;
        if !self.secrets_current(&client, &prepared).await? {
            return Ok(None);
        }
        let api: Api<DynamicObject> =
            Api::namespaced_with(client.clone(), &self.namespace, &helmchart_resource());
        let chart = self.chart(&api).await?;
        // A failed install is not the effect: the probe says only "not there"; an API
        // that cannot be asked is said.
        match self.outcome(cx, &client, &chart, &prepared).await {
            Ok(found) => Ok(found),
            Err(e) if e.transient => Err(e),
            Err(_) => Ok(None),
        }
    }

    async fn apply(&self, cx: &ActivityCx) -> Result<ChartOutput, ActivityError> {
        let prepared = self.prepare(cx)?;
        let client = self.access.client(cx).await?;
        let api: Api<DynamicObject> =
            Api::namespaced_with(client.clone(), &self.namespace, &helmchart_resource());
        let live = self.chart(&api).await?;
        let secrets_current = self.secrets_current(&client, &prepared).await?;
        let unchanged = secrets_current
            && Self::annotation(&live, SPEC_HASH).as_deref() == Some(prepared.hash.as_str());
        let superseded = if unchanged {
            Self::annotation(&live, SUPERSEDED).unwrap_or_default()
        } else {
            match (&live, self.job(&client, &self.job_name(&live)).await?) {
                (_, Some(job)) => job.metadata.uid.unwrap_or_default(),
                _ => String::new(),
            }
        };
        if !secrets_current {
            self.apply_secrets(&client, &prepared).await?;
        }
        let chart = json!({
            "apiVersion": "helm.cattle.io/v1",
            "kind": "HelmChart",
            "metadata": {
                "name": self.name,
                "namespace": self.namespace,
                "annotations": { SPEC_HASH: prepared.hash, SUPERSEDED: superseded },
            },
            "spec": prepared.spec,
        });
        api.patch(
            &self.name,
            &PatchParams::apply(MANAGER).force(),
            &Patch::Apply(&chart),
        )
        .await
        .map_err(|e| api_error("applying the HelmChart", &self.place(), e))?;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(self.timeout_s);
        loop {
            let live = self.chart(&api).await?;
            if let Some(done) = self.outcome(cx, &client, &live, &prepared).await? {
                return Ok(ChartOutput {
                    changed: !unchanged,
                    ..done
                });
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(ActivityError::transient(format!(
                    "{}: the chart is not installed after {} s (its Job {} not complete for \
                     this spec, or its release not deployed)\nhint: look at the Job's pod in \
                     {} (kubectl -n {} logs job/{})",
                    self.place(),
                    self.timeout_s,
                    self.job_name(&live),
                    self.namespace,
                    self.namespace,
                    self.job_name(&live)
                )));
            }
            tokio::select! {
                () = cx.cancel_token().cancelled() => {
                    return Err(ActivityError::permanent(format!("{}: cancelled while waiting for the install", self.place())));
                }
                () = tokio::time::sleep(POLL) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dotted_path_nests() {
        assert_eq!(nested("a.b", "v"), json!({"a": {"b": "v"}}));
        assert_eq!(nested("top", "v"), json!({"top": "v"}));
    }

    /// A gzipped tar of `files` (path, content), as `helm package` writes one.
    fn archive(dir: &std::path::Path, files: &[(&str, &[u8])]) -> std::path::PathBuf {
        let mut tar = tar::Builder::new(flate2::write::GzEncoder::new(
            Vec::new(),
            flate2::Compression::default(),
        ));
        for (path, content) in files {
            let mut header = tar::Header::new_gnu();
            header.set_size(content.len() as u64);
            header.set_mode(0o644);
            header.set_cksum();
            tar.append_data(&mut header, path, *content)
                .expect("append");
        }
        let bytes = tar.into_inner().expect("tar").finish().expect("gzip");
        let path = dir.join("chart.tgz");
        std::fs::write(&path, bytes).expect("write");
        path
    }

    #[test]
    fn a_chart_archive_gives_its_name_and_version_or_says_why_not() {
        let dir = tempfile::tempdir().expect("tempdir");
        let chart = b"apiVersion: v2\nname: mychart\ndescription: x\nversion: \"0.3.1\" # pinned\nappVersion: 1.0\n";
        let path = archive(
            dir.path(),
            &[
                ("mychart/values.yaml", b"a: 1\n"),
                (
                    "mychart/charts/sub/Chart.yaml",
                    b"name: sub\nversion: 9.9.9\n",
                ),
                ("mychart/Chart.yaml", chart),
            ],
        );
        let (found, encoded) = read_chart_archive(&path).expect("a chart");
        assert_eq!(
            found,
            ChartArchive {
                name: "mychart".into(),
                version: "0.3.1".into()
            }
        );
        assert_eq!(
            STANDARD.decode(encoded).expect("base64"),
            std::fs::read(&path).expect("read")
        );

        let path = archive(dir.path(), &[("mychart/values.yaml", b"a: 1\n")]);
        let e = read_chart_archive(&path).expect_err("no Chart.yaml");
        assert!(
            e.contains("holds no CHART/Chart.yaml") && e.contains("helm package"),
            "{e}"
        );

        let plain = dir.path().join("plain.tgz");
        std::fs::write(&plain, b"not a gzip").expect("write");
        let e = read_chart_archive(&plain).expect_err("not gzip");
        assert!(
            e.contains("plain.tgz is not a chart archive helm can read"),
            "{e}"
        );

        let missing = dir.path().join("missing.tgz");
        let e = read_chart_archive(&missing).expect_err("missing");
        assert!(
            e.starts_with("reading the chart ") && e.contains("missing.tgz"),
            "{e}"
        );
    }

    #[test]
    fn a_chart_over_the_content_limit_is_refused_with_its_sizes() {
        let dir = tempfile::tempdir().expect("tempdir");
        // 800 KiB that do not compress: over 1 MiB once base64-encoded.
        let mut noise = vec![0u8; 800 * 1024];
        let mut x: u32 = 0x9e37_79b9;
        for b in noise.iter_mut() {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            *b = x as u8;
        }
        let big = dir.path().join("big.tgz");
        std::fs::write(&big, &noise).expect("write");
        let e = read_chart_archive(&big).expect_err("too big");
        assert!(
            e.contains("is 819200 bytes, 1092268 once base64-encoded, over the 1 MiB"),
            "{e}"
        );
        assert!(e.contains("hint: serve the chart from a registry"), "{e}");
    }
}
