//! The Kubernetes API stand-in (`workflows/src/lab/standin/kube_api.py`) against the real
//! `kube` crate, the real `kubectl` 1.32 and a real etcd 3.4. No Kubernetes API server
//! can run here: these tests prove that the stand-in keeps the parts of the API server's
//! contract Foundry's cluster work relies on, so that tests of that work against the
//! stand-in mean something; they prove nothing about a real API server.

use std::pin::pin;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use foundry_tests::kube_standin::{Etcd, KubeApi, Pki, Store};
use foundry_tests::{assert_success, kill, output_within, wait_for};
use futures_util::StreamExt;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, Pod, Secret};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{
    Api, ApiResource, DynamicObject, EvictParams, GroupVersionKind, ListParams, LogParams, Patch,
    PatchParams, PostParams, WatchEvent, WatchParams,
};
use kube::core::Status;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use serde_json::{Value, json};

/// A CA of the test's own, the stand-in's certificate for 127.0.0.1, and an admin client
/// certificate (O=system:masters, as K3s makes its admin's).
pub(crate) fn pki() -> Pki {
    let mut ca = CertificateParams::new(Vec::<String>::new()).expect("params");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    ca.distinguished_name
        .push(DnType::CommonName, "k3s-server-ca (stand-in)");
    let ca_key = KeyPair::generate().expect("key");
    let ca_pem = ca.self_signed(&ca_key).expect("self-signed").pem();
    let issuer = Issuer::from_params(&ca, &ca_key);
    let issue = |names: Vec<String>, usage, cn: &str, org: Option<&str>| {
        let mut params = CertificateParams::new(names).expect("params");
        params.extended_key_usages = vec![usage];
        params.distinguished_name.push(DnType::CommonName, cn);
        if let Some(org) = org {
            params
                .distinguished_name
                .push(DnType::OrganizationName, org);
        }
        let key = KeyPair::generate().expect("key");
        let cert = params.signed_by(&key, &issuer).expect("signed");
        (cert.pem(), key.serialize_pem())
    };
    Pki {
        ca_pem,
        server: issue(
            vec!["127.0.0.1".into()],
            ExtendedKeyUsagePurpose::ServerAuth,
            "kube-apiserver",
            None,
        ),
        client: issue(
            vec![],
            ExtendedKeyUsagePurpose::ClientAuth,
            "system:admin",
            Some("system:masters"),
        ),
    }
}

/// A `kube` client of the admin certificate (or of `token`), from a kubeconfig as K3s
/// writes k3s.yaml.
pub(crate) async fn client(api: &KubeApi, token: Option<&str>) -> kube::Client {
    let kubeconfig = kube::config::Kubeconfig::from_yaml(&api.kubeconfig_yaml(token))
        .expect("the stand-in's kubeconfig");
    let mut config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .expect("a kube config");
    // kube retries 429s by default (15 times, backing off to minutes): the refused
    // evictions these tests expect must reach them.
    config.default_retry = false;
    kube::Client::try_from(config).expect("a kube client")
}

/// The API's Status in `result`'s error; panics on success or another error.
fn status<T: std::fmt::Debug>(result: kube::Result<T>) -> Box<Status> {
    match result {
        Err(kube::Error::Api(status)) => status,
        other => panic!("expected an API error, got {other:?}"),
    }
}

/// Polls the async `cond` every 100 ms until it gives `Some`; panics naming `what` at the
/// deadline.
async fn eventually<T, F, Fut>(what: &str, deadline: Duration, mut cond: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let end = Instant::now() + deadline;
    while Instant::now() < end {
        if let Some(value) = cond().await {
            return value;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out after {deadline:?} waiting for {what}");
}

fn node(name: &str, roles: &[&str]) -> Node {
    let labels: serde_json::Map<String, Value> = roles
        .iter()
        .map(|r| (format!("node-role.kubernetes.io/{r}"), json!("true")))
        .collect();
    serde_json::from_value(json!({
        "metadata": {"name": name, "labels": labels},
        "status": {
            "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady"}],
            "nodeInfo": {"kubeletVersion": "v1.32.4+k3s1", "machineID": "", "systemUUID": "",
                         "bootID": "", "kernelVersion": "", "osImage": "", "containerRuntimeVersion": "",
                         "kubeProxyVersion": "", "operatingSystem": "linux", "architecture": "amd64"}
        }
    }))
    .expect("a node")
}

/// A running pod of app `app` on `node_name`, owned by `owner_kind` (a controller).
fn pod(name: &str, app: &str, node_name: &str, owner_kind: &str) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {"app": app},
                     "ownerReferences": [{"apiVersion": "apps/v1", "kind": owner_kind, "name": app,
                                          "uid": "00000000-0000-0000-0000-000000000001", "controller": true}]},
        "spec": {"nodeName": node_name, "containers": [{"name": app, "image": "registry.example/app:1"}]},
        "status": {"phase": "Running"}
    }))
    .expect("a pod")
}

fn pdb(name: &str, app: &str, min_available: i32) -> PodDisruptionBudget {
    serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {"minAvailable": min_available, "selector": {"matchLabels": {"app": app}}}
    }))
    .expect("a pdb")
}

fn helmcharts(client: kube::Client, ns: &str) -> Api<DynamicObject> {
    let gvk = GroupVersionKind::gvk("helm.cattle.io", "v1", "HelmChart");
    Api::namespaced_with(
        client,
        ns,
        &ApiResource::from_gvk_with_plural(&gvk, "helmcharts"),
    )
}

#[tokio::test]
async fn kube_crate_creates_lists_patches_and_watches_nodes() {
    let api = KubeApi::start(Store::Memory, &pki(), &[]);
    let nodes: Api<Node> = Api::all(client(&api, None).await);
    let pp = PostParams::default();
    nodes
        .create(&pp, &node("s1", &["control-plane", "etcd"]))
        .await
        .expect("create s1");
    nodes
        .create(&pp, &node("a1", &[]))
        .await
        .expect("create a1");
    let again = status(nodes.create(&pp, &node("s1", &[])).await);
    assert_eq!((again.code, again.reason.as_str()), (409, "AlreadyExists"));

    let servers = nodes
        .list(&ListParams::default().labels("node-role.kubernetes.io/control-plane"))
        .await
        .expect("list servers");
    let names: Vec<_> = servers
        .items
        .iter()
        .filter_map(|n| n.metadata.name.clone())
        .collect();
    assert_eq!(names, ["s1"]);
    let rv = servers.metadata.resource_version.expect("a list version");
    let by_field = nodes
        .list(&ListParams::default().fields("metadata.name=a1"))
        .await
        .expect("list by field");
    assert_eq!(by_field.items.len(), 1);

    let mut events = pin!(
        nodes
            .watch(&WatchParams::default().timeout(20), &rv)
            .await
            .expect("watch")
    );
    let patched = nodes
        .patch(
            "a1",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"foundry.dev/pool": "blue"}}})),
        )
        .await
        .expect("merge patch");
    let labels = patched.metadata.labels.clone().unwrap_or_default();
    assert_eq!(
        labels.get("foundry.dev/pool").map(String::as_str),
        Some("blue")
    );
    let seen = tokio::time::timeout(Duration::from_secs(15), events.next())
        .await
        .expect("a watch event within 15s")
        .expect("the watch still open")
        .expect("a watch event");
    match seen {
        WatchEvent::Modified(n) => {
            assert_eq!(n.metadata.name.as_deref(), Some("a1"));
            assert_eq!(
                n.metadata.resource_version,
                patched.metadata.resource_version
            );
        }
        other => panic!("expected a1 modified, got {other:?}"),
    }

    // An update from a stale version is refused as the real server refuses it.
    let mut stale = patched.clone();
    nodes
        .patch(
            "a1",
            &PatchParams::default(),
            &Patch::Strategic(json!({"spec": {"unschedulable": true}})),
        )
        .await
        .expect("strategic merge patch");
    stale.metadata.labels = Some(Default::default());
    let conflict = status(nodes.replace("a1", &pp, &stale).await);
    assert_eq!((conflict.code, conflict.reason.as_str()), (409, "Conflict"));
    assert!(
        conflict.message.contains("the object has been modified"),
        "{conflict:?}"
    );
    let fresh = nodes.get("a1").await.expect("get a1");
    assert_eq!(fresh.spec.and_then(|s| s.unschedulable), Some(true));

    let missing = status(nodes.get("nope").await);
    assert_eq!((missing.code, missing.reason.as_str()), (404, "NotFound"));
    assert_eq!(missing.message, "nodes \"nope\" not found");
}

#[tokio::test]
async fn certificates_and_bearer_tokens_authenticate_anything_else_is_401() {
    let api = KubeApi::start(Store::Memory, &pki(), &[("s3cr3t-token", "admin")]);
    let with_token: Api<Node> = Api::all(client(&api, Some("s3cr3t-token")).await);
    with_token
        .list(&ListParams::default())
        .await
        .expect("a known token lists nodes");
    let wrong: Api<Node> = Api::all(client(&api, Some("wrong-token")).await);
    let refused = status(wrong.list(&ListParams::default()).await);
    assert_eq!(
        (refused.code, refused.reason.as_str()),
        (401, "Unauthorized")
    );
    let with_cert: Api<Node> = Api::all(client(&api, None).await);
    with_cert
        .list(&ListParams::default())
        .await
        .expect("the admin certificate lists nodes");
}

#[tokio::test]
async fn server_side_apply_creates_merges_conflicts_and_forces() {
    let api = KubeApi::start(Store::Memory, &pki(), &[]);
    let leases: Api<Lease> = Api::namespaced(client(&api, None).await, "kube-system");
    let apply = |holder: &str| {
        json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
               "metadata": {"name": "plndr-cp-lock"}, "spec": {"holderIdentity": holder}})
    };
    let created = leases
        .patch(
            "plndr-cp-lock",
            &PatchParams::apply("kube-vip"),
            &Patch::Apply(apply("s1")),
        )
        .await
        .expect("apply creates the lease");
    let spec = created.spec.clone().expect("spec");
    assert_eq!(spec.holder_identity.as_deref(), Some("s1"));

    // Another manager's fields merge in beside kube-vip's.
    let merged = leases
        .patch(
            "plndr-cp-lock",
            &PatchParams::apply("foundry"),
            &Patch::Apply(json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                                 "metadata": {"name": "plndr-cp-lock", "labels": {"foundry.dev/watched": "yes"}},
                                 "spec": {"leaseDurationSeconds": 15}})),
        )
        .await
        .expect("a second manager's apply merges");
    let spec = merged.spec.clone().expect("spec");
    assert_eq!(spec.holder_identity.as_deref(), Some("s1"));
    assert_eq!(spec.lease_duration_seconds, Some(15));
    let managers: Vec<_> = merged
        .metadata
        .managed_fields
        .unwrap_or_default()
        .into_iter()
        .filter_map(|m| m.manager)
        .collect();
    assert!(
        managers.contains(&"kube-vip".to_string()) && managers.contains(&"foundry".to_string())
    );

    // Setting kube-vip's field to another value is a conflict naming its owner...
    let refused = status(
        leases
            .patch(
                "plndr-cp-lock",
                &PatchParams::apply("foundry"),
                &Patch::Apply(apply("s2")),
            )
            .await,
    );
    assert_eq!((refused.code, refused.reason.as_str()), (409, "Conflict"));
    assert!(
        refused.message.contains("conflict with \"kube-vip\"")
            && refused.message.contains(".spec.holderIdentity"),
        "{refused:?}"
    );
    let unchanged = leases.get("plndr-cp-lock").await.expect("get");
    assert_eq!(
        unchanged.spec.and_then(|s| s.holder_identity).as_deref(),
        Some("s1")
    );
    // ... the same value is no conflict, and force takes the field over.
    leases
        .patch(
            "plndr-cp-lock",
            &PatchParams::apply("other"),
            &Patch::Apply(apply("s1")),
        )
        .await
        .expect("applying the same value shares the field");
    let forced = leases
        .patch(
            "plndr-cp-lock",
            &PatchParams::apply("foundry").force(),
            &Patch::Apply(apply("s2")),
        )
        .await
        .expect("force takes the field");
    assert_eq!(
        forced.spec.and_then(|s| s.holder_identity).as_deref(),
        Some("s2")
    );
    // kube-vip lost the field: its own next apply of s1 conflicts with foundry now.
    let back = status(
        leases
            .patch(
                "plndr-cp-lock",
                &PatchParams::apply("kube-vip"),
                &Patch::Apply(apply("s1")),
            )
            .await,
    );
    assert!(
        back.message.contains("conflict with \"foundry\""),
        "{back:?}"
    );
}

#[tokio::test]
async fn eviction_is_refused_by_a_disruption_budget_until_it_allows() {
    let api = KubeApi::start(Store::Memory, &pki(), &[]);
    let kube = client(&api, None).await;
    let pods: Api<Pod> = Api::namespaced(kube.clone(), "default");
    let budgets: Api<PodDisruptionBudget> = Api::namespaced(kube, "default");
    let pp = PostParams::default();
    for (name, node_name) in [("web-1", "a1"), ("web-2", "a2")] {
        pods.create(&pp, &pod(name, "web", node_name, "ReplicaSet"))
            .await
            .expect("create pod");
    }
    budgets
        .create(&pp, &pdb("web", "web", 2))
        .await
        .expect("create pdb");
    let refused = status(pods.evict("web-1", &EvictParams::default()).await);
    assert_eq!(
        (
            refused.code,
            refused.reason.as_str(),
            refused.message.as_str()
        ),
        (
            429,
            "TooManyRequests",
            "Cannot evict pod as it would violate the pod's disruption budget."
        )
    );
    pods.get("web-1")
        .await
        .expect("a refused eviction leaves the pod");

    budgets
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"minAvailable": 1}})),
        )
        .await
        .expect("relax the budget");
    pods.evict("web-1", &EvictParams::default())
        .await
        .expect("the budget allows one eviction");
    let gone = status(pods.get("web-1").await);
    assert_eq!(gone.code, 404);
    let last = status(pods.evict("web-2", &EvictParams::default()).await);
    assert_eq!(last.code, 429, "the last healthy pod is kept: {last:?}");
}

/// Waits for the Job of chart `name` to finish; whether it completed.
async fn job_outcome(jobs: &Api<Job>, name: &str) -> bool {
    eventually(
        &format!("helm-install-{name} to finish"),
        Duration::from_secs(40),
        || async {
            let job = jobs.get_opt(&format!("helm-install-{name}")).await.ok()??;
            let conditions = job.status?.conditions.unwrap_or_default();
            conditions
                .iter()
                .find(|c| c.status == "True" && (c.type_ == "Complete" || c.type_ == "Failed"))
                .map(|c| c.type_ == "Complete")
        },
    )
    .await
}

/// The log of the pod of chart `name`'s current Job.
async fn job_log(pods: &Api<Pod>, name: &str) -> String {
    let list = pods
        .list(&ListParams::default().labels(&format!("job-name=helm-install-{name}")))
        .await
        .expect("the job's pods");
    let pod = list.items.first().expect("a pod for the job");
    let pod_name = pod.metadata.name.as_deref().expect("a pod name");
    pods.logs(pod_name, &LogParams::default())
        .await
        .expect("the pod's log")
}

#[tokio::test]
async fn helmchart_installs_fails_on_the_schema_and_succeeds_once_fixed() {
    let api = KubeApi::start(Store::Memory, &pki(), &[]);
    let kube = client(&api, None).await;
    let charts = helmcharts(kube.clone(), "kube-system");
    let jobs: Api<Job> = Api::namespaced(kube.clone(), "kube-system");
    let pods: Api<Pod> = Api::namespaced(kube.clone(), "kube-system");
    let secrets: Api<Secret> = Api::namespaced(kube.clone(), "kube-system");
    let ssa = PatchParams::apply("foundry").force();
    let chart = |name: &str, chart: &str, values: &str, secret: Option<&str>| {
        let mut spec = json!({"chart": chart, "repo": "https://charts.example.test",
                              "valuesContent": values});
        if let Some(secret) = secret {
            spec["valuesSecrets"] = json!([{"name": secret, "keys": ["values.yaml"]}]);
        }
        json!({"apiVersion": "helm.cattle.io/v1", "kind": "HelmChart",
               "metadata": {"name": name, "namespace": "kube-system"}, "spec": spec})
    };

    // A secret value reaches the chart through valuesSecrets.
    secrets
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "demo-values"},
                                           "stringData": {}, "data": {"values.yaml": "c2VjcmV0TWVzc2FnZTogaGkK"}}))
            .expect("secret"),
        )
        .await
        .expect("create the values secret");
    charts
        .patch(
            "demo",
            &ssa,
            &Patch::Apply(chart(
                "demo",
                "foundry-test",
                "replicaCount: 2\n",
                Some("demo-values"),
            )),
        )
        .await
        .expect("apply the demo chart");
    assert!(job_outcome(&jobs, "demo").await, "{}", api.log());
    let releases = secrets
        .list(&ListParams::default().labels("owner=helm,name=demo"))
        .await
        .expect("release secrets");
    let release = releases.items.first().expect("a release secret");
    assert_eq!(
        release.metadata.name.as_deref(),
        Some("sh.helm.release.v1.demo.v1")
    );
    let labels = release.metadata.labels.clone().unwrap_or_default();
    assert_eq!(labels.get("status").map(String::as_str), Some("deployed"));
    assert!(job_log(&pods, "demo").await.contains("STATUS: deployed"));

    // A value outside the chart's schema fails the Job with helm's own words.
    charts
        .patch(
            "contour",
            &ssa,
            &Patch::Apply(chart(
                "contour",
                "contour",
                "envoy:\n  replicas: 2\nbogus: true\n",
                None,
            )),
        )
        .await
        .expect("apply contour");
    assert!(!job_outcome(&jobs, "contour").await, "the job completed");
    let log = job_log(&pods, "contour").await;
    assert!(
        log.contains(
            "Error: INSTALLATION FAILED: values don't meet the specifications of the schema(s) in the following chart(s):"
        ) && log.contains("Additional property bogus is not allowed"),
        "{log}"
    );
    let none = secrets
        .list(&ListParams::default().labels("owner=helm,name=contour"))
        .await
        .expect("release secrets");
    assert!(none.items.is_empty(), "a schema failure records no release");

    // Fixed values run a new Job, which deploys.
    charts
        .patch(
            "contour",
            &ssa,
            &Patch::Apply(chart("contour", "contour", "envoy:\n  replicas: 2\n", None)),
        )
        .await
        .expect("apply fixed contour");
    let deployed = eventually("contour deployed", Duration::from_secs(40), || async {
        let list = secrets
            .list(&ListParams::default().labels("owner=helm,name=contour,status=deployed"))
            .await
            .ok()?;
        list.items.first().and_then(|s| s.metadata.name.clone())
    })
    .await;
    assert_eq!(deployed, "sh.helm.release.v1.contour.v1");
    assert!(job_outcome(&jobs, "contour").await);

    // chartContent over 1 MiB is refused as the object size limit refuses it.
    let mut big = chart("big", "", "", None);
    big["spec"]["chartContent"] = json!("A".repeat(1024 * 1024 + 4));
    let refused = status(charts.patch("big", &ssa, &Patch::Apply(big)).await);
    assert_eq!(
        (refused.code, refused.reason.as_str()),
        (422, "Invalid"),
        "{refused:?}"
    );
    assert!(refused.message.contains("spec.chartContent"), "{refused:?}");
}

#[tokio::test]
async fn two_standins_on_one_etcd_see_each_others_writes() {
    let etcd = Etcd::start();
    let pki = pki();
    let a = KubeApi::start(Store::Etcd(&etcd), &pki, &[]);
    let b = KubeApi::start(Store::Etcd(&etcd), &pki, &[]);
    let nodes_a: Api<Node> = Api::all(client(&a, None).await);
    let nodes_b: Api<Node> = Api::all(client(&b, None).await);
    let created = nodes_a
        .create(&PostParams::default(), &node("s1", &["control-plane"]))
        .await
        .expect("create through a");
    let seen = nodes_b.get("s1").await.expect("b sees a's node");
    assert_eq!(
        seen.metadata.resource_version,
        created.metadata.resource_version
    );
    let rv = created.metadata.resource_version.clone().expect("rv");

    let mut events = pin!(
        nodes_b
            .watch(&WatchParams::default().timeout(20), &rv)
            .await
            .expect("watch through b")
    );
    nodes_a
        .patch(
            "s1",
            &PatchParams::default(),
            &Patch::Strategic(json!({"spec": {"unschedulable": true}})),
        )
        .await
        .expect("cordon through a");
    let event = tokio::time::timeout(Duration::from_secs(15), events.next())
        .await
        .expect("b's watch sees a's write within 15s")
        .expect("the watch still open")
        .expect("an event");
    match event {
        WatchEvent::Modified(n) => assert_eq!(n.spec.and_then(|s| s.unschedulable), Some(true)),
        other => panic!("expected s1 modified, got {other:?}"),
    }
    // A's stale copy is refused through b: both check the same etcd mod_revision.
    let conflict = status(
        nodes_b
            .replace("s1", &PostParams::default(), &created)
            .await,
    );
    assert_eq!(conflict.code, 409);

    // A compacted version is 410 Expired, as from the real server.
    let current: u64 = nodes_a
        .patch(
            "s1",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"pool": "blue"}}})),
        )
        .await
        .expect("label through a")
        .metadata
        .resource_version
        .and_then(|v| v.parse().ok())
        .expect("a numeric version");
    let out = output_within(
        Command::new("etcdctl")
            .env("ETCDCTL_API", "3")
            .arg(format!("--endpoints={}", etcd.endpoint()))
            .arg("compact")
            .arg(current.to_string()),
        "etcdctl compact",
        Duration::from_secs(20),
    );
    assert_success(&out, "etcdctl compact");
    let mut old = pin!(
        nodes_a
            .watch(&WatchParams::default().timeout(10), &rv)
            .await
            .expect("watch from a compacted version")
    );
    let event = tokio::time::timeout(Duration::from_secs(15), old.next())
        .await
        .expect("an answer within 15s")
        .expect("an event");
    match event {
        Ok(WatchEvent::Error(e)) => assert_eq!((e.code, e.reason.as_str()), (410, "Expired")),
        other => panic!("expected 410 Expired, got {other:?}"),
    }
}

#[tokio::test]
async fn kubectl_gets_nodes_and_helmcharts_and_drains_past_a_budget() {
    let api = KubeApi::start(Store::Memory, &pki(), &[]);
    let kube = client(&api, None).await;
    let nodes: Api<Node> = Api::all(kube.clone());
    let pp = PostParams::default();
    nodes
        .create(&pp, &node("s1", &["control-plane", "etcd"]))
        .await
        .expect("s1");
    nodes.create(&pp, &node("a1", &[])).await.expect("a1");
    let pods: Api<Pod> = Api::namespaced(kube.clone(), "default");
    pods.create(&pp, &pod("web-1", "web", "a1", "ReplicaSet"))
        .await
        .expect("web-1");
    pods.create(&pp, &pod("web-2", "web", "s1", "ReplicaSet"))
        .await
        .expect("web-2");
    let system: Api<Pod> = Api::namespaced(kube.clone(), "kube-system");
    let daemonsets: Api<k8s_openapi::api::apps::v1::DaemonSet> =
        Api::namespaced(kube.clone(), "kube-system");
    daemonsets
        .create(
            &pp,
            &serde_json::from_value(json!({"metadata": {"name": "kube-vip-ds"},
                "spec": {"selector": {"matchLabels": {"app": "kube-vip-ds"}},
                         "template": {"metadata": {"labels": {"app": "kube-vip-ds"}},
                                      "spec": {"containers": [{"name": "kube-vip", "image": "kube-vip:v0.8"}]}}}}))
            .expect("daemonset"),
        )
        .await
        .expect("kube-vip daemonset");
    system
        .create(
            &pp,
            &pod("kube-vip-ds-a1", "kube-vip-ds", "a1", "DaemonSet"),
        )
        .await
        .expect("daemonset pod");
    let budgets: Api<PodDisruptionBudget> = Api::namespaced(kube.clone(), "default");
    budgets
        .create(&pp, &pdb("web", "web", 2))
        .await
        .expect("pdb");
    helmcharts(kube.clone(), "kube-system")
        .patch(
            "contour",
            &PatchParams::apply("foundry"),
            &Patch::Apply(json!({"apiVersion": "helm.cattle.io/v1", "kind": "HelmChart",
                                 "metadata": {"name": "contour"},
                                 "spec": {"chart": "contour", "targetNamespace": "projectcontour"}})),
        )
        .await
        .expect("a helmchart");

    let out = output_within(
        &mut api.kubectl(&["get", "nodes"]),
        "kubectl get nodes",
        Duration::from_secs(30),
    );
    assert_success(&out, "kubectl get nodes");
    let table = String::from_utf8_lossy(&out.stdout).to_string();
    let rows: Vec<Vec<&str>> = table
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(
        rows[0],
        ["NAME", "STATUS", "ROLES", "AGE", "VERSION"],
        "{table}"
    );
    assert!(rows.iter().any(|r| r[0] == "s1"
        && r[1] == "Ready"
        && r[2] == "control-plane,etcd"
        && r[4] == "v1.32.4+k3s1"));
    assert!(
        rows.iter().any(|r| r[0] == "a1" && r[2] == "<none>"),
        "{table}"
    );

    let out = output_within(
        &mut api.kubectl(&["get", "helmcharts", "-A"]),
        "kubectl get helmcharts -A",
        Duration::from_secs(30),
    );
    assert_success(&out, "kubectl get helmcharts -A");
    let table = String::from_utf8_lossy(&out.stdout).to_string();
    let first = table.lines().next().unwrap_or_default();
    assert!(
        first.starts_with("NAMESPACE") && first.contains("CHART"),
        "{table}"
    );
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("kube-system") && l.contains("contour")),
        "{table}"
    );

    // A JSON patch from kubectl (RFC 6902), seen through kube.
    let out = output_within(
        &mut api.kubectl(&[
            "patch",
            "node",
            "a1",
            "--type",
            "json",
            "-p",
            r#"[{"op": "add", "path": "/metadata/labels/foundry.dev~1pool", "value": "green"}]"#,
        ]),
        "kubectl patch --type json",
        Duration::from_secs(30),
    );
    assert_success(&out, "kubectl patch --type json");
    let a1 = nodes.get("a1").await.expect("a1");
    let labels = a1.metadata.labels.unwrap_or_default();
    assert_eq!(
        labels.get("foundry.dev/pool").map(String::as_str),
        Some("green")
    );

    // Drain a1: cordoned, the daemonset's pod ignored, web-1's eviction refused by the
    // budget (kubectl retries) until the budget allows it.
    let errors = api.path("drain.err");
    let mut drain = api
        .kubectl(&["drain", "a1", "--ignore-daemonsets", "--timeout", "30s"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&errors).expect("drain stderr"))
        .spawn()
        .expect("kubectl drain");
    let stopped = || {
        std::fs::read_to_string(&errors)
            .unwrap_or_default()
            .contains("Cannot evict pod as it would violate the pod's disruption budget.")
    };
    wait_for(
        "kubectl drain stopped by the budget",
        Duration::from_secs(30),
        || stopped() || drain.try_wait().ok().flatten().is_some(),
    );
    if !stopped() {
        kill(&mut drain);
        panic!(
            "drain was not stopped by the budget: {}",
            std::fs::read_to_string(&errors).unwrap_or_default()
        );
    }
    let a1 = nodes.get("a1").await.expect("a1");
    assert_eq!(
        a1.spec.and_then(|s| s.unschedulable),
        Some(true),
        "a1 cordoned"
    );
    pods.get("web-1")
        .await
        .expect("web-1 kept while the budget refuses");
    budgets
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"minAvailable": 1}})),
        )
        .await
        .expect("relax the budget");
    wait_for("kubectl drain to finish", Duration::from_secs(30), || {
        drain.try_wait().ok().flatten().is_some()
    });
    let ended = drain.wait().expect("drain's status");
    if !ended.success() {
        kill(&mut drain);
        panic!(
            "kubectl drain failed ({ended}): {}",
            std::fs::read_to_string(&errors).unwrap_or_default()
        );
    }
    assert_eq!(status(pods.get("web-1").await).code, 404, "web-1 evicted");
    pods.get("web-2").await.expect("web-2 on s1 untouched");
    system
        .get("kube-vip-ds-a1")
        .await
        .expect("the daemonset's pod is ignored");

    let out = output_within(
        &mut api.kubectl(&["get", "nodes", "a1", "--no-headers"]),
        "kubectl get nodes a1",
        Duration::from_secs(30),
    );
    assert_success(&out, "kubectl get nodes a1");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("Ready,SchedulingDisabled"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

/// The k3s stand-in embeds the file behind `K3S_STANDIN = True`: so included, it starts
/// nothing and gives the k3s side its public names.
#[test]
fn embedded_in_the_k3s_standin_it_starts_nothing() {
    let program = concat!(
        "#!/usr/bin/env python3\nK3S_STANDIN = True\n",
        include_str!("../../workflows/src/lab/standin/kube_api.py"),
        "\napi = KubeApi(MemoryStore(), tokens={'t': 'admin'}, version='v1.32.4+k3s1')\n",
        "assert callable(apiserver_main) and callable(api.handle) and callable(api.start_controllers)\n",
        "assert EtcdStore('http://127.0.0.1:2379').port == 2379\n",
        "print(sorted(o['metadata']['name'] for o in api.list_objects(RESOURCES[1])[0]))\n",
    );
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("k3s");
    std::fs::write(&path, program).expect("the embedded program");
    let out = output_within(
        Command::new("python3")
            .arg(&path)
            .args(["--listen", "127.0.0.1:1"]),
        "the embedded stand-in",
        Duration::from_secs(20),
    );
    assert_success(&out, "the embedded stand-in");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "['default', 'kube-node-lease', 'kube-public', 'kube-system']"
    );
}
