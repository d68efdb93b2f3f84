//! The K3s cluster: `cluster init` (the first server, embedded etcd with `cluster-init`,
//! kube-vip for the API's VIP, the kubeconfig kept in OpenBAO) and `cluster node add`
//! (servers strictly one at a time, agents side by side with a cap), every node installed
//! by the one per-node install of [`node`]. The server token and the kubeconfig live in
//! OpenBAO at [`K3S_SECRET_PATH`] (keys `token` and `kubeconfig`): never in the journal,
//! an event, a log line or a remote argv.

pub mod add;
pub mod component;
pub mod init;
pub mod kube_vip;
pub mod node;
pub mod remove;
pub mod status;
pub mod upgrade;

use crate::component::ComponentError;
use crate::config::schema::K3sSource;
use crate::config::{NodeRole, StackConfig};

pub use node::{K3sArtifact, K3sSetup, NodeHost, Role};

/// Where OpenBAO keeps the cluster's secrets: keys `token` and `kubeconfig`.
pub const K3S_SECRET_PATH: &str = "foundry-core/k3s";
/// The Kubernetes API's port on a server and on the VIP.
pub const API_PORT: u16 = 6443;

/// The API at `address`: `https://ADDRESS:6443`.
pub fn api_url(address: &str) -> String {
    crate::config::https_url(address, API_PORT)
}

/// The one choice of the cluster's API URL: nodes join through it, their readiness and
/// the cluster's status are asked of it, the kept kubeconfig points at it. The VIP
/// (`https://VIP:6443`, which kube-vip holds on one of the servers) for a cluster that has
/// one and more than one node; the first server's own address for a single node, or for a
/// cluster without a VIP.
pub fn api_server(setup: &K3sSetup, first: &NodeHost, single_node: bool) -> String {
    match (&setup.vip, single_node) {
        (Some(vip), false) => api_url(vip),
        _ => api_url(&first.address),
    }
}

/// The cluster as the stack config places it.
#[derive(Clone, Debug)]
pub struct ClusterPlan {
    pub setup: K3sSetup,
    /// The first control-plane node of `cluster.nodes`: the one `cluster init` makes.
    pub first: NodeHost,
    pub agents_at_once: u32,
    /// `cluster.nodes` names one node: no kube-vip, the API at the first server.
    pub single_node: bool,
}

/// The step that gives a run one of the cluster's secrets from OpenBAO (`generate`: made
/// and written there when it is set nowhere).
pub fn secret(setup: &K3sSetup, key: &str, generate: bool) -> crate::secrets::EnsureStackSecret {
    crate::secrets::EnsureStackSecret {
        path: K3S_SECRET_PATH.into(),
        key: key.into(),
        purpose: match key {
            "token" => "cluster's server token".into(),
            _ => "cluster's admin kubeconfig".into(),
        },
        openbao: setup.openbao.clone(),
        generate,
        holder: None,
    }
}

impl ClusterPlan {
    /// From the stack config: `cluster:` and `components.k3s`.
    pub fn of(stack: &StackConfig) -> Result<ClusterPlan, ComponentError> {
        let cluster = stack.cluster.as_ref().ok_or_else(|| {
            ComponentError::unplaced("the stack config has no cluster")
                .hint("add `cluster:` with a name and nodes (a control-plane node first)")
        })?;
        let first = cluster
            .nodes
            .iter()
            .find(|n| n.role == NodeRole::ControlPlane)
            .ok_or_else(|| {
                ComponentError::unplaced("the stack config's cluster has no control-plane node")
                    .hint("add a node with `role: control-plane` under cluster.nodes")
            })?;
        let first = node_host(stack, &first.hostname)?;
        let k3s = stack
            .components
            .as_ref()
            .map(|c| c.k3s.clone())
            .unwrap_or_default();
        let file = |field: &str, path: &Option<crate::config::At<std::path::PathBuf>>| {
            path.as_ref().map(|p| p.value.clone()).ok_or_else(|| {
                ComponentError::new(format!(
                    "components.k3s.{field} is not set: Foundry uploads K3s from this machine"
                ))
                .hint(format!(
                    "set components.k3s.{field} to the path of K3s's {} on this machine",
                    if field == "binary" {
                        "binary"
                    } else {
                        "install.sh"
                    }
                ))
            })
        };
        let registry = match k3s.source.unwrap_or_default() {
            K3sSource::Path => None,
            K3sSource::Registry => Some(artifact(stack, &k3s)?),
        };
        // From the registry, the paths are only what an upgrade sends (none: refused there).
        let file = |field: &str, path: &Option<crate::config::At<std::path::PathBuf>>| match (
            &registry, path,
        ) {
            (Some(_), None) => Ok(std::path::PathBuf::new()),
            _ => file(field, path),
        };
        let vip = cluster
            .k8s_vip
            .as_ref()
            .or(stack.network.as_ref().and_then(|n| n.k8s_vip.as_ref()))
            .map(|v| v.value.to_string());
        let mut tls_san: Vec<String> = vip.iter().cloned().collect();
        if let Some(domain) = &cluster.domain {
            tls_san.push(format!("api.{}", domain.as_str().trim_end_matches('.')));
        }
        for san in &k3s.tls_san {
            if !tls_san.contains(&san.value) {
                tls_san.push(san.value.clone());
            }
        }
        Ok(ClusterPlan {
            setup: K3sSetup {
                cluster: cluster.name.clone(),
                binary: file("binary", &k3s.binary)?,
                installer: file("installer", &k3s.installer)?,
                disable: k3s.disabled(),
                tls_san,
                join_timeout_s: k3s.join_timeout().as_secs(),
                openbao: stack.openbao_url(),
                vip,
                kube_vip_image: kube_vip::KUBE_VIP_IMAGE.into(),
                registry,
            },
            first,
            agents_at_once: k3s.agents_at_once(),
            single_node: cluster.nodes.len() <= 1,
        })
    }

    /// The cluster's API: [`api_server`].
    pub fn api(&self) -> String {
        api_server(&self.setup, &self.first, self.single_node)
    }

    /// The other nodes of `cluster.nodes`, in config order: the control-plane nodes (to
    /// join as servers) and the workers (agents).
    pub fn others(
        &self,
        stack: &StackConfig,
    ) -> Result<(Vec<NodeHost>, Vec<NodeHost>), ComponentError> {
        let (mut servers, mut agents) = (Vec::new(), Vec::new());
        for node in stack.cluster.iter().flat_map(|c| c.nodes.iter()) {
            let host = node_host(stack, &node.hostname)?;
            if host.name == self.first.name {
                continue;
            }
            match node.role {
                NodeRole::ControlPlane => servers.push(host),
                NodeRole::Worker => agents.push(host),
            }
        }
        Ok((servers, agents))
    }

    /// The role `host` joins with: `--role`'s, else the one `cluster.nodes` gives it
    /// (control-plane: a server), else an agent.
    pub fn role_of(stack: &StackConfig, host: &NodeHost, given: Option<Role>) -> Role {
        given.unwrap_or_else(|| {
            let listed = stack.cluster.iter().flat_map(|c| c.nodes.iter()).find(|n| {
                stack
                    .host_named_or_at(&n.hostname)
                    .is_some_and(|h| h.name == host.name)
            });
            match listed.map(|n| n.role) {
                Some(NodeRole::ControlPlane) => Role::Server,
                _ => Role::Agent,
            }
        })
    }
}

/// K3s's artifact in the stack's registry: `foundry/k3s:<components.k3s.tag>` (the
/// release spelt as a tag, `+` as `-`) at the registry component's address, which the
/// nodes reach over the hosts' network.
pub fn artifact(
    stack: &StackConfig,
    k3s: &crate::config::schema::K3s,
) -> Result<K3sArtifact, ComponentError> {
    let tag = k3s.tag.as_ref().ok_or_else(|| {
        ComponentError::new("components.k3s.source is `registry` but components.k3s.tag is not set")
            .hint("set components.k3s.tag to the release pushed with `foundry registry push-k3s` (v1.32.4+k3s1)")
    })?;
    let place = crate::registry::component::Zot.place(stack).map_err(|e| {
        ComponentError::new(format!(
            "components.k3s.source is `registry` but the stack has no registry: {}",
            e.message
        ))
        .hint("place the registry with network.zot_hosts, or set components.k3s.source to `path`")
    })?;
    Ok(artifact_at(
        format!("http://{}:{}", place.address, crate::registry::PORT),
        tag,
    ))
}

/// K3s `release`'s artifact in the registry at `registry`.
pub fn artifact_at(registry: String, release: &str) -> K3sArtifact {
    K3sArtifact {
        registry,
        repository: node::K3S_REPOSITORY.into(),
        tag: crate::version::tag_of_release(release),
    }
}

/// The config's host named (or at) `entry`, as a node: its name, address and SSH target.
pub fn node_host(stack: &StackConfig, entry: &str) -> Result<NodeHost, ComponentError> {
    let host = stack.host_named_or_at(entry).ok_or_else(|| {
        ComponentError::new(format!("no host `{entry}` in the stack config's hosts"))
            .hint("add it with `foundry host add`, or name a host of `hosts:`")
    })?;
    let target = stack
        .ssh_target(host)
        .map_err(|e| ComponentError::new(e.message).hint(e.hint))?;
    Ok(NodeHost {
        name: host.name.clone(),
        address: host.address.clone(),
        target,
    })
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::config::parse;

    const HOSTS: &str = "hosts:\n  - {name: cp-1, address: 10.0.0.11, key: /k, host_key: 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAILyWnI75cIn29qycIBWNSFj7o6H+VCipxWbxejjNvknm'}\n  - {name: w-1, address: 10.0.0.21, key: /k, host_key: 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAILyWnI75cIn29qycIBWNSFj7o6H+VCipxWbxejjNvknm'}\n";
    const CLUSTER: &str = "cluster:\n  name: lab\n  domain: lab.example\n  k8s_vip: 10.0.0.220\n  nodes:\n    - {hostname: cp-1, role: control-plane}\n    - {hostname: w-1, role: worker}\n";

    fn err(text: &str) -> String {
        parse(Path::new("/etc/stack.yaml"), text)
            .expect_err("refused")
            .to_string()
    }

    #[test]
    fn components_k3s_takes_what_an_air_gapped_install_needs() {
        let text = format!(
            "{HOSTS}{CLUSTER}components:\n  k3s:\n    tag: v1.32.4+k3s1\n    binary: /opt/k3s/k3s\n    installer: /opt/k3s/install.sh\n    disable: [traefik]\n    tls_san: [k8s.lab.example, 10.0.0.5]\n    agents_at_once: 3\n    join_timeout: 2m\n"
        );
        let stack = parse(Path::new("x"), &text).expect("parse");
        let plan = ClusterPlan::of(&stack).expect("placed");
        assert_eq!(plan.first.name, "cp-1");
        assert_eq!(plan.setup.binary, Path::new("/opt/k3s/k3s"));
        assert_eq!(plan.setup.installer, Path::new("/opt/k3s/install.sh"));
        assert_eq!(plan.setup.disable, ["traefik"]);
        assert_eq!(
            plan.setup.tls_san,
            [
                "10.0.0.220",
                "api.lab.example",
                "k8s.lab.example",
                "10.0.0.5"
            ],
            "the VIP and api.<domain> always"
        );
        assert_eq!(plan.agents_at_once, 3);
        assert_eq!(plan.setup.join_timeout_s, 120);
        assert_eq!(plan.setup.vip.as_deref(), Some("10.0.0.220"));
        let w = node_host(&stack, "w-1").expect("w-1");
        assert_eq!(ClusterPlan::role_of(&stack, &w, None), Role::Agent);
        assert_eq!(
            ClusterPlan::role_of(&stack, &w, Some(Role::Server)),
            Role::Server
        );
        assert_eq!(
            ClusterPlan::role_of(&stack, &plan.first, None),
            Role::Server
        );

        // The defaults.
        let text = format!(
            "{HOSTS}{CLUSTER}components:\n  k3s:\n    binary: /opt/k3s/k3s\n    installer: /opt/k3s/install.sh\n"
        );
        let plan = ClusterPlan::of(&parse(Path::new("x"), &text).expect("parse")).expect("placed");
        assert_eq!(plan.setup.disable, ["traefik", "servicelb"]);
        assert_eq!(plan.agents_at_once, 5);
        assert_eq!(plan.setup.join_timeout_s, 600);

        // No binary: said, with what to set.
        let stack = parse(Path::new("x"), &format!("{HOSTS}{CLUSTER}")).expect("parse");
        let e = ClusterPlan::of(&stack).expect_err("no binary");
        assert!(e.message.contains("components.k3s.binary"), "{}", e.message);
        // No cluster: the component is not placed.
        let stack = parse(Path::new("x"), HOSTS).expect("parse");
        assert!(ClusterPlan::of(&stack).expect_err("no cluster").unplaced);
    }

    #[test]
    fn k3s_from_the_registry_is_the_stacks_registry_at_the_configs_release() {
        let net = "network:\n  subnet: 10.0.0.0/24\n  gateway: 10.0.0.1\n  zot_hosts: [cp-1]\n";
        let zot = "  zot: {address: 10.0.0.44, docker_network: infra}\n";
        let text = format!(
            "{HOSTS}{net}{CLUSTER}components:\n{zot}  k3s:\n    source: registry\n    tag: v1.32.4+k3s1\n"
        );
        let plan = ClusterPlan::of(&parse(Path::new("x"), &text).expect("parse")).expect("placed");
        let artifact = plan.setup.registry.expect("from the registry");
        assert_eq!(artifact.registry, "http://10.0.0.44:5000");
        assert_eq!(artifact.reference(), "foundry/k3s:v1.32.4-k3s1");

        // No tag: said, with what to set.
        let text = format!("{HOSTS}{net}{CLUSTER}components:\n{zot}  k3s:\n    source: registry\n");
        let e = ClusterPlan::of(&parse(Path::new("x"), &text).expect("parse")).expect_err("no tag");
        assert!(e.message.contains("components.k3s.tag"), "{}", e.message);
        // No registry in the stack: said.
        let text = format!(
            "{HOSTS}{CLUSTER}components:\n  k3s:\n    source: registry\n    tag: v1.32.4+k3s1\n"
        );
        let e = ClusterPlan::of(&parse(Path::new("x"), &text).expect("parse"))
            .expect_err("no registry");
        assert!(
            e.message.contains("the stack has no registry"),
            "{}",
            e.message
        );
        // The path way stays the default.
        let text = format!(
            "{HOSTS}{CLUSTER}components:\n  k3s:\n    binary: /opt/k3s/k3s\n    installer: /opt/k3s/install.sh\n"
        );
        let plan = ClusterPlan::of(&parse(Path::new("x"), &text).expect("parse")).expect("placed");
        assert!(plan.setup.registry.is_none());
    }

    #[test]
    fn the_api_is_the_vip_for_several_nodes_and_the_first_server_otherwise() {
        let hosts = format!(
            "{HOSTS}  - {{name: cp-2, address: 10.0.0.12, key: /k, host_key: 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAILyWnI75cIn29qycIBWNSFj7o6H+VCipxWbxejjNvknm'}}\n  - {{name: w-2, address: 10.0.0.22, key: /k, host_key: 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAILyWnI75cIn29qycIBWNSFj7o6H+VCipxWbxejjNvknm'}}\n"
        );
        let k3s =
            "components:\n  k3s:\n    binary: /opt/k3s/k3s\n    installer: /opt/k3s/install.sh\n";
        let nodes = "  nodes:\n    - {hostname: w-1, role: worker}\n    - {hostname: cp-1, role: control-plane}\n    - {hostname: w-2, role: worker}\n    - {hostname: cp-2, role: control-plane}\n";
        let stack = |vip: &str, nodes: &str| {
            parse(
                Path::new("x"),
                &format!("{hosts}cluster:\n  name: lab\n{vip}{nodes}{k3s}"),
            )
            .expect("parse")
        };
        let ha = stack("  k8s_vip: 10.0.0.220\n", nodes);
        let plan = ClusterPlan::of(&ha).expect("placed");
        assert!(!plan.single_node);
        assert_eq!(plan.api(), "https://10.0.0.220:6443");
        // The component's install: init on cp-1, then cp-2 as a server and the workers as
        // agents, in config order; its joins and its kubeconfig through the VIP.
        let input = component::K3s.cluster_input(&ha).expect("input");
        assert_eq!(input.init.first.name, "cp-1");
        assert!(!input.init.single_node);
        assert_eq!(input.init.kubeconfig_server(), plan.api());
        let join = input.join.expect("nodes to join");
        let names = |n: &[NodeHost]| n.iter().map(|h| h.name.clone()).collect::<Vec<_>>();
        assert_eq!(names(&join.servers), ["cp-2"]);
        assert_eq!(names(&join.agents), ["w-1", "w-2"]);
        assert_eq!(join.join_url(), plan.api());

        // One node: no kube-vip, nothing to join, the first server's own API.
        let one = stack(
            "  k8s_vip: 10.0.0.220\n",
            "  nodes:\n    - {hostname: cp-1, role: control-plane}\n",
        );
        let plan = ClusterPlan::of(&one).expect("placed");
        assert!(plan.single_node);
        assert_eq!(plan.api(), "https://10.0.0.11:6443");
        let input = component::K3s.cluster_input(&one).expect("input");
        assert!(input.init.single_node && input.join.is_none());
        assert_eq!(input.init.kubeconfig_server(), "https://10.0.0.11:6443");

        // No VIP: the first server's address; an HA init without one is refused.
        let bare = stack("", nodes);
        let plan = ClusterPlan::of(&bare).expect("placed");
        assert_eq!(plan.api(), "https://10.0.0.11:6443");
        let mut input = component::K3s.cluster_input(&bare).expect("input");
        input.init.setup.openbao = Some("https://10.0.0.5:8200".into());
        assert_eq!(
            input.join.as_ref().map(|j| j.join_url()).as_deref(),
            Some("https://10.0.0.11:6443")
        );
        let refused = <component::K3sCluster as foundry_core::Workflow>::check(
            &component::K3sCluster,
            &input,
        );
        assert!(
            refused
                .as_ref()
                .is_err_and(|e| e.contains("cluster.k8s_vip")),
            "{refused:?}"
        );
    }

    #[test]
    fn a_bad_k3s_field_is_refused_at_its_place() {
        let bad = |k3s: &str| err(&format!("{HOSTS}{CLUSTER}components:\n  k3s:\n{k3s}"));
        let e = bad("    binaryy: /opt/k3s\n");
        assert!(
            e.contains("line 13 column 5: unknown field `binaryy`"),
            "{e}"
        );
        let e = bad("    binary: k3s\n");
        assert!(
            e.contains("line 13 column 13") && e.contains("not an absolute path"),
            "{e}"
        );
        let e = bad("    disable: [traefik, 'Bad;rm']\n");
        assert!(
            e.contains("line 13 column 24") && e.contains("disable[1]"),
            "{e}"
        );
        let e = bad("    tls_san: ['-oProxyCommand=x']\n");
        assert!(
            e.contains("line 13 column 15") && e.contains("tls_san[0]"),
            "{e}"
        );
        let e = bad("    agents_at_once: 0\n");
        assert!(
            e.contains("line 13 column 21") && e.contains("agents_at_once"),
            "{e}"
        );
        let e = bad("    join_timeout: soon\n");
        assert!(
            e.contains("line 13 column 19") && e.contains("not a duration"),
            "{e}"
        );
    }
}
