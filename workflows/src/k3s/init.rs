//! `k3s-init` (`foundry cluster init`): K3s on the cluster's first server. The token comes
//! from OpenBAO; only for a host with no cluster is one made (and written there first). A
//! host that already runs a cluster whose token OpenBAO does not hold is refused: Foundry
//! never makes a second cluster, nor a new token for an existing one. Then kube-vip's
//! manifest, the per-node install, the kubeconfig read from the server (never printed), its
//! server pointed at the VIP and kept in OpenBAO, and the node Ready in the API.

use foundry_activities::kube::{KubeAccess, NodesReady};
use foundry_activities::ssh::SshTarget;
use foundry_core::{
    Activity, ActivityCx, ActivityError, Ctx, InDoubt, RunError, SecretRef, SecretValue, Workflow,
};
use serde::{Deserialize, Serialize};

use super::node::{self, HostRead, K3sSetup, NodeHost, NodeOutput, Role};
use super::{K3S_SECRET_PATH, api_url, kube_vip};
use crate::secrets::{EnsureStackSecret, StackSecretOutput, Vault};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InitInput {
    pub setup: K3sSetup,
    pub first: NodeHost,
    /// No kube-vip: the kubeconfig points at the server's own address.
    #[serde(default)]
    pub single_node: bool,
}

impl InitInput {
    /// Where the kubeconfig kept in OpenBAO points: the VIP, or the server for a single node.
    pub fn kubeconfig_server(&self) -> String {
        super::api_server(&self.setup, &self.first, self.single_node)
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InitOutput {
    pub server: String,
    /// Where the kept kubeconfig points.
    pub api: String,
    /// `openbao` (an existing token) or `generated`.
    pub token_source: String,
    pub node: NodeOutput,
    pub kubeconfig_changed: bool,
}

impl InitOutput {
    pub fn changes(&self) -> Vec<String> {
        let mut said = Vec::new();
        if self.token_source == crate::secrets::GENERATED {
            said.push("server token made and kept in OpenBAO".to_string());
        }
        for file in &self.node.uploaded {
            said.push(format!("{file} written"));
        }
        if self.node.installed {
            said.push(format!("K3s installed on {}", self.server));
        }
        if self.kubeconfig_changed {
            said.push("kubeconfig kept in OpenBAO".into());
        }
        said
    }
}

#[derive(Default)]
pub struct K3sInit;

impl Workflow for K3sInit {
    const NAME: &'static str = "k3s-init";
    const VERSION: u32 = 1;
    type Input = InitInput;
    type Output = InitOutput;

    fn check(&self, input: &InitInput) -> Result<(), String> {
        if input.setup.openbao.is_none() {
            return Err("the cluster's token and kubeconfig are kept in OpenBAO, and the stack config places none: set network.openbao_hosts".into());
        }
        if !input.single_node && input.setup.vip.is_none() {
            return Err("an HA cluster needs the API's VIP: set cluster.k8s_vip (or init with --single-node)".into());
        }
        Ok(())
    }

    async fn run(&self, ctx: Ctx, input: InitInput) -> Result<InitOutput, RunError> {
        init(&ctx, &input).await
    }
}

/// `k3s-init`'s body, also the first part of the `k3s` component's install
/// ([`super::component::K3sCluster`]).
pub(crate) async fn init(ctx: &Ctx, input: &InitInput) -> Result<InitOutput, RunError> {
    let first = &input.first;
    if let Some(artifact) = &input.setup.registry {
        // K3s from the stack's registry: a release it lacks stops the run here, before any
        // node is touched.
        ctx.step("k3s/artifact", &artifact.resolve()).await?;
    }
    let existing = HostRead::new(
        first.target.clone(),
        &format!(
            "test -s {} && echo cluster || echo none",
            node::SERVER_TOKEN_PATH
        ),
    );
    let existing = ctx.step("k3s/existing", &existing).await?.text == "cluster";
    let token = InitToken {
        ensure: super::secret(&input.setup, "token", !existing),
        existing_on: existing.then(|| first.name.clone()),
    };
    let token = ctx.step("k3s/token", &token).await?;
    if existing {
        let check = TokenMatches {
            target: first.target.clone(),
            host: first.name.clone(),
            token: token.secret.clone(),
        };
        ctx.step("k3s/token-matches", &check).await?;
    }
    let manifest = match (&input.setup.vip, input.single_node) {
        (Some(vip), false) => {
            let interface = HostRead::new(
                first.target.clone(),
                &kube_vip::interface_script(&first.address, vip),
            );
            let interface = ctx.step("k3s/interface", &interface).await?.text;
            if interface.is_empty() {
                return Err(RunError::workflow(format!(
                    "{}: no interface routes to the VIP {vip}: is it in the hosts' network?",
                    first.name
                )));
            }
            Some(kube_vip::manifest(
                &input.setup.kube_vip_image,
                vip,
                &interface,
            ))
        }
        _ => None,
    };
    let node = node::install(
        &ctx.scope(&first.name),
        &input.setup,
        first,
        Role::Server,
        None,
        &token.secret,
        manifest.as_deref(),
    )
    .await?;
    let kept = KeepKubeconfig {
        target: first.target.clone(),
        host: first.name.clone(),
        server: input.kubeconfig_server(),
        openbao: input.setup.openbao.clone().unwrap_or_default(),
    };
    let kubeconfig = ctx.step("k3s/kubeconfig", &kept).await?;
    // Until the VIP answers (kube-vip runs from the manifest once the API does), the
    // first node's readiness is asked of its own API.
    let ready = NodesReady {
        access: KubeAccess {
            kubeconfig: kubeconfig.kubeconfig.clone(),
            server: Some(api_url(&first.address)),
        },
        nodes: vec![first.name.clone()],
        timeout_s: input.setup.join_timeout_s,
    };
    ctx.step("k3s/ready", &ready).await?;
    Ok(InitOutput {
        server: first.name.clone(),
        api: input.kubeconfig_server(),
        token_source: token.source,
        node,
        kubeconfig_changed: kubeconfig.changed,
    })
}

/// The server token for `cluster init`: [`EnsureStackSecret`], except that a host which
/// already runs a cluster (`existing_on`) whose token OpenBAO does not hold is refused,
/// saying what to do, instead of being given a token it was not made with.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InitToken {
    pub ensure: EnsureStackSecret,
    pub existing_on: Option<String>,
}

impl Activity for InitToken {
    type Output = StackSecretOutput;

    fn kind(&self) -> &'static str {
        "k3s-token"
    }

    fn in_doubt(&self) -> InDoubt {
        InDoubt::Probe
    }

    async fn probe(&self, cx: &ActivityCx) -> Result<Option<StackSecretOutput>, ActivityError> {
        self.ensure.probe(cx).await
    }

    async fn apply(&self, cx: &ActivityCx) -> Result<StackSecretOutput, ActivityError> {
        if let Some(host) = &self.existing_on
            && self.ensure.current().await?.is_none()
        {
            return Err(ActivityError::permanent(format!(
                "{host} already runs a K3s cluster, and OpenBAO holds no token for it \
                 ({K3S_SECRET_PATH}:token): Foundry will neither make a second cluster nor \
                 give this one a new token\nhint: keep the cluster's token in OpenBAO first \
                 (`foundry secret set {K3S_SECRET_PATH}:token`, the value of {} on {host}), \
                 or uninstall K3s there (k3s-uninstall.sh) to start anew",
                node::SERVER_TOKEN_PATH
            )));
        }
        self.ensure.apply(cx).await
    }
}

/// The server's own token file holds the token OpenBAO gives (its secret part: K3s
/// writes `K10<CA hash>::server:<secret>`); compared on the host, the token on stdin.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenMatches {
    pub target: SshTarget,
    pub host: String,
    pub token: SecretRef,
}

/// Prints `same` or `different`: the secret part of the token on stdin against the
/// server's token file's (`$f`, set before it).
const SAME_TOKEN: &str = r#"
secret() { case $1 in K10*::*) t=${1#*::}; echo "${t#*:}" ;; *) echo "$1" ;; esac; }
given=$(secret "$(cat)")
held=$(secret "$(cat "$f")")
if [ "$given" = "$held" ]; then echo same; else echo different; fi
"#;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Matched {
    pub same: bool,
}

impl Activity for TokenMatches {
    type Output = Matched;

    fn kind(&self) -> &'static str {
        "k3s-token-matches"
    }

    fn in_doubt(&self) -> InDoubt {
        InDoubt::Rerun
    }

    async fn probe(&self, _cx: &ActivityCx) -> Result<Option<Matched>, ActivityError> {
        Ok(None)
    }

    async fn apply(&self, cx: &ActivityCx) -> Result<Matched, ActivityError> {
        let token = cx.reveal(&self.token)?;
        let script = format!("f='{}'\n{SAME_TOKEN}", node::SERVER_TOKEN_PATH);
        let (code, out, err) =
            node::capture(&self.target, &script, Some(token.expose().as_bytes()), cx).await?;
        if code != 0 {
            return Err(ActivityError::transient(format!(
                "{}: comparing the cluster's token exited with status {code}: {err}",
                self.host
            )));
        }
        if String::from_utf8_lossy(&out).trim() != "same" {
            return Err(ActivityError::permanent(format!(
                "the cluster on {} was made with another token than the one OpenBAO holds \
                 ({K3S_SECRET_PATH}:token)\nhint: put the cluster's own token in OpenBAO \
                 (`foundry secret set {K3S_SECRET_PATH}:token`, from {} on {}); Foundry never \
                 changes a cluster's token",
                self.host,
                node::SERVER_TOKEN_PATH,
                self.host
            )));
        }
        Ok(Matched { same: true })
    }
}

/// The admin kubeconfig K3s wrote on the server, read over SSH into memory (never shown),
/// its `server:` set to `server`, kept in OpenBAO (`kubeconfig`, written only when it
/// differs) and in the run's store.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeepKubeconfig {
    pub target: SshTarget,
    pub host: String,
    pub server: String,
    pub openbao: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeptKubeconfig {
    pub kubeconfig: SecretRef,
    /// OpenBAO's copy was written.
    pub changed: bool,
}

/// The kubeconfig `text` (YAML, or JSON, which is YAML too) with each cluster's `server`
/// set to `server`, as YAML; none when it is no kubeconfig (its text is never quoted: it
/// holds the client key).
pub fn pointed_at(text: &str, server: &str) -> Option<String> {
    let mut doc: serde_json::Value = serde_saphyr::from_str(text).ok()?;
    let clusters = doc.get_mut("clusters")?.as_array_mut()?;
    if clusters.is_empty() {
        return None;
    }
    for entry in clusters {
        let cluster = entry.get_mut("cluster")?.as_object_mut()?;
        cluster.insert("server".into(), serde_json::Value::String(server.into()));
    }
    serde_saphyr::to_string(&doc).ok()
}

impl Activity for KeepKubeconfig {
    type Output = KeptKubeconfig;

    fn kind(&self) -> &'static str {
        "k3s-kubeconfig"
    }

    fn in_doubt(&self) -> InDoubt {
        InDoubt::Rerun
    }

    async fn probe(&self, _cx: &ActivityCx) -> Result<Option<KeptKubeconfig>, ActivityError> {
        Ok(None)
    }

    async fn apply(&self, cx: &ActivityCx) -> Result<KeptKubeconfig, ActivityError> {
        let script = format!("cat {}", node::KUBECONFIG_PATH);
        let (code, out, err) = node::capture(&self.target, &script, None, cx).await?;
        if code != 0 {
            return Err(ActivityError::transient(format!(
                "{}: reading {} exited with status {code}: {err}",
                self.host,
                node::KUBECONFIG_PATH
            )));
        }
        let text = String::from_utf8(out).map_err(|_| {
            ActivityError::permanent(format!(
                "{}: {} is not text",
                self.host,
                node::KUBECONFIG_PATH
            ))
        })?;
        cx.redact(&SecretValue::new(text.clone()));
        let pointed = pointed_at(&text, &self.server).ok_or_else(|| {
            ActivityError::permanent(format!(
                "{}: {} is not a kubeconfig with clusters",
                self.host,
                node::KUBECONFIG_PATH
            ))
        })?;
        let value = SecretValue::new(pointed);
        let reference = cx.keep(&value)?;
        let vault = Vault::from_env(&self.openbao)?;
        let held = vault
            .read(K3S_SECRET_PATH)
            .await
            .map_err(|e| ActivityError::transient(format!("the cluster's kubeconfig: {e}")))?;
        let changed = held.get("kubeconfig") != Some(&value);
        if changed {
            vault
                .write(K3S_SECRET_PATH, "kubeconfig", &value)
                .await
                .map_err(|e| ActivityError::transient(format!("the cluster's kubeconfig: {e}")))?;
        }
        Ok(KeptKubeconfig {
            kubeconfig: reference,
            changed,
        })
    }
}

#[cfg(test)]
mod tests {
    /// The comparison script run here by `sh`: `given` on stdin, `held` in the file.
    fn compared(given: &str, held: &str) -> String {
        use std::io::Write;
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("token");
        std::fs::write(&file, format!("{held}\n")).expect("write");
        let script = format!("f='{}'\n{}", file.display(), super::SAME_TOKEN);
        let mut child = std::process::Command::new("sh")
            .args(["-c", &script])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("sh");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(given.as_bytes())
            .expect("stdin");
        let out = child.wait_with_output().expect("sh");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    #[test]
    fn the_token_is_compared_by_its_secret_whichever_form_each_side_has() {
        let full = "K10abc123::server:s3cret";
        assert_eq!(compared("s3cret", full), "same");
        assert_eq!(compared(full, full), "same");
        assert_eq!(compared("K10other::server:s3cret", full), "same");
        assert_eq!(compared("other", full), "different");
        assert_eq!(compared("s3cret", "K10abc123::server:other"), "different");
        assert_eq!(compared("", full), "different");
    }

    #[test]
    fn the_kubeconfig_is_pointed_at_the_vip_and_nothing_else_changes() {
        let yaml = "apiVersion: v1\nclusters:\n- cluster:\n    certificate-authority-data: QUJD\n    server: https://127.0.0.1:6443\n  name: default\nkind: Config\nusers:\n- name: default\n  user:\n    client-key-data: S0VZ\n";
        let json = r#"{"apiVersion": "v1", "clusters": [{"cluster": {"certificate-authority-data": "QUJD", "server": "https://127.0.0.1:6443"}, "name": "default"}], "kind": "Config", "users": [{"name": "default", "user": {"client-key-data": "S0VZ"}}]}"#;
        for text in [yaml, json] {
            let pointed =
                super::pointed_at(text, "https://10.77.3.220:6443").expect("a kubeconfig");
            let read: serde_json::Value = serde_saphyr::from_str(&pointed).expect("YAML");
            let mut want: serde_json::Value = serde_saphyr::from_str(text).expect("YAML");
            want["clusters"][0]["cluster"]["server"] = "https://10.77.3.220:6443".into();
            assert_eq!(read, want);
        }
        assert!(super::pointed_at("kind: Config\n", "https://x:6443").is_none());
        assert!(super::pointed_at("{", "https://x:6443").is_none());
    }
}
