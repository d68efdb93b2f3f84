//! `k3s-node-remove` (`foundry cluster node remove HOST`): one node out of the cluster as
//! one durable run. A server whose removal would leave etcd without a quorum is refused
//! (etcd needs a majority of its voters to remove a member at all, and to work after);
//! otherwise: cordon, drain (evictions that honour disruption budgets, bounded), delete the
//! Node, wait until the server's etcd member is gone (K3s's controller removes it with the
//! Node; Foundry removes it itself when that has not happened in time), then K3s's own
//! uninstall script, detached.

use foundry_activities::k3s::{EtcdMember, EtcdMemberGone, EtcdMembers};
use foundry_activities::kube::{Cordon, DeleteNode, DrainNode, KubeAccess};
use foundry_activities::ssh::SshDetached;
use foundry_core::{Ctx, RetryPolicy, RunError, Workflow};
use serde::{Deserialize, Serialize};

use super::add::joining;
use super::node::{K3sSetup, NodeHost, Role};
use super::status::quorum;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemoveInput {
    pub setup: K3sSetup,
    pub node: NodeHost,
    /// As the cluster labels the node.
    pub role: Role,
    /// The API that answered when the removal was asked (`https://…:6443`).
    pub api: String,
    /// Another server, where etcd is read (a server's removal needs one).
    pub etcd_on: Option<NodeHost>,
    pub drain_timeout_s: u64,
    /// How long K3s has to remove a server's etcd member after its Node is deleted (half),
    /// and Foundry after it (the other half).
    pub member_timeout_s: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemoveOutput {
    pub node: String,
    pub role: Role,
    pub evicted: Vec<String>,
    /// The etcd members Foundry removed itself (K3s's controller had not).
    pub members_removed: Vec<String>,
}

impl RemoveOutput {
    pub fn changes(&self) -> Vec<String> {
        let mut out = vec![format!(
            "{} drained ({} pods evicted), deleted and uninstalled",
            self.node,
            self.evicted.len()
        )];
        if !self.members_removed.is_empty() {
            out.push(format!(
                "etcd member {} removed by Foundry",
                self.members_removed.join(", ")
            ));
        }
        out
    }
}

/// Why removing the server `node` would break etcd's quorum, given the members now; none
/// when it would not. A learner's removal never does.
pub fn quorum_refusal(node: &str, members: &[EtcdMember]) -> Option<String> {
    let voters = members.iter().filter(|m| !m.is_learner).count();
    let votes = members.iter().any(|m| m.node == node && !m.is_learner);
    if !votes {
        return None;
    }
    let left = voters - 1;
    let needed = quorum(voters);
    (left < needed).then(|| {
        format!(
            "removing {node} would leave etcd {left} of its {voters} voters, and etcd needs \
             {needed} (a majority of {voters}) to remove a member and keep working\nhint: \
             join another server first (`foundry cluster node add HOST --role server`): \
             with 3 voters one can go"
        )
    })
}

#[derive(Default)]
pub struct K3sNodeRemove;

impl Workflow for K3sNodeRemove {
    const NAME: &'static str = "k3s-node-remove";
    const VERSION: u32 = 1;
    type Input = RemoveInput;
    type Output = RemoveOutput;

    fn check(&self, input: &RemoveInput) -> Result<(), String> {
        if input.role == Role::Server && input.etcd_on.is_none() {
            return Err(format!(
                "{} is a server, and no other server answers to read etcd on: removing it \
                 could leave no cluster",
                input.node.name
            ));
        }
        Ok(())
    }

    async fn run(&self, ctx: Ctx, input: RemoveInput) -> Result<RemoveOutput, RunError> {
        let name = input.node.name.clone();
        if let (Role::Server, Some(on)) = (input.role, &input.etcd_on) {
            let members = ctx
                .step(
                    "etcd/members",
                    &EtcdMembers {
                        host: on.target.clone(),
                    },
                )
                .await?;
            if let Some(refusal) = quorum_refusal(&name, &members.members) {
                return Err(RunError::Workflow(refusal));
            }
        }
        let kubeconfig = ctx
            .step("k3s/kubeconfig", &joining(&input.setup, "kubeconfig"))
            .await?;
        let access = KubeAccess {
            kubeconfig: kubeconfig.secret.clone(),
            server: Some(input.api.clone()),
        };
        ctx.step(
            "cordon",
            &Cordon {
                access: access.clone(),
                node: name.clone(),
            },
        )
        .await?;
        let drained = ctx
            .step(
                "drain",
                &DrainNode {
                    access: access.clone(),
                    node: name.clone(),
                    timeout_s: input.drain_timeout_s,
                },
            )
            .await?;
        ctx.step(
            "delete",
            &DeleteNode {
                access: access.clone(),
                node: name.clone(),
            },
        )
        .await?;
        let mut members_removed = Vec::new();
        if let (Role::Server, Some(on)) = (input.role, &input.etcd_on) {
            let gone = ctx
                .step(
                    "etcd/member-gone",
                    &EtcdMemberGone {
                        host: on.target.clone(),
                        member: name.clone(),
                        timeout_s: input.member_timeout_s,
                        remove: true,
                    },
                )
                .await?;
            members_removed = gone.removed;
        }
        let script = match input.role {
            Role::Server => "/usr/local/bin/k3s-uninstall.sh",
            Role::Agent => "/usr/local/bin/k3s-agent-uninstall.sh",
        };
        let mut uninstall = SshDetached::new(
            input.node.target.clone(),
            vec![
                "sh".into(),
                "-c".into(),
                format!("if [ -x {script} ]; then {script}; fi"),
            ],
        );
        uninstall.sudo = true;
        uninstall.policy = RetryPolicy {
            max_attempts: 3,
            ..RetryPolicy::default()
        };
        ctx.step("uninstall", &uninstall).await?;
        Ok(RemoveOutput {
            node: name,
            role: input.role,
            evicted: drained.evicted,
            members_removed,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(node: &str, learner: bool) -> EtcdMember {
        EtcdMember {
            id: node.len() as u64,
            name: format!("{node}-0a1b2c3d"),
            node: node.into(),
            peer_urls: Vec::new(),
            client_urls: Vec::new(),
            is_learner: learner,
        }
    }

    #[test]
    fn a_server_goes_only_when_a_majority_of_voters_stays() {
        let two = [member("s1", false), member("s2", false)];
        let refused = quorum_refusal("s2", &two).expect("one of two is refused");
        assert!(
            refused.contains("1 of its 2 voters") && refused.contains("needs 2"),
            "{refused}"
        );
        let three = [
            member("s1", false),
            member("s2", false),
            member("s3", false),
        ];
        assert_eq!(quorum_refusal("s3", &three), None, "one of three may go");
        assert!(
            quorum_refusal("s1", &[member("s1", false)]).is_some(),
            "the last one"
        );
        let learner = [member("s1", false), member("s2", true)];
        assert_eq!(
            quorum_refusal("s2", &learner),
            None,
            "a learner has no vote"
        );
        assert_eq!(
            quorum_refusal("gone", &two),
            None,
            "no member: nothing to lose"
        );
    }
}
