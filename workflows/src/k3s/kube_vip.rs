//! kube-vip for the API's VIP, as it is deployed on K3s: a DaemonSet (ARP mode, control
//! plane only, leader election on the Lease `plndr-cp-lock` in kube-system) with its
//! ServiceAccount and RBAC, written to every server's manifests directory, from which
//! K3s's deploy controller applies it. The env is kube-vip's own, as its documentation
//! for K3s gives it.

use serde_json::{Value, json};

/// kube-vip's image, pinned.
pub const KUBE_VIP_IMAGE: &str = "ghcr.io/kube-vip/kube-vip:v0.8.9";
/// Where K3s's deploy controller reads manifests on a server.
pub const MANIFEST_PATH: &str = "/var/lib/rancher/k3s/server/manifests/kube-vip.yaml";
/// The Lease whose holder has the VIP.
pub const LEASE: &str = "plndr-cp-lock";

/// A script printing the interface the VIP goes on for a server at `address`: the one that
/// holds the server's own address (asking the route to the VIP would say `lo` on the server
/// that holds it already), else the one the VIP is routed through.
pub fn interface_script(address: &str, vip: &str) -> String {
    format!(
        "i=$(ip -o -4 addr show | awk -v a='{address}/' 'index($4, a) == 1 {{print $2; exit}}'); \
         [ -n \"$i\" ] || i=$(ip -o -4 route get '{vip}' | sed -n 's/.* dev \\([^ ]*\\).*/\\1/p'); \
         echo \"$i\""
    )
}

/// The manifest: ServiceAccount, ClusterRole, ClusterRoleBinding and DaemonSet, as one
/// YAML stream. `interface` is the servers' interface the VIP is added to.
pub fn manifest(image: &str, vip: &str, interface: &str) -> String {
    let docs = [
        json!({
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": {"name": "kube-vip", "namespace": "kube-system"},
        }),
        json!({
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {
                "name": "system:kube-vip-role",
                "annotations": {"rbac.authorization.kubernetes.io/autoupdate": "true"},
            },
            "rules": [
                {"apiGroups": [""], "resources": ["services/status"], "verbs": ["update"]},
                {"apiGroups": [""], "resources": ["services", "endpoints"],
                 "verbs": ["list", "get", "watch", "update"]},
                {"apiGroups": [""], "resources": ["nodes"],
                 "verbs": ["list", "get", "watch", "update", "patch"]},
                {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"],
                 "verbs": ["list", "get", "watch", "update", "create"]},
                {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"],
                 "verbs": ["list", "get", "watch", "update"]},
            ],
        }),
        json!({
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": "system:kube-vip-binding"},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": "system:kube-vip-role",
            },
            "subjects": [{"kind": "ServiceAccount", "name": "kube-vip", "namespace": "kube-system"}],
        }),
        daemon_set(image, vip, interface),
    ];
    docs.iter()
        .map(|doc| serde_saphyr::to_string(doc).unwrap_or_default())
        .collect::<Vec<_>>()
        .join("---\n")
}

fn daemon_set(image: &str, vip: &str, interface: &str) -> Value {
    let env: Vec<Value> = [
        ("vip_arp", "true"),
        ("port", "6443"),
        ("vip_interface", interface),
        ("vip_cidr", "32"),
        ("cp_enable", "true"),
        ("cp_namespace", "kube-system"),
        ("svc_enable", "false"),
        ("vip_leaderelection", "true"),
        ("vip_leasename", LEASE),
        ("vip_leaseduration", "5"),
        ("vip_renewdeadline", "3"),
        ("vip_retryperiod", "1"),
        ("address", vip),
    ]
    .iter()
    .map(|(name, value)| json!({"name": name, "value": value}))
    .collect();
    let control_plane =
        |key: &str| json!({"matchExpressions": [{"key": key, "operator": "Exists"}]});
    json!({
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": {
            "name": "kube-vip-ds",
            "namespace": "kube-system",
            "labels": {"app.kubernetes.io/name": "kube-vip-ds"},
        },
        "spec": {
            "selector": {"matchLabels": {"app.kubernetes.io/name": "kube-vip-ds"}},
            "template": {
                "metadata": {"labels": {"app.kubernetes.io/name": "kube-vip-ds"}},
                "spec": {
                    "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
                        "nodeSelectorTerms": [
                            control_plane("node-role.kubernetes.io/master"),
                            control_plane("node-role.kubernetes.io/control-plane"),
                        ],
                    }}},
                    "containers": [{
                        "name": "kube-vip",
                        "image": image,
                        "imagePullPolicy": "IfNotPresent",
                        "args": ["manager"],
                        "env": env,
                        "securityContext": {"capabilities": {"add": ["NET_ADMIN", "NET_RAW"]}},
                    }],
                    "hostNetwork": true,
                    "serviceAccountName": "kube-vip",
                    "tolerations": [
                        {"effect": "NoSchedule", "operator": "Exists"},
                        {"effect": "NoExecute", "operator": "Exists"},
                    ],
                },
            },
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each document of the stream, read back as YAML.
    fn documents(text: &str) -> Vec<Value> {
        text.split("---\n")
            .map(|doc| serde_saphyr::from_str(doc).expect("a YAML document"))
            .collect()
    }

    #[test]
    fn the_interface_is_the_one_holding_the_servers_address() {
        let out = std::process::Command::new("sh")
            .args(["-c", &interface_script("127.0.0.1", "127.0.0.2")])
            .output()
            .expect("sh");
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "lo");
    }

    #[test]
    fn the_manifest_is_kube_vips_daemon_set_in_arp_mode_for_the_control_plane() {
        let text = manifest(KUBE_VIP_IMAGE, "10.77.3.220", "eth0");
        let docs = documents(&text);
        let kinds: Vec<&str> = docs
            .iter()
            .map(|d| d["kind"].as_str().unwrap_or(""))
            .collect();
        assert_eq!(
            kinds,
            [
                "ServiceAccount",
                "ClusterRole",
                "ClusterRoleBinding",
                "DaemonSet"
            ]
        );
        let ds = &docs[3];
        assert_eq!(ds["metadata"]["namespace"], "kube-system");
        let pod = &ds["spec"]["template"]["spec"];
        assert_eq!(pod["hostNetwork"], true);
        assert_eq!(pod["serviceAccountName"], "kube-vip");
        let container = &pod["containers"][0];
        assert_eq!(container["image"], KUBE_VIP_IMAGE);
        let env: std::collections::BTreeMap<&str, &str> = container["env"]
            .as_array()
            .expect("env")
            .iter()
            .map(|e| {
                (
                    e["name"].as_str().unwrap_or(""),
                    e["value"].as_str().unwrap_or(""),
                )
            })
            .collect();
        for (name, value) in [
            ("vip_arp", "true"),
            ("address", "10.77.3.220"),
            ("port", "6443"),
            ("vip_interface", "eth0"),
            ("cp_enable", "true"),
            ("vip_leaderelection", "true"),
            ("vip_leasename", "plndr-cp-lock"),
        ] {
            assert_eq!(env.get(name), Some(&value), "{name} in {text}");
        }
        let caps = &container["securityContext"]["capabilities"]["add"];
        assert_eq!(caps, &json!(["NET_ADMIN", "NET_RAW"]));
        let terms = &pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
            ["nodeSelectorTerms"];
        assert_eq!(
            terms[1]["matchExpressions"][0]["key"],
            "node-role.kubernetes.io/control-plane"
        );
        let binding = &docs[2];
        assert_eq!(binding["subjects"][0]["name"], "kube-vip");
        assert_eq!(binding["roleRef"]["name"], docs[1]["metadata"]["name"]);
        // The same input renders the same bytes: the upload is probed by hash.
        assert_eq!(text, manifest(KUBE_VIP_IMAGE, "10.77.3.220", "eth0"));
    }
}
