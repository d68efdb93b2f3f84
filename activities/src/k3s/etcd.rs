//! The embedded etcd of K3s's servers, read over SSH on a server host: K3s ships no
//! etcdctl, but etcd's JSON gateway answers on `https://127.0.0.1:2379` to the client
//! certificate K3s keeps in [`ETCD_TLS_DIR`] (its paths in curl's argv, never a key).
//!
//! K3s names a member `<node>-<8 hex digits>`; [`member_node`] gives the node back, as
//! K3s's own member controller does.

use std::time::Duration;

use foundry_core::{Activity, ActivityCx, ActivityError, InDoubt, PollPolicy, RetryPolicy, Stream};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::ssh::{SshPool, SshTarget, command_line};

/// Where K3s keeps etcd's CAs and certificates on a server.
pub const ETCD_TLS_DIR: &str = "/var/lib/rancher/k3s/server/tls/etcd";
/// etcd's client port on a server's loopback, as K3s's own clients reach it.
const GATEWAY: &str = "https://127.0.0.1:2379";
/// How often a wait on the membership reads it again.
const POLL_MS: u64 = 1_000;

/// One etcd member, as the gateway lists it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EtcdMember {
    /// etcd's member id, shown in hex as etcdctl does.
    #[serde(with = "hex_id")]
    pub id: u64,
    /// Empty for a member added but not yet started.
    pub name: String,
    /// The node the member is of ([`member_node`] of its name).
    pub node: String,
    pub peer_urls: Vec<String>,
    pub client_urls: Vec<String>,
    pub is_learner: bool,
}

/// The node a K3s etcd member is of: its name without the last `-<suffix>` K3s adds (K3s's
/// own rule); a name without one is the node's.
pub fn member_node(name: &str) -> &str {
    match name.rfind('-') {
        Some(i) if i > 1 => &name[..i],
        _ => name,
    }
}

mod hex_id {
    use super::*;

    pub fn serialize<S: Serializer>(id: &u64, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format!("{id:x}"))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
        let text = String::deserialize(d)?;
        u64::from_str_radix(&text, 16).map_err(serde::de::Error::custom)
    }
}

/// The gateway's uint64s are JSON strings (grpc-gateway's mapping); a number is taken too.
fn gateway_u64<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    match serde_json::Value::deserialize(d)? {
        serde_json::Value::String(s) => s.parse().map_err(serde::de::Error::custom),
        serde_json::Value::Number(n) => n
            .as_u64()
            .ok_or_else(|| serde::de::Error::custom("a member ID that is not a uint64")),
        other => Err(serde::de::Error::custom(format!(
            "a member ID that is not a uint64: {other}"
        ))),
    }
}

#[derive(Deserialize)]
struct ListAnswer {
    #[serde(default)]
    members: Vec<GatewayMember>,
}

#[derive(Deserialize)]
struct GatewayMember {
    #[serde(rename = "ID", deserialize_with = "gateway_u64")]
    id: u64,
    #[serde(default)]
    name: String,
    #[serde(rename = "peerURLs", default)]
    peer_urls: Vec<String>,
    #[serde(rename = "clientURLs", default)]
    client_urls: Vec<String>,
    #[serde(rename = "isLearner", default)]
    is_learner: bool,
}

/// The members in a `member/list` answer, sorted by name (unstarted ones first).
fn parse_members(body: &str) -> Result<Vec<EtcdMember>, serde_json::Error> {
    let answer: ListAnswer = serde_json::from_str(body)?;
    let mut members: Vec<EtcdMember> = answer
        .members
        .into_iter()
        .map(|m| EtcdMember {
            id: m.id,
            node: member_node(&m.name).to_string(),
            name: m.name,
            peer_urls: m.peer_urls,
            client_urls: m.client_urls,
            is_learner: m.is_learner,
        })
        .collect();
    members.sort_by(|a, b| a.name.cmp(&b.name).then(a.id.cmp(&b.id)));
    Ok(members)
}

/// POSTs `body` to the gateway's `path` on `target` (as root: the client key is root's);
/// the answer's body on 200.
async fn gateway(
    target: &SshTarget,
    path: &str,
    body: &str,
    cx: &ActivityCx,
) -> Result<String, ActivityError> {
    let argv: Vec<String> = [
        "curl",
        "-sS",
        "--max-time",
        "10",
        "--cacert",
        &format!("{ETCD_TLS_DIR}/server-ca.crt"),
        "--cert",
        &format!("{ETCD_TLS_DIR}/client.crt"),
        "--key",
        &format!("{ETCD_TLS_DIR}/client.key"),
        "-X",
        "POST",
        "-H",
        "Content-Type: application/json",
        "--data-binary",
        body,
        "-w",
        "\n%{http_code}",
        &format!("{GATEWAY}{path}"),
    ]
    .map(String::from)
    .to_vec();
    let line = command_line(&argv, true)?;
    let session = SshPool::global().session(target).await?;
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let code = session
        .channel()
        .await?
        .exec(&line, cx, |stream, data| match stream {
            Stream::Stdout => out.extend_from_slice(data),
            Stream::Stderr => err.extend_from_slice(data),
        })
        .await?;
    let said = String::from_utf8_lossy(&err).trim().to_string();
    let asking = format!("{target}: asking etcd ({GATEWAY}{path})");
    match code {
        0 => {}
        127 => {
            return Err(ActivityError::permanent(format!(
                "{asking}: curl is not installed\nhint: install curl on the K3s servers \
                 (Foundry reads etcd's membership with it)"
            )));
        }
        58 | 77 => {
            return Err(ActivityError::permanent(format!(
                "{asking}: the etcd client certificate in {ETCD_TLS_DIR} cannot be used: \
                 {said}\nhint: is this host a K3s server with embedded etcd?"
            )));
        }
        7 => {
            return Err(ActivityError::transient(format!(
                "{asking}: nothing answers: {said}\nhint: is K3s running on this server \
                 (systemctl status k3s)?"
            )));
        }
        _ => {
            return Err(ActivityError::transient(format!(
                "{asking}: exited with status {code}: {said}"
            )));
        }
    }
    let text = String::from_utf8_lossy(&out).to_string();
    let (body, status) = text.rsplit_once('\n').unwrap_or(("", text.as_str()));
    match status.trim() {
        "200" => Ok(body.to_string()),
        s if s.starts_with('5') => Err(ActivityError::transient(format!(
            "{asking}: HTTP {s}: {}",
            body.trim()
        ))),
        s => Err(ActivityError::permanent(format!(
            "{asking}: HTTP {s}: {}",
            body.trim()
        ))),
    }
}

/// The etcd members, read on the server `target`.
pub async fn etcd_members(
    target: &SshTarget,
    cx: &ActivityCx,
) -> Result<Vec<EtcdMember>, ActivityError> {
    let body = gateway(target, "/v3/cluster/member/list", "{}", cx).await?;
    parse_members(&body).map_err(|e| {
        ActivityError::transient(format!(
            "{target}: etcd's member list is not what was expected: {e}"
        ))
    })
}

/// Removes the member `id` through the server `target`; a member already gone is done.
pub async fn remove_member(
    target: &SshTarget,
    id: u64,
    cx: &ActivityCx,
) -> Result<(), ActivityError> {
    let body = serde_json::json!({ "ID": id.to_string() }).to_string();
    match gateway(target, "/v3/cluster/member/remove", &body, cx).await {
        Ok(_) => Ok(()),
        // etcd's "member not found" (gRPC NotFound) comes back as a 4xx from the gateway.
        Err(e) if e.message.contains("member not found") => Ok(()),
        Err(e) => Err(e),
    }
}

/// The members of one node (K3s's naming); several only while an old one lingers.
fn of_node<'a>(members: &'a [EtcdMember], node: &str) -> Vec<&'a EtcdMember> {
    members.iter().filter(|m| m.node == node).collect()
}

fn listed(members: &[EtcdMember]) -> String {
    if members.is_empty() {
        return "none".into();
    }
    members
        .iter()
        .map(|m| {
            let name = if m.name.is_empty() {
                "(unstarted)"
            } else {
                &m.name
            };
            if m.is_learner {
                format!("{name} (learner)")
            } else {
                name.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The etcd membership, read-only, over SSH on a server.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EtcdMembers {
    pub host: SshTarget,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EtcdMembersOutput {
    pub members: Vec<EtcdMember>,
}

impl Activity for EtcdMembers {
    type Output = EtcdMembersOutput;

    fn kind(&self) -> &'static str {
        "k3s-etcd-members"
    }

    fn in_doubt(&self) -> InDoubt {
        InDoubt::Rerun
    }

    fn retry_policy(&self) -> RetryPolicy {
        RetryPolicy {
            max_attempts: 5,
            ..RetryPolicy::default()
        }
    }

    async fn probe(&self, _cx: &ActivityCx) -> Result<Option<EtcdMembersOutput>, ActivityError> {
        Ok(None)
    }

    async fn apply(&self, cx: &ActivityCx) -> Result<EtcdMembersOutput, ActivityError> {
        Ok(EtcdMembersOutput {
            members: etcd_members(&self.host, cx).await?,
        })
    }
}

/// Waits, at most `timeout_s`, until the node `member` has an etcd member that is a voter
/// (promoted from learner), reading the membership on the server `host`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EtcdVoter {
    pub host: SshTarget,
    /// The node's name (K3s's member is `<node>-<suffix>`).
    pub member: String,
    pub timeout_s: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EtcdVoterOutput {
    pub member: EtcdMember,
    /// Voters in the cluster when it was seen.
    pub voters: usize,
}

impl EtcdVoter {
    fn voter(&self, members: &[EtcdMember]) -> Option<EtcdVoterOutput> {
        let found = of_node(members, &self.member)
            .into_iter()
            .find(|m| !m.is_learner)?;
        Some(EtcdVoterOutput {
            member: found.clone(),
            voters: members.iter().filter(|m| !m.is_learner).count(),
        })
    }
}

impl Activity for EtcdVoter {
    type Output = EtcdVoterOutput;

    fn kind(&self) -> &'static str {
        "k3s-etcd-voter"
    }

    fn in_doubt(&self) -> InDoubt {
        InDoubt::Rerun
    }

    async fn probe(&self, cx: &ActivityCx) -> Result<Option<EtcdVoterOutput>, ActivityError> {
        Ok(self.voter(&etcd_members(&self.host, cx).await?))
    }

    async fn apply(&self, cx: &ActivityCx) -> Result<EtcdVoterOutput, ActivityError> {
        let policy = PollPolicy::new(POLL_MS, 0).within(Duration::from_secs(self.timeout_s));
        let mut poll = policy.start();
        let mut last: Result<Vec<EtcdMember>, ActivityError> = Ok(Vec::new());
        while poll
            .tick_unless(cx.cancel_token())
            .await
            .map_err(|_| ActivityError::permanent("cancelled while waiting for an etcd voter"))?
        {
            last = etcd_members(&self.host, cx).await;
            if let Ok(members) = &last
                && let Some(out) = self.voter(members)
            {
                return Ok(out);
            }
        }
        let node = &self.member;
        let why = match last {
            Err(e) => format!("the membership could not be read: {}", e.message),
            Ok(members) => match of_node(&members, node).first() {
                Some(m) if m.is_learner => format!(
                    "its member {} is still a learner (members: {})",
                    m.name,
                    listed(&members)
                ),
                _ => format!("it has no etcd member (members: {})", listed(&members)),
            },
        };
        Err(ActivityError::transient(format!(
            "{node} is not an etcd voter after {} s, read on {}: {why}\nhint: look at the \
             join on the node (journalctl -u k3s); etcd allows one learner at a time",
            self.timeout_s, self.host
        )))
    }
}

/// Waits, at most `timeout_s`, until the node `member` has no etcd member left, reading on
/// the server `host`; with `remove`, removes what is left once (as K3s's member controller
/// would have on the Node's deletion) and waits again.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EtcdMemberGone {
    pub host: SshTarget,
    pub member: String,
    pub timeout_s: u64,
    pub remove: bool,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EtcdMemberGoneOutput {
    /// The ids Foundry removed itself (empty when K3s's controller did).
    #[serde(default)]
    pub removed: Vec<String>,
}

impl Activity for EtcdMemberGone {
    type Output = EtcdMemberGoneOutput;

    fn kind(&self) -> &'static str {
        "k3s-etcd-member-gone"
    }

    fn in_doubt(&self) -> InDoubt {
        InDoubt::Probe
    }

    async fn probe(&self, cx: &ActivityCx) -> Result<Option<EtcdMemberGoneOutput>, ActivityError> {
        let members = etcd_members(&self.host, cx).await?;
        Ok(of_node(&members, &self.member)
            .is_empty()
            .then(EtcdMemberGoneOutput::default))
    }

    async fn apply(&self, cx: &ActivityCx) -> Result<EtcdMemberGoneOutput, ActivityError> {
        let timeout = Duration::from_secs(self.timeout_s);
        // Half the time for K3s's controller, then Foundry removes what is left.
        let first = if self.remove { timeout / 2 } else { timeout };
        let mut removed = Vec::new();
        let mut left = self.wait_gone(first, cx).await?;
        if !left.is_empty() && self.remove {
            for m in &left {
                remove_member(&self.host, m.id, cx).await?;
                removed.push(format!("{:x}", m.id));
            }
            left = self.wait_gone(timeout - first, cx).await?;
        }
        if left.is_empty() {
            return Ok(EtcdMemberGoneOutput { removed });
        }
        Err(ActivityError::transient(format!(
            "the etcd member of {} is still there after {} s, read on {}: {}\nhint: remove \
             it with etcd's member remove on a server, or `foundry cluster node remove {}` \
             again",
            self.member,
            self.timeout_s,
            self.host,
            listed(&left),
            self.member
        )))
    }
}

impl EtcdMemberGone {
    /// The node's members still there after waiting at most `wait` for none.
    async fn wait_gone(
        &self,
        wait: Duration,
        cx: &ActivityCx,
    ) -> Result<Vec<EtcdMember>, ActivityError> {
        let mut poll = PollPolicy::new(POLL_MS, 0).within(wait).start();
        let mut left = Vec::new();
        while poll.tick_unless(cx.cancel_token()).await.map_err(|_| {
            ActivityError::permanent("cancelled while waiting for an etcd member to go")
        })? {
            let members = etcd_members(&self.host, cx).await?;
            left = of_node(&members, &self.member)
                .into_iter()
                .cloned()
                .collect();
            if left.is_empty() {
                break;
            }
        }
        Ok(left)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What etcd 3.4's gateway answers: uint64s as strings, `isLearner` only when true, an
    /// unstarted member without a name or client URLs.
    const LISTED: &str = r#"{"header":{"cluster_id":"14841639068965178418","member_id":"10276657743932975437","raft_term":"2"},"members":[{"ID":"10276657743932975437","name":"host-1-0a1b2c3d","peerURLs":["https://10.77.0.11:2380"],"clientURLs":["https://10.77.0.11:2379"]},{"ID":"18446744073709551615","peerURLs":["https://10.77.0.12:2380"],"isLearner":true},{"ID":"3","name":"host-3-deadbeef","peerURLs":["https://10.77.0.13:2380"],"clientURLs":["https://10.77.0.13:2379"],"isLearner":true}]}"#;

    #[test]
    fn the_gateways_member_list_is_read_with_its_string_ids_and_learners() {
        let members = parse_members(LISTED).expect("parsed");
        assert_eq!(members.len(), 3);
        assert_eq!(members[0].name, "");
        assert_eq!(members[0].id, u64::MAX, "a uint64 past i64 and f64");
        assert!(members[0].is_learner);
        assert_eq!(members[1].name, "host-1-0a1b2c3d");
        assert_eq!(members[1].node, "host-1");
        assert_eq!(members[1].id, 10276657743932975437);
        assert!(!members[1].is_learner, "isLearner left out: a voter");
        assert_eq!(members[1].client_urls, ["https://10.77.0.11:2379"]);
        assert_eq!(members[2].node, "host-3");
        assert!(members[2].is_learner);
        let json = serde_json::to_value(&members[1]).expect("json");
        assert_eq!(json["id"], "8e9e05c52164694d", "hex as etcdctl shows it");
        let back: EtcdMember = serde_json::from_value(json).expect("read back");
        assert_eq!(back, members[1]);
        assert!(parse_members(r#"{"members":[{"ID":"x"}]}"#).is_err());
        assert!(parse_members(r#"{"header":{}}"#).expect("none").is_empty());
    }

    #[test]
    fn a_member_is_of_the_node_its_name_starts_with() {
        assert_eq!(member_node("host-1-0a1b2c3d"), "host-1");
        assert_eq!(member_node("server-0a1b2c3d"), "server");
        assert_eq!(member_node("plain"), "plain");
        assert_eq!(member_node(""), "");
        let members = parse_members(LISTED).expect("parsed");
        let voter = EtcdVoter {
            host: target(),
            member: "host-1".into(),
            timeout_s: 1,
        };
        let out = voter.voter(&members).expect("host-1 votes");
        assert_eq!((out.member.node.as_str(), out.voters), ("host-1", 1));
        let learner = EtcdVoter {
            member: "host-3".into(),
            ..voter.clone()
        };
        assert!(
            learner.voter(&members).is_none(),
            "a learner is not a voter"
        );
        let absent = EtcdVoter {
            member: "host".into(),
            ..voter
        };
        assert!(absent.voter(&members).is_none(), "`host` is not `host-1`");
        assert_eq!(
            listed(&members),
            "(unstarted) (learner), host-1-0a1b2c3d, host-3-deadbeef (learner)"
        );
    }

    fn target() -> SshTarget {
        SshTarget {
            address: "10.77.0.11".into(),
            port: 22,
            user: "foundry".into(),
            key: crate::ssh::KeySource::File("/dev/null".into()),
            host_key: String::new(),
        }
    }
}
