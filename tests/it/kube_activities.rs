//! The kube activities (`foundry_activities::kube`) against the Kubernetes API stand-in
//! (`workflows/src/lab/standin/kube_api.py`) through the real `kube` crate. No Kubernetes
//! API server can run here: these tests prove the activities against the stand-in's
//! contract only (nodes, evictions and budgets, HelmChart and its Job, Secrets,
//! server-side apply), not against a real API server or K3s's helm-controller.
//!
//! The kubeconfig reaches each activity as a secret reference in a secret store, as a run
//! gives it; its client key must appear in no output and no error.

use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use foundry_activities::kube::{
    ApplyHelmChart, Cordon, DeleteNode, DrainNode, KubeAccess, NodesReady, Uncordon, ValuesSecret,
    cluster_nodes, vip_holder,
};
use foundry_core::secret::{FileSecretStore, SecretStore};
use foundry_core::{Activity, ActivityCx, ActivityError, SecretRef, SecretValue};
use foundry_tests::kube_standin::{KubeApi, Pki, Store};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, Pod, Secret};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::Api;
use kube::api::{
    ApiResource, DynamicObject, GroupVersionKind, ListParams, Patch, PatchParams, PostParams,
};
use serde_json::{Value, json};

use crate::kube_api_standin::{client, pki};

/// A stand-in, a client of the test's own to set the scene, and the activities' access:
/// the kubeconfig (with inline credentials, as K3s writes k3s.yaml) kept in a secret store.
struct Cluster {
    api: KubeApi,
    kube: kube::Client,
    cx: ActivityCx,
    store: Arc<FileSecretStore>,
    access: KubeAccess,
    /// The client key, which nothing the activities give back may hold.
    client_key: String,
    _dir: tempfile::TempDir,
}

pub(crate) fn inline_kubeconfig(pki: &Pki, server: &str) -> String {
    let b64 = |pem: &str| STANDARD.encode(pem.as_bytes());
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: default\n  cluster:\n    \
         certificate-authority-data: {}\n    server: {server}\n    proxy-url: \
         http://127.0.0.1:9\ncontexts:\n- name: default\n  \
         context:\n    cluster: default\n    user: default\ncurrent-context: default\nusers:\n\
         - name: default\n  user:\n    client-certificate-data: {}\n    client-key-data: {}\n",
        b64(&pki.ca_pem),
        b64(&pki.client.0),
        b64(&pki.client.1)
    )
}

/// The stand-in with a kubeconfig whose own server is a dead loopback port, replaced by
/// the stand-in's URL (as the VIP replaces the first server's address), and whose
/// `proxy-url` (a dead port too) is ignored, as `HTTPS_PROXY` would be.
async fn cluster() -> Cluster {
    let pki = pki();
    let api = KubeApi::start(Store::Memory, &pki, &[]);
    let kube = client(&api, None).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Arc::new(FileSecretStore::new(dir.path().join("secrets")));
    let kubeconfig = inline_kubeconfig(&pki, "https://127.0.0.1:9");
    let reference = store.put(&SecretValue::new(kubeconfig)).expect("put");
    let cx = ActivityCx::standalone("kube-test").with_secrets(store.clone());
    let client_key = STANDARD.encode(pki.client.1.as_bytes());
    Cluster {
        access: KubeAccess {
            kubeconfig: reference,
            server: Some(api.url()),
        },
        api,
        kube,
        cx,
        store,
        client_key,
        _dir: dir,
    }
}

impl Cluster {
    /// Panics when `text` holds the client key or its PEM body.
    fn assert_clean(&self, what: &str, text: &str) {
        assert!(
            !text.contains(&self.client_key),
            "{what} holds the client key"
        );
        let pem_body = STANDARD
            .decode(&self.client_key)
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .unwrap_or_default();
        let line = pem_body.lines().nth(1).unwrap_or("no line");
        assert!(!text.contains(line), "{what} holds the client key");
    }

    fn keep(&self, value: &str) -> SecretRef {
        self.store
            .put(&SecretValue::new(value.to_string()))
            .expect("put")
    }
}

fn node(name: &str, ready: bool) -> Node {
    serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {"node-role.kubernetes.io/control-plane": "true"}},
        "status": {
            "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" },
                            "reason": if ready { "KubeletReady" } else { "KubeletNotReady" },
                            "message": if ready { "kubelet is posting ready status" }
                                       else { "container runtime network not ready" }}],
            "nodeInfo": {"kubeletVersion": "v1.32.4+k3s1", "machineID": "", "systemUUID": "",
                         "bootID": "", "kernelVersion": "", "osImage": "", "containerRuntimeVersion": "",
                         "kubeProxyVersion": "", "operatingSystem": "linux", "architecture": "amd64"}
        }
    }))
    .expect("a node")
}

async fn make_ready(kube: &kube::Client, name: &str) {
    let nodes: Api<Node> = Api::all(kube.clone());
    let patch = json!({"status": {"conditions": [{"type": "Ready", "status": "True",
        "reason": "KubeletReady", "message": "kubelet is posting ready status"}]}});
    nodes
        .patch_status(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("node made Ready");
}

async fn create_nodes(kube: &kube::Client, names: &[(&str, bool)]) {
    let nodes: Api<Node> = Api::all(kube.clone());
    for (name, ready) in names {
        nodes
            .create(&PostParams::default(), &node(name, *ready))
            .await
            .expect("create node");
    }
}

#[tokio::test]
async fn nodes_ready_waits_for_nodes_made_ready_later_and_names_one_never_ready() {
    let c = cluster().await;
    create_nodes(&c.kube, &[("s1", false), ("s2", false), ("s3", false)]).await;
    let wait = NodesReady {
        access: c.access.clone(),
        nodes: vec!["s1".into(), "s2".into()],
        timeout_s: 30,
    };
    assert_eq!(wait.probe(&c.cx).await.expect("probe"), None);
    let kube = c.kube.clone();
    let delay = Duration::from_secs(2);
    let later = tokio::spawn(async move {
        tokio::time::sleep(delay).await;
        make_ready(&kube, "s1").await;
        make_ready(&kube, "s2").await;
    });
    let started = Instant::now();
    let done = wait.apply(&c.cx).await.expect("both nodes Ready");
    assert!(started.elapsed() >= delay, "it did not wait");
    assert_eq!(done.ready, vec!["s1", "s2"]);
    later.await.expect("the test's task");
    assert!(wait.probe(&c.cx).await.expect("probe").is_some());

    let never = NodesReady {
        access: c.access.clone(),
        nodes: vec!["s1".into(), "s3".into(), "s9".into()],
        timeout_s: 2,
    };
    let started = Instant::now();
    let e = never.apply(&c.cx).await.expect_err("s3 is never Ready");
    assert!(started.elapsed() < Duration::from_secs(10), "not bounded");
    assert!(
        e.message
            .contains("s3 (Ready=False: container runtime network not ready)"),
        "{e}"
    );
    assert!(e.message.contains("s9 (no such node yet)"), "{e}");
    assert!(!e.message.contains("s1 ("), "{e}");
    c.assert_clean("the timeout", &e.message);

    // The read-only views for `node list` and `cluster status`.
    let listed = cluster_nodes(&c.kube).await.expect("nodes");
    let s1 = listed.iter().find(|n| n.name == "s1").expect("s1");
    assert_eq!(s1.roles, vec!["control-plane"]);
    assert_eq!(s1.kubelet_version, "v1.32.4+k3s1");
    assert!(s1.ready && !s1.cordoned);
    assert!(!listed.iter().find(|n| n.name == "s3").expect("s3").ready);
    assert_eq!(vip_holder(&c.kube).await.expect("no lease yet"), None);
    let leases: Api<Lease> = Api::namespaced(c.kube.clone(), "kube-system");
    let lease: Lease = serde_json::from_value(json!({
        "metadata": {"name": "plndr-cp-lock", "namespace": "kube-system"},
        "spec": {"holderIdentity": "s2", "leaseDurationSeconds": 15}
    }))
    .expect("a lease");
    leases
        .create(&PostParams::default(), &lease)
        .await
        .expect("lease");
    assert_eq!(
        vip_holder(&c.kube).await.expect("holder").as_deref(),
        Some("s2")
    );
}

/// An API that goes away during the wait (its server stopped: the watch ends, every list
/// and watch after it is refused) does not end the wait early: it is tried again until the
/// deadline, and the timeout, naming the node, is the error, with the trouble after it.
#[tokio::test]
async fn nodes_ready_outlasts_an_api_gone_away_and_times_out_naming_the_node() {
    let Cluster {
        api,
        kube,
        cx,
        access,
        store: _store,
        client_key,
        _dir,
    } = cluster().await;
    create_nodes(&kube, &[("g1", false)]).await;
    let wait = NodesReady {
        access,
        nodes: vec!["g1".into()],
        timeout_s: 4,
    };
    let gone = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(1)).await;
        drop(api);
    });
    let started = Instant::now();
    let e = wait.apply(&cx).await.expect_err("g1 is never Ready");
    let took = started.elapsed();
    gone.await.expect("the test's task");
    assert!(
        took >= Duration::from_secs(4),
        "the wait ended at {took:?}, before its deadline: {e}"
    );
    assert!(took < Duration::from_secs(15), "not bounded: {took:?}");
    assert!(e.message.starts_with("nodes not Ready after 4 s"), "{e}");
    assert!(
        e.message
            .contains("g1 (Ready=False: container runtime network not ready)"),
        "{e}"
    );
    assert!(e.message.contains("last trouble reaching the API"), "{e}");
    assert!(e.message.contains("hint:"), "{e}");
    assert!(!e.message.contains(&client_key), "the client key in {e}");
}

fn pod(name: &str, app: &str, node: &str, owner: &str, annotations: Value) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {"app": app}, "annotations": annotations,
                     "ownerReferences": [{"apiVersion": "apps/v1", "kind": owner, "name": app,
                                          "uid": "00000000-0000-0000-0000-000000000001", "controller": true}]},
        "spec": {"nodeName": node, "containers": [{"name": app, "image": "registry.example/app:1"}]},
        "status": {"phase": "Running"}
    }))
    .expect("a pod")
}

async fn budget(kube: &kube::Client, name: &str, app: &str, min_available: i32) {
    let pdbs: Api<PodDisruptionBudget> = Api::namespaced(kube.clone(), "default");
    let pdb: PodDisruptionBudget = serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {"minAvailable": min_available, "selector": {"matchLabels": {"app": app}}}
    }))
    .expect("a budget");
    pdbs.create(&PostParams::default(), &pdb)
        .await
        .expect("budget");
}

async fn pod_names(kube: &kube::Client, node: &str) -> Vec<String> {
    let pods: Api<Pod> = Api::all(kube.clone());
    let mut names: Vec<String> = pods
        .list(&ListParams::default().fields(&format!("spec.nodeName={node}")))
        .await
        .expect("pods")
        .items
        .into_iter()
        .filter_map(|p| p.metadata.name)
        .collect();
    names.sort();
    names
}

async fn unschedulable(kube: &kube::Client, node: &str) -> bool {
    let nodes: Api<Node> = Api::all(kube.clone());
    nodes
        .get(node)
        .await
        .expect("node")
        .spec
        .and_then(|s| s.unschedulable)
        .unwrap_or(false)
}

#[tokio::test]
async fn drain_evicts_leaves_daemonset_and_mirror_pods_waits_out_a_budget_and_names_one_never_relaxed()
 {
    let c = cluster().await;
    create_nodes(&c.kube, &[("d1", true), ("d2", true), ("d3", true)]).await;
    let pods: Api<Pod> = Api::namespaced(c.kube.clone(), "default");
    for p in [
        pod("web-0", "web", "d1", "ReplicaSet", json!({})),
        pod("db-0", "db", "d1", "StatefulSet", json!({})),
        pod("db-1", "db", "d2", "StatefulSet", json!({})),
        pod("proxy-d1", "proxy", "d1", "DaemonSet", json!({})),
        pod(
            "etcd-d1",
            "static",
            "d1",
            "Node",
            json!({"kubernetes.io/config.mirror": "abc"}),
        ),
        pod("cache-0", "cache", "d3", "StatefulSet", json!({})),
    ] {
        pods.create(&PostParams::default(), &p)
            .await
            .expect("create pod");
    }
    budget(&c.kube, "db-budget", "db", 2).await;
    budget(&c.kube, "cache-budget", "cache", 1).await;

    let drain = DrainNode {
        access: c.access.clone(),
        node: "d1".into(),
        timeout_s: 30,
    };
    assert_eq!(drain.probe(&c.cx).await.expect("probe"), None);
    // The budget holds db-0 until the test relaxes it.
    let kube = c.kube.clone();
    let relax = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(2)).await;
        let pdbs: Api<PodDisruptionBudget> = Api::namespaced(kube, "default");
        pdbs.patch(
            "db-budget",
            &PatchParams::default(),
            &Patch::Merge(&json!({"spec": {"minAvailable": 1}})),
        )
        .await
        .expect("budget relaxed");
    });
    let started = Instant::now();
    let drained = drain.apply(&c.cx).await.expect("drained");
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "it did not wait for the budget"
    );
    relax.await.expect("the test's task");
    let mut evicted = drained.evicted.clone();
    evicted.sort();
    assert_eq!(evicted, vec!["default/db-0", "default/web-0"]);
    assert_eq!(pod_names(&c.kube, "d1").await, vec!["etcd-d1", "proxy-d1"]);
    assert!(unschedulable(&c.kube, "d1").await);
    assert!(drain.probe(&c.cx).await.expect("probe").is_some());

    let stuck = DrainNode {
        access: c.access.clone(),
        node: "d3".into(),
        timeout_s: 2,
    };
    let started = Instant::now();
    let e = stuck.apply(&c.cx).await.expect_err("never relaxed");
    assert!(started.elapsed() < Duration::from_secs(10), "not bounded");
    assert!(e.message.contains("default/cache-0"), "{e}");
    assert!(e.message.contains("cache-budget"), "{e}");
    assert!(e.message.contains("hint:"), "{e}");
    c.assert_clean("the drain error", &e.message);
    assert_eq!(pod_names(&c.kube, "d3").await, vec!["cache-0"]);

    // Uncordon and cordon again.
    let uncordon = Uncordon {
        access: c.access.clone(),
        node: "d1".into(),
    };
    assert_eq!(uncordon.probe(&c.cx).await.expect("probe"), None);
    uncordon.apply(&c.cx).await.expect("uncordon");
    assert!(!unschedulable(&c.kube, "d1").await);
    assert!(uncordon.probe(&c.cx).await.expect("probe").is_some());
    let cordon = Cordon {
        access: c.access.clone(),
        node: "d1".into(),
    };
    cordon.apply(&c.cx).await.expect("cordon");
    assert!(unschedulable(&c.kube, "d1").await);

    // Deleting a node: done once, and done when it is gone.
    let delete = DeleteNode {
        access: c.access.clone(),
        node: "d1".into(),
    };
    assert_eq!(delete.probe(&c.cx).await.expect("probe"), None);
    assert!(delete.apply(&c.cx).await.expect("delete").deleted);
    assert!(!delete.apply(&c.cx).await.expect("again").deleted);
    assert!(delete.probe(&c.cx).await.expect("probe").is_some());
    let gone = Uncordon {
        access: c.access.clone(),
        node: "d1".into(),
    };
    let e = gone.apply(&c.cx).await.expect_err("no such node");
    assert!(e.message.contains("no node d1"), "{e}");
}

fn helmcharts(kube: &kube::Client) -> Api<DynamicObject> {
    let gvk = GroupVersionKind::gvk("helm.cattle.io", "v1", "HelmChart");
    Api::namespaced_with(
        kube.clone(),
        "kube-system",
        &ApiResource::from_gvk_with_plural(&gvk, "helmcharts"),
    )
}

fn chart(c: &Cluster, name: &str, values: Value, secrets: Vec<ValuesSecret>) -> ApplyHelmChart {
    ApplyHelmChart {
        access: c.access.clone(),
        namespace: "kube-system".into(),
        name: name.into(),
        chart: "foundry-test".into(),
        repo: Some("https://charts.example.test".into()),
        version: Some("0.1.0".into()),
        target_namespace: Some("apps".into()),
        values,
        values_secrets: secrets,
        chart_content: None,
        timeout_s: 60,
    }
}

async fn job_uid(kube: &kube::Client, name: &str) -> String {
    let jobs: Api<Job> = Api::namespaced(kube.clone(), "kube-system");
    jobs.get(name)
        .await
        .expect("the install job")
        .metadata
        .uid
        .unwrap_or_default()
}

#[tokio::test]
async fn a_chart_installs_its_secret_value_only_in_a_secret_and_a_second_apply_runs_no_new_job() {
    let c = cluster().await;
    let secret_value = format!("s3cret-{}", rand::random::<u64>());
    let secrets = vec![ValuesSecret {
        secret: "demo-values".into(),
        key: "secret.yaml".into(),
        path: "secretMessage".into(),
        value: c.keep(&secret_value),
    }];
    let install = chart(&c, "demo", json!({"replicaCount": 2}), secrets.clone());
    assert_eq!(install.probe(&c.cx).await.expect("probe"), None);
    let out = install.apply(&c.cx).await.expect("installed");
    assert_eq!(out.status, "deployed");
    assert_eq!(out.job, "helm-install-demo");
    assert_eq!(out.release, "sh.helm.release.v1.demo.v1");
    let shown = serde_json::to_string(&out).expect("json");
    assert!(!shown.contains(&secret_value), "{shown}");
    c.assert_clean("the output", &shown);
    let input = serde_json::to_string(&install).expect("json");
    assert!(!input.contains(&secret_value), "{input}");

    // The value is in the Secret the HelmChart names, and nowhere in the HelmChart.
    let stored: Api<Secret> = Api::namespaced(c.kube.clone(), "kube-system");
    let data = stored
        .get("demo-values")
        .await
        .expect("the values Secret")
        .data
        .expect("data");
    let document: Value =
        serde_json::from_slice(&data.get("secret.yaml").expect("the key").0).expect("JSON");
    assert_eq!(document, json!({"secretMessage": secret_value}));
    let live = helmcharts(&c.kube)
        .get("demo")
        .await
        .expect("the HelmChart");
    let object = serde_json::to_string(&live).expect("json");
    assert!(!object.contains(&secret_value), "{object}");
    assert_eq!(
        live.data.pointer("/spec/valuesSecrets"),
        Some(&json!([{"name": "demo-values", "keys": ["secret.yaml"]}]))
    );
    assert!(c.api.log().find(&secret_value).is_none());

    // Applied again: the probe finds it, and no new Job runs.
    let first_job = job_uid(&c.kube, "helm-install-demo").await;
    assert_eq!(
        install.probe(&c.cx).await.expect("probe").as_ref(),
        Some(&out)
    );
    let again = install.apply(&c.cx).await.expect("again");
    assert!(out.changed, "{out:?}");
    assert_eq!(
        again,
        foundry_activities::kube::ChartOutput {
            changed: false,
            ..out.clone()
        },
        "applied again, nothing changed"
    );
    assert_eq!(job_uid(&c.kube, "helm-install-demo").await, first_job);

    // A changed spec waits for its own Job: the previous one, complete, is not taken.
    let changed = chart(&c, "demo", json!({"replicaCount": 3}), secrets);
    assert_eq!(changed.probe(&c.cx).await.expect("probe"), None);
    let out = changed.apply(&c.cx).await.expect("upgraded");
    assert_eq!(out.release, "sh.helm.release.v1.demo.v2");
    assert_ne!(job_uid(&c.kube, "helm-install-demo").await, first_job);
}

#[tokio::test]
async fn a_chart_whose_values_break_the_schema_fails_with_helms_message_then_fixed_installs() {
    let c = cluster().await;
    let broken = chart(
        &c,
        "broken",
        json!({"replicaCount": 1, "bogus": true}),
        vec![],
    );
    let e: ActivityError = broken
        .apply(&c.cx)
        .await
        .expect_err("the schema refuses it");
    assert!(!e.transient, "{e}");
    assert!(e.message.contains("helm-install-broken failed"), "{e}");
    assert!(
        e.message
            .contains("- (root): Additional property bogus is not allowed"),
        "{e}"
    );
    assert!(e.message.contains("hint:"), "{e}");
    c.assert_clean("the chart error", &e.message);
    let failed_job = job_uid(&c.kube, "helm-install-broken").await;
    // A failed install is not the effect: the probe says "not there", not an error.
    assert_eq!(broken.probe(&c.cx).await.expect("probe"), None);

    let fixed = chart(&c, "broken", json!({"replicaCount": 1}), vec![]);
    let out = fixed.apply(&c.cx).await.expect("the fixed values install");
    assert_eq!(out.status, "deployed");
    assert_ne!(job_uid(&c.kube, "helm-install-broken").await, failed_job);
}

#[tokio::test]
async fn chart_content_over_one_mib_is_refused_before_sending() {
    let c = cluster().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("big.tgz");
    let bytes: Vec<u8> = (0..800 * 1024).map(|_| rand::random::<u8>()).collect();
    std::fs::write(&path, bytes).expect("chart file");
    let mut offline = chart(&c, "offline", json!({}), vec![]);
    offline.chart_content = Some(path);
    let e = offline.apply(&c.cx).await.expect_err("too big");
    assert!(!e.transient);
    assert!(e.message.contains("over the 1 MiB"), "{e}");
    assert!(
        e.message.contains("hint: serve the chart from a registry"),
        "{e}"
    );
    assert!(
        helmcharts(&c.kube)
            .get_opt("offline")
            .await
            .expect("read")
            .is_none(),
        "the chart was sent"
    );

    // An archive that is not a chart is refused before sending too.
    let garbage = dir.path().join("garbage.tgz");
    std::fs::write(&garbage, b"not really a tarball").expect("chart file");
    offline.chart_content = Some(garbage);
    let e = offline.apply(&c.cx).await.expect_err("not a chart");
    assert!(!e.transient);
    assert!(
        e.message.contains("is not a chart archive helm can read"),
        "{e}"
    );

    // A chart `helm package` made installs.
    offline.chart_content = Some(foundry_tests::kube_standin::helm_package(
        dir.path(),
        "offline",
    ));
    let out = offline.apply(&c.cx).await.expect("offline chart");
    assert_eq!(out.status, "deployed");
}

/// A secret read from a file the test wrote and kept in the run's store, as a workflow
/// keeps what it read from OpenBAO: the journal holds only the reference.
struct KeepFile {
    path: std::path::PathBuf,
}

impl Activity for KeepFile {
    type Output = SecretRef;

    fn kind(&self) -> &'static str {
        "test-keep-file"
    }

    fn in_doubt(&self) -> foundry_core::InDoubt {
        foundry_core::InDoubt::Rerun
    }

    async fn probe(&self, _cx: &ActivityCx) -> Result<Option<SecretRef>, ActivityError> {
        Ok(None)
    }

    async fn apply(&self, cx: &ActivityCx) -> Result<SecretRef, ActivityError> {
        let text = std::fs::read_to_string(&self.path)
            .map_err(|e| ActivityError::permanent(e.to_string()))?;
        cx.keep(&SecretValue::new(text))
    }
}

/// A run that installs a chart with a secret value, the kubeconfig and the value read by
/// steps of its own.
struct ChartRun;

impl foundry_core::Workflow for ChartRun {
    const NAME: &'static str = "kube-chart-test";
    const VERSION: u32 = 1;
    type Input = Value;
    type Output = foundry_activities::kube::ChartOutput;

    async fn run(
        &self,
        ctx: foundry_core::Ctx,
        input: Value,
    ) -> Result<Self::Output, foundry_core::RunError> {
        let field = |name: &str| input[name].as_str().unwrap_or_default().to_string();
        let kubeconfig = ctx
            .step(
                "kubeconfig",
                &KeepFile {
                    path: field("kubeconfig_file").into(),
                },
            )
            .await?;
        let value = ctx
            .step(
                "value",
                &KeepFile {
                    path: field("value_file").into(),
                },
            )
            .await?;
        let chart = ApplyHelmChart {
            access: KubeAccess {
                kubeconfig,
                server: Some(field("server")),
            },
            namespace: "kube-system".into(),
            name: "journaled".into(),
            chart: "foundry-test".into(),
            repo: Some("https://charts.example.test".into()),
            version: None,
            target_namespace: None,
            values: json!({"message": "hello"}),
            values_secrets: vec![ValuesSecret {
                secret: "journaled-values".into(),
                key: "values.yaml".into(),
                path: "secretMessage".into(),
                value,
            }],
            chart_content: None,
            timeout_s: 60,
        };
        ctx.step("chart", &chart).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chart_run_leaves_no_kubeconfig_key_nor_secret_value_in_the_journal_or_events() {
    let c = cluster().await;
    let home = tempfile::tempdir().expect("home");
    let scratch = tempfile::tempdir().expect("scratch");
    let kubeconfig_file = scratch.path().join("kubeconfig");
    let pki_yaml = c.store.get(&c.access.kubeconfig).expect("the kubeconfig");
    std::fs::write(&kubeconfig_file, pki_yaml.expose()).expect("write");
    let secret_value = format!("journal-s3cret-{}", rand::random::<u64>());
    let value_file = scratch.path().join("value");
    std::fs::write(&value_file, &secret_value).expect("write");
    let engine = foundry_core::Engine::new(
        foundry_core::Home::at(home.path()),
        foundry_core::Registry::new().register(ChartRun),
        Arc::new(foundry_core::NoInput),
    );
    let input = json!({
        "kubeconfig_file": kubeconfig_file,
        "value_file": value_file,
        "server": c.api.url(),
    });
    let driver = engine.start("kube-chart-test", input).expect("start");
    let mut events = driver.subscribe();
    let outcome = driver.drive().await.expect("drive");
    assert_eq!(
        outcome.state,
        foundry_core::RunState::Completed,
        "{:?}",
        outcome.error
    );
    assert_eq!(
        outcome.output.as_ref().and_then(|o| o["status"].as_str()),
        Some("deployed")
    );
    let mut seen = String::new();
    while let Ok(event) = events.try_recv() {
        seen.push_str(&serde_json::to_string(&event).expect("event JSON"));
        seen.push('\n');
    }
    assert!(
        seen.contains("\"step\":\"chart#0\""),
        "no events seen: {seen}"
    );
    let key_body = String::from_utf8(STANDARD.decode(&c.client_key).expect("b64")).expect("pem");
    let key_line = key_body.lines().nth(1).expect("a key line").to_string();
    let mut secrets = foundry_tests::leak::live::forms(&secret_value);
    secrets.push(key_line);
    secrets.push(c.client_key.clone());
    for (path, bytes) in foundry_tests::leak::files_under(home.path(), &[]) {
        for s in &secrets {
            assert!(
                !bytes.windows(s.len()).any(|w| w == s.as_bytes()),
                "{} holds a secret",
                path.display()
            );
        }
    }
    for s in &secrets {
        assert!(!seen.contains(s.as_str()), "an event holds a secret");
    }
    // The value did reach the cluster, in the Secret the chart names.
    let stored: Api<Secret> = Api::namespaced(c.kube.clone(), "kube-system");
    let data = stored
        .get("journaled-values")
        .await
        .expect("the values Secret")
        .data
        .expect("data");
    assert!(
        String::from_utf8_lossy(&data.get("values.yaml").expect("key").0).contains(&secret_value)
    );
}
