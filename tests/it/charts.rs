//! Contour and cert-manager as chart components, driven through the real `foundry`
//! binary against the Kubernetes API stand-in (`workflows/src/lab/standin/kube_api.py`) on
//! loopback, with its HelmChart controller playing K3s's helm-controller. No Kubernetes
//! API server or K3s can run here: what these tests prove about the cluster side (the
//! install Job, the release Secret, cert-manager's kinds) is proven only against the
//! stand-in; no real chart is fetched or rendered.
//!
//! The cluster's admin kubeconfig reaches Foundry as contract 1 allows a test to hand it
//! in: the environment variable the resolver reads for `${secret:foundry-core/k3s:kubeconfig}`,
//! with no OpenBAO.

use std::process::Output;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use foundry_tests::kube_standin::{KubeApi, Store, helm_package};
use foundry_tests::{Home, assert_success, wait_for};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use kube::api::{ApiResource, DynamicObject, GroupVersionKind};
use serde_json::Value;

use crate::kube_activities::inline_kubeconfig;
use crate::kube_api_standin::{client, pki};

/// Where the resolver looks for `${secret:foundry-core/k3s:kubeconfig}` in the environment
/// (`secret_ref::env_name`: each character not alphanumeric made `_`, case kept).
const KUBECONFIG_VAR: &str = "FOUNDRY_SECRET_foundry_core_k3s_kubeconfig";
/// `${secret:foundry/contour:token}`, a secret value of Contour's chart.
const TOKEN_VAR: &str = "FOUNDRY_SECRET_foundry_contour_token";
const TOKEN: &str = "chart-secret-4f1c9e7a0b";

/// A stand-in, a client of the test's own, and a home whose only config declares the
/// cluster and the charts.
struct Stage {
    api: KubeApi,
    kube: kube::Client,
    home: Home,
    kubeconfig: String,
    client_key: String,
}

async fn stage(config: &str) -> Stage {
    let pki = pki();
    let api = KubeApi::start(Store::Memory, &pki, &[]);
    let kube = client(&api, None).await;
    let home = Home::new();
    std::fs::create_dir_all(home.path()).expect("home");
    let stage = Stage {
        kubeconfig: inline_kubeconfig(&pki, &api.url()),
        client_key: STANDARD.encode(pki.client.1.as_bytes()),
        api,
        kube,
        home,
    };
    stage.write_config(config);
    stage
}

impl Stage {
    fn write_config(&self, text: &str) {
        std::fs::write(self.home.path().join("stack.yaml"), text).expect("config");
    }

    fn foundry(&self, args: &[&str]) -> Output {
        self.home
            .cmd(args)
            .env(KUBECONFIG_VAR, &self.kubeconfig)
            .env(TOKEN_VAR, TOKEN)
            .output()
            .expect("running foundry")
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.foundry(args);
        assert_success(&out, &format!("foundry {args:?}\n{}", self.api.log()));
        self.assert_clean(&format!("foundry {args:?}"), &out);
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn json(&self, args: &[&str]) -> Vec<Value> {
        let mut all = args.to_vec();
        all.extend(["--output", "json"]);
        foundry_tests::json_lines(self.ok(&all).as_bytes())
    }

    /// Neither the secret value nor the kubeconfig's client key in what a command printed.
    fn assert_clean(&self, what: &str, out: &Output) {
        for text in [&out.stdout, &out.stderr] {
            let text = String::from_utf8_lossy(text);
            assert!(!text.contains(TOKEN), "{what} printed the chart's secret");
            assert!(
                !text.contains(&self.client_key),
                "{what} printed the client key"
            );
        }
    }

    async fn helmchart(&self, name: &str) -> Option<Value> {
        let gvk = GroupVersionKind::gvk("helm.cattle.io", "v1", "HelmChart");
        let api: Api<DynamicObject> = Api::namespaced_with(
            self.kube.clone(),
            "kube-system",
            &ApiResource::from_gvk_with_plural(&gvk, "helmcharts"),
        );
        let found = api.get_opt(name).await.expect("reading a HelmChart");
        found.map(|o| serde_json::to_value(o).expect("json"))
    }

    async fn clusterissuer(&self, name: &str) -> Option<Value> {
        let gvk = GroupVersionKind::gvk("cert-manager.io", "v1", "ClusterIssuer");
        let api: Api<DynamicObject> = Api::all_with(
            self.kube.clone(),
            &ApiResource::from_gvk_with_plural(&gvk, "clusterissuers"),
        );
        let found = api.get_opt(name).await.expect("reading a ClusterIssuer");
        found.map(|o| serde_json::to_value(o).expect("json"))
    }

    async fn job_uid(&self, name: &str) -> String {
        let jobs: Api<Job> = Api::namespaced(self.kube.clone(), "kube-system");
        let job = jobs.get(name).await.expect("the install Job");
        job.metadata.uid.expect("a uid")
    }
}

/// An object's `Ready` condition (Null when it has none).
fn ready_condition(object: &Value) -> Value {
    object["status"]["conditions"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["type"] == "Ready"))
        .cloned()
        .unwrap_or(Value::Null)
}

const CONFIG: &str = "\
cluster:
  name: lab
components:
  contour:
    values:
      contour:
        replicaCount: 2
    values_secrets:
      contour.secretToken: ${secret:foundry/contour:token}
";

#[tokio::test(flavor = "multi_thread")]
async fn contour_then_cert_manager_install_with_their_issuer_and_a_second_install_changes_nothing()
{
    let s = stage(CONFIG).await;
    // Before: the plan says each chart is to be made.
    let plan = s.json(&["stack", "plan"]);
    let contour_plan = plan
        .iter()
        .find(|p| p["component"] == "contour")
        .expect("contour planned");
    assert_eq!(contour_plan["host"], "cluster lab", "{contour_plan}");
    assert!(
        contour_plan["plan"]
            .to_string()
            .contains("create HelmChart kube-system/contour"),
        "{contour_plan}"
    );
    let listed = s.ok(&["component", "list"]);
    assert!(listed.contains("contour in cluster lab"), "{listed}");

    s.ok(&["component", "install", "contour"]);
    let first = s.json(&["component", "install", "cert-manager"]);
    let report = first
        .iter()
        .find(|l| l.get("changes").is_some())
        .expect("a report");
    assert_eq!(
        report["changes"],
        serde_json::json!([
            "chart installed (sh.helm.release.v1.cert-manager.v1)",
            "ClusterIssuer foundry-ca-selfsigned applied",
            "Certificate cert-manager/foundry-ca applied",
            "ClusterIssuer foundry-ca applied"
        ]),
        "{report}"
    );

    // The install returned only once cert-manager (the stand-in's) had the CA issuer Ready:
    // its Certificate issued the CA into its Secret, and the issuer verified it.
    let issuer = s.clusterissuer("foundry-ca").await.expect("the CA issuer");
    let ready = ready_condition(&issuer);
    assert_eq!(ready["status"], "True", "{issuer}");
    assert_eq!(ready["reason"], "KeyPairVerified", "{issuer}");
    let secrets: Api<Secret> = Api::namespaced(s.kube.clone(), "cert-manager");
    let ca = secrets.get("foundry-ca").await.expect("the CA's Secret");
    let data = ca.data.expect("data");
    assert!(data.contains_key("tls.crt") && data.contains_key("tls.key"));

    // The HelmCharts as asked, the Jobs complete, the releases deployed at the versions
    // pinned; the values merged over the defaults; the secret only in its Secret.
    let contour = s.helmchart("contour").await.expect("contour's HelmChart");
    assert_eq!(contour["spec"]["chart"], "contour");
    assert_eq!(
        contour["spec"]["repo"],
        "https://projectcontour.github.io/helm-charts/"
    );
    assert_eq!(contour["spec"]["version"], "0.7.0");
    assert_eq!(contour["spec"]["targetNamespace"], "projectcontour");
    let values: Value = serde_json::from_str(
        contour["spec"]["valuesContent"]
            .as_str()
            .expect("valuesContent"),
    )
    .expect("values JSON");
    assert_eq!(values["contour"]["replicaCount"], 2);
    assert_eq!(values["contour"]["manageCRDs"], true);
    assert!(!contour.to_string().contains(TOKEN), "the secret is inline");
    assert_eq!(
        contour["spec"]["valuesSecrets"][0]["name"],
        "contour-foundry-values"
    );
    let secrets: Api<Secret> = Api::namespaced(s.kube.clone(), "kube-system");
    let held = secrets
        .get("contour-foundry-values")
        .await
        .expect("the values Secret");
    let data = held.data.expect("data");
    let doc = String::from_utf8(data["contour.secretToken"].0.clone()).expect("utf8");
    assert!(doc.contains(TOKEN), "{doc}");
    let cert_manager = s.helmchart("cert-manager").await.expect("its HelmChart");
    assert_eq!(cert_manager["spec"]["repo"], "https://charts.jetstack.io");
    assert_eq!(cert_manager["spec"]["version"], "v1.19.1");
    assert!(
        cert_manager["spec"]["valuesContent"]
            .as_str()
            .is_some_and(|v| v.contains(r#""crds":{"enabled":true}"#)),
        "{cert_manager}"
    );

    // Status, from the cluster: healthy, each at its version, the issuer there.
    let status = s.json(&["component", "status", "contour", "cert-manager"]);
    for (name, version) in [("contour", "0.7.0"), ("cert-manager", "v1.19.1")] {
        let st = status
            .iter()
            .find(|x| x["component"] == name)
            .unwrap_or_else(|| panic!("no status of {name}: {status:?}"));
        assert_eq!(st["healthy"], true, "{st}");
        assert_eq!(st["version"], version, "{st}");
        assert_eq!(st["host"], "cluster lab", "{st}");
    }
    let issuers = s
        .api
        .kubectl(&["get", "clusterissuers", "-o", "name"])
        .output()
        .expect("kubectl");
    assert_success(&issuers, "kubectl get clusterissuers");
    let names = String::from_utf8_lossy(&issuers.stdout);
    assert!(
        names.contains("clusterissuer.cert-manager.io/foundry-ca\n")
            && names.contains("clusterissuer.cert-manager.io/foundry-ca-selfsigned\n"),
        "{names}"
    );

    // Again: nothing changes, no Job runs again.
    let jobs = (
        s.job_uid("helm-install-contour").await,
        s.job_uid("helm-install-cert-manager").await,
    );
    let again = s.json(&["component", "install", "contour", "cert-manager"]);
    let reports: Vec<&Value> = again
        .iter()
        .filter(|l| l.get("changes").is_some())
        .collect();
    assert_eq!(reports.len(), 2, "{again:?}");
    for said in reports {
        assert_eq!(said["changes"], serde_json::json!([]), "{said}");
    }
    assert_eq!(
        jobs,
        (
            s.job_uid("helm-install-contour").await,
            s.job_uid("helm-install-cert-manager").await
        )
    );
    let plan = s.json(&["stack", "plan"]);
    for p in &plan {
        assert_eq!(p["plan"], serde_json::json!([]), "{p}");
    }

    // An upgrade is the install at another version; a downgrade is refused unchanged.
    let down = s.foundry(&["component", "upgrade", "contour", "--to", "0.6.0", "--yes"]);
    assert!(!down.status.success(), "a downgrade went ahead");
    assert!(
        String::from_utf8_lossy(&down.stderr).contains("a downgrade is no upgrade"),
        "{}",
        String::from_utf8_lossy(&down.stderr)
    );
    s.ok(&["component", "upgrade", "contour", "--to", "0.8.0", "--yes"]);
    let status = s.json(&["component", "status", "contour"]);
    assert_eq!(status[0]["version"], "0.8.0", "{status:?}");
    assert_eq!(status[0]["healthy"], true, "{status:?}");
    let contour = s.helmchart("contour").await.expect("contour's HelmChart");
    assert_eq!(contour["spec"]["version"], "0.8.0");
    let plan = s.json(&["stack", "plan"]);
    let contour_plan = plan
        .iter()
        .find(|p| p["component"] == "contour")
        .expect("contour planned");
    assert_eq!(
        contour_plan["plan"],
        serde_json::json!(["change version 0.8.0 to 0.7.0"]),
        "{contour_plan}"
    );

    // The secret value and the client key are in no byte of the runs (journals, logs).
    let runs = s.home.runs_bytes();
    assert!(
        !foundry_tests::leak::contains(&runs, TOKEN),
        "a run holds the secret"
    );
    assert!(
        !foundry_tests::leak::contains(&runs, &s.client_key),
        "a run holds the client key"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_chart_whose_job_fails_pauses_with_its_log_then_fixed_values_and_resume_complete_it() {
    let broken = "\
cluster:
  name: lab
components:
  contour:
    values:
      bogusKey: 1
";
    let s = stage(broken).await;
    let out = s.foundry(&["component", "install", "contour"]);
    assert!(!out.status.success(), "the install should stop");
    s.assert_clean("the failed install", &out);
    let runs = s.home.runs();
    assert_eq!(runs.len(), 1, "{runs:?}");
    assert_eq!(runs[0]["state"], "paused", "{runs:?}");
    let run = runs[0]["run"].as_str().expect("run id").to_string();
    let shown = s.home.show(&run).to_string();
    assert!(
        shown.contains("helm-install-contour failed")
            && shown.contains("Additional property bogusKey is not allowed"),
        "the Job's log is not in the run's error: {shown}"
    );
    let status = s.foundry(&["component", "status", "contour", "--output", "json"]);
    let status = foundry_tests::json_lines(&status.stdout);
    assert_eq!(status[0]["healthy"], false, "{status:?}");
    assert_eq!(
        status[0]["parts"]["HelmChart kube-system/contour"], "failed",
        "{status:?}"
    );

    let plan = s.json(&["stack", "plan"]);
    assert!(
        plan[0]["plan"]
            .to_string()
            .contains("install HelmChart kube-system/contour again (its last install failed)"),
        "{plan:?}"
    );

    // Fixed in the config, resumed: the same run completes with the new values.
    s.write_config("cluster:\n  name: lab\n");
    s.ok(&["workflow", "resume", &run]);
    wait_for("the run completed", Duration::from_secs(5), || {
        s.home.runs()[0]["state"] == "completed"
    });
    let chart = s.helmchart("contour").await.expect("the HelmChart");
    assert!(!chart.to_string().contains("bogusKey"), "{chart}");
    let status = s.json(&["component", "status", "contour"]);
    assert_eq!(status[0]["healthy"], true, "{status:?}");
    assert_eq!(status[0]["version"], "0.7.0", "{status:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_offline_chart_goes_as_chart_content_at_its_own_version_and_a_wrong_one_is_refused_before_any_run()
 {
    let dir = tempfile::tempdir().expect("tempdir");
    let contour = helm_package(dir.path(), "contour");
    let other = helm_package(dir.path(), "other");
    let config = |extra: &str| {
        format!(
            "cluster:\n  name: lab\ncomponents:\n  contour:\n    chart_file: {}\n{extra}",
            contour.display()
        )
    };
    let s = stage(&config("")).await;

    // Refused before any run: a version other than the archive's, another chart, an
    // archive helm cannot read, one over chartContent's 1 MiB, a relative path.
    let garbage = dir.path().join("garbage.tgz");
    std::fs::write(&garbage, b"not a chart").expect("write");
    let big = dir.path().join("big.tgz");
    let noise: Vec<u8> = (0..900 * 1024u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(&big, noise).expect("write");
    let refusals = [
        (
            config("    version: 0.7.0\n"),
            "holds contour 0.1.0, but components.contour.version asks for 0.7.0",
        ),
        (
            config("").replace(&contour.display().to_string(), &other.display().to_string()),
            "holds the chart other 0.1.0, not contour",
        ),
        (
            config("").replace(
                &contour.display().to_string(),
                &garbage.display().to_string(),
            ),
            "garbage.tgz is not a chart archive helm can read",
        ),
        (
            config("").replace(&contour.display().to_string(), &big.display().to_string()),
            "over the 1 MiB a HelmChart's chartContent may hold",
        ),
        (
            config("").replace(&contour.display().to_string(), "charts/contour.tgz"),
            "components.contour.chart_file `charts/contour.tgz` is not an absolute path",
        ),
    ];
    for (text, said) in &refusals {
        s.write_config(text);
        let out = s.foundry(&["component", "install", "contour"]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{said}: installed anyway");
        assert!(stderr.contains(said), "expected `{said}` in:\n{stderr}");
        assert!(s.home.runs().is_empty(), "{said}: a run was started");
    }
    assert!(
        s.helmchart("contour").await.is_none(),
        "a refused install reached the API"
    );

    // The archive itself: sent as chartContent, no repo, installed at its own version.
    s.write_config(&config(""));
    s.ok(&["component", "install", "contour"]);
    let chart = s.helmchart("contour").await.expect("the HelmChart");
    let spec = &chart["spec"];
    let sent = STANDARD
        .decode(spec["chartContent"].as_str().expect("chartContent"))
        .expect("base64");
    assert_eq!(sent, std::fs::read(&contour).expect("read"), "{spec}");
    assert!(
        spec.get("repo").is_none() && spec.get("version").is_none(),
        "{spec}"
    );
    let status = s.json(&["component", "status", "contour"]);
    assert_eq!(status[0]["healthy"], true, "{status:?}");
    assert_eq!(status[0]["version"], "0.1.0", "{status:?}");
    assert_eq!(status[0]["expected_version"], "0.1.0", "{status:?}");
    // Asked again, nothing changes; an upgrade to a version the file does not hold is
    // refused with what to do.
    let again = s.json(&["component", "install", "contour"]);
    assert_eq!(
        again.last().expect("a result")["changed"],
        false,
        "{again:?}"
    );
    let out = s.foundry(&["component", "upgrade", "contour", "--to", "0.2.0", "--yes"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "upgraded past the chart file: {stderr}"
    );
    assert!(
        stderr
            .contains("contour 0.2.0 was asked for, but components.contour.chart_file holds 0.1.0")
            && stderr.contains("helm pull contour --version 0.2.0"),
        "{stderr}"
    );
}

/// An ACME directory on loopback that answers once `open` is called: until then its port
/// is bound but nothing accepts, so a client's request times out, as one to a server out
/// of reach does.
struct AcmeDirectory {
    listener: Option<std::net::TcpListener>,
    url: String,
}

impl AcmeDirectory {
    fn bound() -> AcmeDirectory {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let url = format!(
            "http://{}/directory",
            listener.local_addr().expect("address")
        );
        AcmeDirectory {
            listener: Some(listener),
            url,
        }
    }

    /// Answers every request with a directory naming `newAccount`, from now on.
    fn open(&mut self) {
        let listener = self.listener.take().expect("opened once");
        let base = self.url.trim_end_matches("/directory").to_string();
        std::thread::spawn(move || {
            use std::io::{Read, Write};
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { return };
                let mut buf = [0u8; 4096];
                let _ = stream.read(&mut buf);
                let body = format!(
                    r#"{{"newNonce":"{base}/nonce","newAccount":"{base}/account","newOrder":"{base}/order"}}"#
                );
                let _ = write!(
                    stream,
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_acme_issuer_not_ready_fails_the_install_naming_cert_managers_reason_and_resume_completes_it_once_its_server_answers()
 {
    let mut acme = AcmeDirectory::bound();
    let config = format!(
        "cluster:\n  name: lab\ncomponents:\n  cert_manager:\n    issuer:\n      \
         ready_timeout: 4s\n      acme:\n        email: ops@example.com\n        server: {}\n",
        acme.url
    );
    let s = stage(&config).await;
    let out = s.foundry(&["component", "install", "cert-manager"]);
    assert!(!out.status.success(), "the install should stop");
    s.assert_clean("the failed install", &out);
    let runs = s.home.runs();
    assert_eq!(runs.len(), 1, "{runs:?}");
    assert_eq!(runs[0]["state"], "failed", "{runs:?}");
    let run = runs[0]["run"].as_str().expect("run id").to_string();
    let shown = s.home.show(&run).to_string();
    assert!(
        shown.contains("ClusterIssuer letsencrypt is not Ready after 4s")
            && shown.contains("ErrRegisterACMEAccount: Failed to register ACME account")
            && shown.contains("hint: the ACME server did not register the account"),
        "the issuer's reason is not in the run's error: {shown}"
    );
    let issuer = s.clusterissuer("letsencrypt").await.expect("the issuer");
    assert_eq!(ready_condition(&issuer)["status"], "False", "{issuer}");
    let status = s.foundry(&["component", "status", "cert-manager", "--output", "json"]);
    let status = foundry_tests::json_lines(&status.stdout);
    assert_eq!(status[0]["healthy"], false, "{status:?}");
    assert_eq!(
        status[0]["parts"]["ClusterIssuer letsencrypt"], "not ready",
        "{status:?}"
    );

    // The server answers now: the same run, resumed, completes once the issuer is Ready.
    acme.open();
    s.ok(&["workflow", "resume", &run]);
    wait_for("the run completed", Duration::from_secs(5), || {
        s.home.runs()[0]["state"] == "completed"
    });
    let issuer = s.clusterissuer("letsencrypt").await.expect("the issuer");
    let ready = ready_condition(&issuer);
    assert_eq!(ready["status"], "True", "{issuer}");
    assert_eq!(ready["reason"], "ACMEAccountRegistered", "{issuer}");
    let status = s.json(&["component", "status", "cert-manager"]);
    assert_eq!(status[0]["healthy"], true, "{status:?}");
}
