//! A `kube` client from a kubeconfig that is a secret: the kubeconfig holds the client key,
//! so it reaches an activity only as a [`SecretRef`] revealed with `cx.reveal`, never in an
//! input, an output, an error or a log line.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

use ::kube::config::{KubeConfigOptions, Kubeconfig};
use ::kube::core::Status;
use foundry_core::{ActivityCx, ActivityError, SecretRef};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// How long one request may wait for its answer.
const READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Where a cluster's API is and how to reach it: the kubeconfig (a secret) and, when
/// given, the server URL that replaces the kubeconfig's (the VIP, or the API's DNS name).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KubeAccess {
    pub kubeconfig: SecretRef,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<String>,
}

impl KubeAccess {
    /// Where requests go, for errors: the replaced server or the kubeconfig's name.
    pub fn place(&self) -> String {
        match &self.server {
            Some(url) => format!("the Kubernetes API at {url}"),
            None => format!("the Kubernetes API of kubeconfig {}", self.kubeconfig),
        }
    }

    /// The process's client for this kubeconfig and URL, made on first use.
    pub async fn client(&self, cx: &ActivityCx) -> Result<::kube::Client, ActivityError> {
        let kubeconfig = cx.reveal(&self.kubeconfig)?;
        let mut hasher = Sha256::new();
        hasher.update(kubeconfig.expose().as_bytes());
        hasher.update([0]);
        hasher.update(self.server.as_deref().unwrap_or("").as_bytes());
        let key: [u8; 32] = hasher.finalize().into();
        if let Some(client) = clients().lock().ok().and_then(|c| c.get(&key).cloned()) {
            return Ok(client);
        }
        let client = build(kubeconfig.expose(), self.server.as_deref(), &self.place()).await?;
        if let Ok(mut cache) = clients().lock() {
            cache.insert(key, client.clone());
        }
        Ok(client)
    }
}

/// One client per (kubeconfig, URL) per process, reused: keyed by a digest, so the map
/// holds no kubeconfig.
fn clients() -> &'static Mutex<HashMap<[u8; 32], ::kube::Client>> {
    static CLIENTS: OnceLock<Mutex<HashMap<[u8; 32], ::kube::Client>>> = OnceLock::new();
    CLIENTS.get_or_init(Default::default)
}

/// A client with the cluster's CA pinned from the kubeconfig, no proxy (neither the
/// kubeconfig's `proxy-url` nor `HTTPS_PROXY`, which kube otherwise reads), no redirect
/// (kube's hyper client follows none) and no retry of its own (kube would retry a 429 for
/// minutes inside one call: the engine's retry schedule owns retries).
async fn build(
    kubeconfig: &str,
    server: Option<&str>,
    place: &str,
) -> Result<::kube::Client, ActivityError> {
    // kube's own errors may quote the document: they are not passed on.
    let parsed = Kubeconfig::from_yaml(kubeconfig).map_err(|_| {
        ActivityError::permanent(format!(
            "{place}: the kubeconfig is not a valid kubeconfig document\nhint: store the \
             kubeconfig K3s writes (/etc/rancher/k3s/k3s.yaml) under this reference"
        ))
    })?;
    let mut config = ::kube::Config::from_custom_kubeconfig(parsed, &KubeConfigOptions::default())
        .await
        .map_err(|e| {
            ActivityError::permanent(format!(
                "{place}: the kubeconfig cannot be used: {}\nhint: store the kubeconfig K3s \
                 writes (/etc/rancher/k3s/k3s.yaml) under this reference",
                kind_of(&e.to_string())
            ))
        })?;
    if config.accept_invalid_certs {
        return Err(ActivityError::permanent(format!(
            "{place}: the kubeconfig turns certificate checks off (insecure-skip-tls-verify)\n\
             hint: give the cluster's CA (certificate-authority-data), as K3s writes it"
        )));
    }
    if config.root_cert.is_none() {
        return Err(ActivityError::permanent(format!(
            "{place}: the kubeconfig names no certificate authority for the cluster\nhint: \
             give the cluster's CA (certificate-authority-data), as K3s writes it"
        )));
    }
    if config.auth_info.exec.is_some() || config.auth_info.auth_provider.is_some() {
        return Err(ActivityError::permanent(format!(
            "{place}: the kubeconfig runs a credential plugin\nhint: give a kubeconfig with a \
             client certificate or a token, as K3s writes it"
        )));
    }
    if let Some(url) = server {
        config.cluster_url = url
            .parse()
            .map_err(|e| ActivityError::permanent(format!("{place}: {url} is not a URL: {e}")))?;
        // The certificate is checked against the URL's host: the VIP and the API's DNS
        // name are among the server's names (tls-san).
        config.tls_server_name = None;
    }
    if config.cluster_url.scheme_str() != Some("https") {
        return Err(ActivityError::permanent(format!(
            "{place}: the API's URL {} is not https\nhint: the kubeconfig carries a client \
             key: Foundry sends it only over TLS",
            config.cluster_url
        )));
    }
    config.proxy_url = None;
    config.default_retry = false;
    // No watch or exec goes through these clients: a stalled API fails a request
    // rather than holding a step past its deadline.
    config.read_timeout = Some(READ_TIMEOUT);
    config.reset_reader_on_write = true;
    ::kube::Client::try_from(config).map_err(|e| {
        ActivityError::permanent(format!(
            "{place}: cannot make a client: {}",
            kind_of(&e.to_string())
        ))
    })
}

/// The first line of a library's message, cut short: kubeconfig errors may quote the
/// document they failed on.
fn kind_of(message: &str) -> String {
    let line = message.lines().next().unwrap_or("");
    line.chars().take(120).collect()
}

/// A kube error as an activity error: what was done, where, and whether retrying helps.
pub fn api_error(doing: &str, place: &str, e: ::kube::Error) -> ActivityError {
    match e {
        ::kube::Error::Api(status) => status_error(doing, place, &status),
        ::kube::Error::HyperError(e) => {
            ActivityError::transient(format!("{doing} at {place}: connection failed: {e}"))
        }
        ::kube::Error::Service(e) => {
            ActivityError::transient(format!("{doing} at {place}: connection failed: {e}"))
        }
        other => ActivityError::permanent(format!("{doing} at {place}: {other}")),
    }
}

/// A Status answer as an activity error.
pub fn status_error(doing: &str, place: &str, status: &Status) -> ActivityError {
    let text = format!(
        "{doing} at {place}: {} {}: {}",
        status.code, status.reason, status.message
    );
    match status.code {
        401 | 403 => ActivityError::permanent(format!(
            "{text}\nhint: the kubeconfig's credentials are refused: store the cluster's current \
             admin kubeconfig under this reference"
        )),
        409 | 429 | 500.. => ActivityError::transient(text),
        _ => ActivityError::permanent(text),
    }
}

/// Whether `e` is the API's 404.
pub fn is_not_found(e: &::kube::Error) -> bool {
    matches!(e, ::kube::Error::Api(s) if s.code == 404)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use foundry_core::SecretValue;
    use foundry_core::secret::{MemorySecretStore, SecretStore};

    use super::*;

    fn cx_with(value: &str) -> (ActivityCx, SecretRef) {
        let store = Arc::new(MemorySecretStore::default());
        let reference = store
            .put(&SecretValue::new(value.to_string()))
            .expect("put");
        (
            ActivityCx::standalone("kube-test").with_secrets(store),
            reference,
        )
    }

    const KEY: &str = "LS0tLS1CRUdJTiBQUklWQVRFIEtFWS0tLS0tc2VjcmV0LWtleS1ieXRlcw==";

    fn kubeconfig(extra_cluster: &str) -> String {
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: default\n  cluster:\n    server: \
             https://127.0.0.1:6443\n{extra_cluster}contexts:\n- name: default\n  context:\n    \
             cluster: default\n    user: default\ncurrent-context: default\nusers:\n- name: \
             default\n  user:\n    token: {KEY}\n"
        )
    }

    #[tokio::test]
    async fn a_kubeconfig_without_a_ca_is_refused_and_the_error_holds_no_credential() {
        let (cx, reference) = cx_with(&kubeconfig(""));
        let access = KubeAccess {
            kubeconfig: reference,
            server: None,
        };
        let Err(e) = access.client(&cx).await else {
            panic!("no CA: a client was made");
        };
        assert!(e.message.contains("no certificate authority"), "{e}");
        assert!(!e.message.contains(KEY), "{e}");
        assert!(!e.transient);
    }

    #[tokio::test]
    async fn certificate_checks_turned_off_are_refused() {
        let (cx, reference) = cx_with(&kubeconfig("    insecure-skip-tls-verify: true\n"));
        let access = KubeAccess {
            kubeconfig: reference,
            server: None,
        };
        let Err(e) = access.client(&cx).await else {
            panic!("insecure: a client was made");
        };
        assert!(e.message.contains("insecure-skip-tls-verify"), "{e}");
    }

    #[tokio::test]
    async fn a_broken_kubeconfig_is_not_quoted() {
        let (cx, reference) = cx_with(&format!("users: [{KEY}"));
        let access = KubeAccess {
            kubeconfig: reference,
            server: None,
        };
        let Err(e) = access.client(&cx).await else {
            panic!("broken: a client was made");
        };
        assert!(e.message.contains("not a valid kubeconfig"), "{e}");
        assert!(!e.message.contains(KEY), "{e}");
    }
}
