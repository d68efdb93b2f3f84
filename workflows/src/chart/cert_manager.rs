//! cert-manager, the cluster's certificates, from its only supported chart source
//! (`cert-manager` at https://charts.jetstack.io), pinned at v1.19.1, installed into
//! `cert-manager` with its CRDs (`crds.enabled`, the chart's value since v1.15, which
//! replaced `installCRDs`). Once the chart is deployed, the ClusterIssuer the config
//! describes is applied server-side: by default a CA of the cluster's own (a self-signed
//! issuer that issues the CA's certificate, then a CA issuer from its Secret, as
//! cert-manager's documentation bootstraps one), or ACME with an email (Let's Encrypt's
//! production directory unless another is named), solving HTTP-01 through Contour.

use serde_json::{Value, json};

use super::ChartComponent;
use super::objects::{NotReadyReason, ReadyWait};
use crate::component::ComponentError;
use crate::config::StackConfig;
use crate::config::charts::CertManagerConfig;
use foundry_activities::kube::KubeObject;
use foundry_core::PollPolicy;

const NAMESPACE: &str = "cert-manager";
const LETSENCRYPT: &str = "https://acme-v02.api.letsencrypt.org/directory";

pub static CERT_MANAGER: ChartComponent = ChartComponent {
    name: "cert-manager",
    aliases: &["cert_manager"],
    about: "cert-manager: the cluster's certificates and its ClusterIssuer, a chart",
    needs: &["k3s"],
    release: "cert-manager",
    namespace: NAMESPACE,
    repo: "https://charts.jetstack.io",
    chart: "cert-manager",
    version: "v1.19.1",
    defaults,
    config: |stack| cert_manager(stack).chart(),
    then_apply: issuer,
    ready: ready_wait,
};

/// What a ClusterIssuer's (or a Certificate's) not-Ready reason means, as cert-manager v1
/// sets them (pkg/issuer/ca/setup.go, pkg/issuer/acme/setup.go, the certificates
/// controller's readiness): `(reason, permanent, hint)`. Permanent: waiting does not
/// change it, a person must. A reason not listed is waited through.
const REASONS: &[(&str, bool, &str)] = &[
    (
        "ErrGetKeyPair",
        false,
        "the CA's Secret (the issuer's ca.secretName, in the cert-manager namespace) is \
         missing or lacks tls.crt or tls.key: Foundry's Certificate of the same name issues \
         it (`kubectl describe certificate -n cert-manager NAME`), or put a CA's tls.crt and \
         tls.key there",
    ),
    (
        "ErrInvalidKeyPair",
        true,
        "the CA's Secret holds a certificate that is not a CA: put a CA's tls.crt and \
         tls.key there, or delete the Secret so that its Certificate issues it again",
    ),
    (
        "ErrRegisterACMEAccount",
        false,
        "the ACME server did not register the account: check \
         components.cert_manager.issuer.acme (server, email) and that the cluster reaches \
         the server",
    ),
    (
        "InvalidConfig",
        true,
        "cert-manager refused the issuer's configuration: fix \
         components.cert_manager.issuer",
    ),
    (
        "DoesNotExist",
        false,
        "the Certificate's Secret is not issued yet: its issuer must be Ready first",
    ),
];

/// The install waits for the issuer (and what makes it) to be Ready, at most the config's
/// `issuer.ready_timeout`, looking every second.
fn ready_wait(stack: &StackConfig) -> Option<ReadyWait> {
    let config = cert_manager(stack).issuer.unwrap_or_default();
    Some(ReadyWait {
        kinds: vec!["ClusterIssuer".into(), "Certificate".into()],
        poll: PollPolicy::new(1000, 0).within(config.ready_timeout()),
        reasons: REASONS
            .iter()
            .map(|(reason, permanent, hint)| NotReadyReason {
                reason: reason.to_string(),
                permanent: *permanent,
                hint: hint.to_string(),
            })
            .collect(),
    })
}

fn defaults() -> Value {
    json!({ "crds": { "enabled": true } })
}

fn cert_manager(stack: &StackConfig) -> CertManagerConfig {
    stack
        .components
        .as_ref()
        .map(|c| c.cert_manager.clone())
        .unwrap_or_default()
}

fn object(
    kind: &str,
    plural: &str,
    namespace: Option<&str>,
    name: &str,
    spec: Value,
) -> KubeObject {
    KubeObject {
        api_version: "cert-manager.io/v1".into(),
        kind: kind.into(),
        plural: plural.into(),
        namespace: namespace.map(str::to_string),
        name: name.into(),
        body: json!({
            "metadata": { "labels": { "app.kubernetes.io/managed-by": "foundry" } },
            "spec": spec,
        }),
    }
}

/// The ClusterIssuer (and, for the CA, what makes it), in the order they are applied.
pub fn issuer(stack: &StackConfig) -> Result<Vec<KubeObject>, ComponentError> {
    let config = cert_manager(stack).issuer.unwrap_or_default();
    let cluster = stack
        .cluster
        .as_ref()
        .map(|c| c.name.clone())
        .unwrap_or_default();
    if let Some(acme) = &config.acme {
        let name = config.name.unwrap_or_else(|| "letsencrypt".into());
        let server = acme
            .server
            .as_ref()
            .map(|s| s.to_string())
            .unwrap_or_else(|| LETSENCRYPT.into());
        return Ok(vec![object(
            "ClusterIssuer",
            "clusterissuers",
            None,
            &name,
            json!({ "acme": {
                "email": acme.email,
                "server": server,
                "privateKeySecretRef": { "name": format!("{name}-account-key") },
                "solvers": [{ "http01": { "ingress": { "ingressClassName": "contour" } } }],
            }}),
        )]);
    }
    let name = config.name.unwrap_or_else(|| "foundry-ca".into());
    let bootstrap = format!("{name}-selfsigned");
    Ok(vec![
        object(
            "ClusterIssuer",
            "clusterissuers",
            None,
            &bootstrap,
            json!({ "selfSigned": {} }),
        ),
        object(
            "Certificate",
            "certificates",
            Some(NAMESPACE),
            &name,
            json!({
                "isCA": true,
                "commonName": format!("{name} ({cluster})"),
                "secretName": name,
                "privateKey": { "algorithm": "ECDSA", "size": 256 },
                "issuerRef": { "name": bootstrap, "kind": "ClusterIssuer", "group": "cert-manager.io" },
            }),
        ),
        object(
            "ClusterIssuer",
            "clusterissuers",
            None,
            &name,
            json!({ "ca": { "secretName": name } }),
        ),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ca_by_default_acme_when_asked() {
        let stack: StackConfig = crate::config::parse(
            std::path::Path::new("stack.yaml"),
            "cluster:\n  name: lab\n",
        )
        .expect("config");
        let objects = issuer(&stack).expect("issuer");
        let said: Vec<String> = objects.iter().map(|o| o.said()).collect();
        assert_eq!(
            said,
            [
                "ClusterIssuer foundry-ca-selfsigned",
                "Certificate cert-manager/foundry-ca",
                "ClusterIssuer foundry-ca"
            ]
        );
        let stack: StackConfig = crate::config::parse(
            std::path::Path::new("stack.yaml"),
            "cluster:\n  name: lab\ncomponents:\n  cert_manager:\n    issuer:\n      \
             acme:\n        email: ops@example.com\n",
        )
        .expect("config");
        let objects = issuer(&stack).expect("issuer");
        assert_eq!(objects.len(), 1);
        assert_eq!(objects[0].said(), "ClusterIssuer letsencrypt");
        assert_eq!(objects[0].body["spec"]["acme"]["email"], "ops@example.com");
        assert_eq!(objects[0].body["spec"]["acme"]["server"], LETSENCRYPT);
    }
}
