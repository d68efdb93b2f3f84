//! The etcd membership activities (`foundry_activities::k3s`) against a lab of systemd
//! hosts running the K3s stand-in, whose servers run Debian's real etcd 3.4 over TLS with
//! K3s's certificates: the membership is read over SSH through etcd's JSON gateway with
//! K3s's client certificate, as on a real K3s server. Learners, voters and removals are
//! etcd's own; the Node deletion that removes a member is the stand-in's (K3s's member
//! controller, in spirit). The same lab proves the stand-in's manifests directory and its
//! kube-vip stand-in: a VIP that moves when its holder's server stops.

use std::time::{Duration, Instant};

use foundry_activities::k3s::{EtcdMemberGone, EtcdMembers, EtcdVoter, etcd_members, member_node};
use foundry_core::{Activity, ActivityCx};
use foundry_tests::lab::Lab;

use crate::k3s_standin::{
    ETCDCTL, api, copy_token, finish, host, install, ok, put_standins, spawn, succeeded, until,
};

fn write_config(lab: &Lab, i: usize, config: &str) {
    ok(
        lab,
        i,
        &format!(
            "mkdir -p /etc/rancher/k3s && cat > /etc/rancher/k3s/config.yaml <<'EOF'\n{config}EOF\n"
        ),
    );
}

/// kube-vip's DaemonSet as the K3s component writes it into a server's manifests
/// directory (with its ServiceAccount, a kind the API stand-in skips).
fn kube_vip_manifest(vip: &str, interface: &str) -> String {
    format!(
        r#"apiVersion: v1
kind: ServiceAccount
metadata:
  name: kube-vip
  namespace: kube-system
---
apiVersion: apps/v1
kind: DaemonSet
metadata:
  name: kube-vip-ds
  namespace: kube-system
spec:
  selector:
    matchLabels:
      app.kubernetes.io/name: kube-vip-ds
  template:
    metadata:
      labels:
        app.kubernetes.io/name: kube-vip-ds
    spec:
      hostNetwork: true
      serviceAccountName: kube-vip
      containers:
        - name: kube-vip
          image: ghcr.io/kube-vip/kube-vip:v0.8.9
          args: ["manager"]
          env:
            - {{name: vip_arp, value: "true"}}
            - {{name: port, value: "6443"}}
            - {{name: vip_interface, value: "{interface}"}}
            - {{name: cp_enable, value: "true"}}
            - {{name: cp_namespace, value: kube-system}}
            - {{name: vip_leaderelection, value: "true"}}
            - {{name: vip_leasename, value: plndr-cp-lock}}
            - {{name: vip_leaseduration, value: "5"}}
            - {{name: vip_renewdeadline, value: "3"}}
            - {{name: vip_retryperiod, value: "1"}}
            - {{name: address, value: "{vip}"}}
"#
    )
}

/// The holder of kube-vip's lease, read through server `via`'s API; None without one.
fn lease_holder(lab: &Lab, via: usize) -> Option<String> {
    let got = api(
        lab,
        via,
        "GET",
        "/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/plndr-cp-lock",
    );
    let (body, code) = got.rsplit_once('\n')?;
    if code != "200" {
        return None;
    }
    let lease: serde_json::Value = serde_json::from_str(body).ok()?;
    lease["spec"]["holderIdentity"]
        .as_str()
        .filter(|h| !h.is_empty())
        .map(str::to_string)
}

/// The hosts (indices) whose interface has `vip`.
fn vip_on(lab: &Lab, vip: &str) -> Vec<usize> {
    (0..lab.names.len())
        .filter(|&i| {
            crate::k3s_standin::run(
                lab,
                i,
                &format!("ip -4 -o addr show | grep -q ' inet {vip}/32 '"),
            )
            .status
            .success()
        })
        .collect()
}

fn cx() -> ActivityCx {
    ActivityCx::standalone("etcd-members-test")
}

/// Joins host `i` as a server through host 0, in the background; `config` is its
/// config.yaml.
fn join_server(lab: &Lab, i: usize, config: &str) -> std::process::Child {
    let (_, first) = host(lab, 0);
    copy_token(lab, 0, i, "token");
    write_config(lab, i, config);
    spawn(
        lab,
        i,
        &install(
            &format!(
                "INSTALL_K3S_EXEC=server K3S_URL=https://{first}:6443 K3S_TOKEN_FILE=/root/token"
            ),
            180,
        ),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn membership_is_read_over_ssh_learners_wait_to_vote_and_deleted_nodes_leave() {
    let began = Instant::now();
    let lab = tokio::task::block_in_place(|| Lab::up_with("etcdm", 3, &["--systemd"]));
    let phase = |what: &str| eprintln!("{:>6.1} s  {what}", began.elapsed().as_secs_f64());
    // The API's VIP: a free address of the lab's network, a name in every server's
    // certificate (tls-san in config.yaml, as the K3s component writes it).
    let (_, first_address) = host(&lab, 0);
    // The lab config's VIP, so that `cluster status` and `node remove` find it there.
    let vip = format!(
        "{}.{}",
        first_address.rsplit_once('.').expect("an IPv4 address").0,
        foundry_workflows::lab::VIP
    );
    let san = format!("tls-san:\n  - {vip}\n");
    tokio::task::block_in_place(|| {
        put_standins(&lab);
        write_config(&lab, 0, &format!("cluster-init: true\n{san}"));
        ok(&lab, 0, &install("INSTALL_K3S_EXEC=server", 120));
    });
    phase("first server");
    let first = lab.targets[0].clone();
    let cx = cx();

    // The list over SSH: one voter, named as K3s names members, its URLs over TLS.
    let listed = EtcdMembers {
        host: first.clone(),
    }
    .apply(&cx)
    .await
    .expect("the member list");
    assert_eq!(listed.members.len(), 1, "{listed:?}");
    let one = &listed.members[0];
    assert_eq!(one.node, "host-1");
    assert!(one.name.starts_with("host-1-"), "{}", one.name);
    assert!(!one.is_learner);
    let address = &lab.targets[0].address;
    assert_eq!(one.peer_urls, [format!("https://{address}:2380")]);
    assert_eq!(one.client_urls, [format!("https://{address}:2379")]);
    // The id is etcd's own: etcdctl on the host shows the same, in hex.
    let shown =
        tokio::task::block_in_place(|| ok(&lab, 0, &format!("{ETCDCTL} member list -w table")));
    assert!(shown.contains(&format!("{:x}", one.id)), "{shown}");

    // A joining server is a learner first: seen as such, and EtcdVoter waits for it.
    let join = tokio::task::block_in_place(|| join_server(&lab, 1, &san));
    let end = Instant::now() + Duration::from_secs(90);
    let learner = loop {
        let members = etcd_members(&first, &cx).await.expect("listing");
        if let Some(m) = members.iter().find(|m| m.node == "host-2" && m.is_learner) {
            break m.clone();
        }
        assert!(
            !members.iter().any(|m| m.node == "host-2"),
            "host-2 seen as a voter before as a learner: {members:?}"
        );
        assert!(
            Instant::now() < end,
            "no learner of host-2 within 90 s: {members:?}"
        );
        tokio::time::sleep(Duration::from_millis(150)).await;
    };
    phase("host-2 a learner");
    let early = EtcdVoter {
        host: first.clone(),
        member: "host-2".into(),
        timeout_s: 1,
    }
    .apply(&cx)
    .await
    .expect_err("a learner is not a voter");
    assert!(
        early.message.contains("still a learner") && early.message.contains(&learner.name),
        "{}",
        early.message
    );
    let voter = EtcdVoter {
        host: first.clone(),
        member: "host-2".into(),
        timeout_s: 120,
    }
    .apply(&cx)
    .await
    .expect("host-2 a voter");
    assert_eq!(voter.member.id, learner.id, "the same member, promoted");
    assert!(!voter.member.is_learner);
    assert_eq!(voter.voters, 2);
    phase("host-2 a voter");
    tokio::task::block_in_place(|| {
        succeeded(
            &finish(join, "host-2's join", Duration::from_secs(120)),
            "host-2's join",
        )
    });
    // The second server reads the same membership.
    let from_second = etcd_members(&lab.targets[1], &cx).await.expect("on host-2");
    let nodes: Vec<&str> = from_second.iter().map(|m| member_node(&m.name)).collect();
    assert_eq!(nodes, ["host-1", "host-2"]);

    // A node with no member: the bounded wait says so.
    let absent = EtcdVoter {
        host: first.clone(),
        member: "host-3".into(),
        timeout_s: 2,
    }
    .apply(&cx)
    .await
    .expect_err("host-3 has no member");
    assert!(
        absent.message.contains("has no etcd member"),
        "{}",
        absent.message
    );

    // A third server, then kube-vip from the manifests directory: one holder of the lease
    // has the VIP, which answers the API over HTTPS from another host.
    let join = tokio::task::block_in_place(|| join_server(&lab, 2, &san));
    EtcdVoter {
        host: first.clone(),
        member: "host-3".into(),
        timeout_s: 120,
    }
    .apply(&cx)
    .await
    .expect("host-3 a voter");
    tokio::task::block_in_place(|| {
        succeeded(
            &finish(join, "host-3's join", Duration::from_secs(120)),
            "host-3's join",
        );
        phase("three servers");
        let interface = ok(
            &lab,
            0,
            &format!("ip -4 -o addr show | awk '$4 ~ /^{first_address}\\// {{ print $2 }}'"),
        );
        assert!(!interface.is_empty(), "host-1's interface");
        let manifest = kube_vip_manifest(&vip, &interface);
        for i in 0..3 {
            ok(
                &lab,
                i,
                &format!(
                    "mkdir -p /var/lib/rancher/k3s/server/manifests && cat > /var/lib/rancher/k3s/server/manifests/kube-vip.yaml <<'EOF'\n{manifest}EOF\n"
                ),
            );
        }
        let mut holder = None;
        until(
            "a holder of the lease with the VIP",
            Duration::from_secs(60),
            || {
                holder = lease_holder(&lab, 0);
                holder.is_some() && vip_on(&lab, &vip).len() == 1
            },
        );
        let holder = holder.expect("a holder");
        let at = lab
            .names
            .iter()
            .position(|n| *n == holder)
            .expect("the holder is a lab host");
        assert_eq!(vip_on(&lab, &vip), [at], "the holder has the VIP, alone");
        let ds = api(
            &lab,
            0,
            "GET",
            "/apis/apps/v1/namespaces/kube-system/daemonsets/kube-vip-ds",
        );
        assert!(ds.ends_with("\n200"), "the DaemonSet deployed: {ds}");
        let other = (at + 1) % 3;
        let through_vip = format!(
            "curl -sS -o /dev/null -w '%{{http_code}}' --max-time 5 \
             --cacert /var/lib/rancher/k3s/server/tls/server-ca.crt https://{vip}:6443/cacerts"
        );
        assert_eq!(
            ok(&lab, other, &through_vip),
            "200",
            "the VIP answers over HTTPS"
        );
        phase("the VIP held");

        // The holder's server stops: it removes the VIP; another takes the lease once it
        // has expired, and the VIP with it.
        let stopped = Instant::now();
        ok(&lab, at, "systemctl stop k3s");
        assert!(
            !vip_on(&lab, &vip).contains(&at),
            "a stopped server keeps no VIP"
        );
        let mut next = None;
        until(
            "another holder with the VIP",
            Duration::from_secs(30),
            || {
                next = lease_holder(&lab, other).filter(|h| *h != holder);
                next.is_some() && vip_on(&lab, &vip).len() == 1
            },
        );
        let next = next.expect("a new holder");
        let moved = stopped.elapsed();
        let at_next = lab
            .names
            .iter()
            .position(|n| *n == next)
            .expect("a lab host");
        assert_eq!(vip_on(&lab, &vip), [at_next]);
        assert!(
            moved < Duration::from_secs(20),
            "the VIP moved in {moved:?}"
        );
        assert_eq!(
            ok(&lab, at, &through_vip),
            "200",
            "the VIP answers from its new holder"
        );
        eprintln!(
            "the VIP moved from {holder} to {next} in {:.1} s",
            moved.as_secs_f64()
        );
        ok(&lab, at, "systemctl start k3s");
    });
    phase("the VIP moved");

    // `cluster status` and `node list`, asked live with the lab's config; the kubeconfig
    // handed in through the environment (as OpenBAO would give it).
    let kubeconfig = tokio::task::block_in_place(|| ok(&lab, 0, "cat /etc/rancher/k3s/k3s.yaml"));
    let foundry = |args: &[&str]| {
        let config = lab.config.to_str().expect("utf8").to_string();
        let mut all = vec!["--config", config.as_str()];
        all.extend(args);
        lab.home
            .cmd(&all)
            // `foundry-core/k3s:kubeconfig` as the environment names it (case kept).
            .env("FOUNDRY_SECRET_foundry_core_k3s_kubeconfig", &kubeconfig)
            .output()
            .expect("foundry")
    };
    let status =
        tokio::task::block_in_place(|| foundry(&["--output", "json", "cluster", "status"]));
    succeeded(&status, "cluster status");
    let status: serde_json::Value =
        serde_json::from_slice(&status.stdout).expect("one JSON object");
    assert_eq!(status["etcd"]["voters"], 3, "{status}");
    assert_eq!(status["etcd"]["quorum"], 2, "{status}");
    let holder = status["vip_holder"]
        .as_str()
        .expect("a VIP holder")
        .to_string();
    let nodes = status["nodes"].as_array().expect("nodes");
    assert_eq!(nodes.len(), 3, "{status}");
    for node in nodes {
        assert_eq!(node["ready"], true, "{node}");
        assert_eq!(node["etcd"], "voter", "{node}");
        assert_eq!(node["holds_vip"], node["name"] == holder.as_str(), "{node}");
    }
    let list = tokio::task::block_in_place(|| foundry(&["cluster", "node", "list"]));
    succeeded(&list, "cluster node list");
    let table = String::from_utf8_lossy(&list.stdout).to_string();
    for name in ["host-1", "host-2", "host-3"] {
        assert!(table.contains(name), "{table}");
    }
    assert!(
        table.contains("voter") && table.contains("control-plane"),
        "{table}"
    );

    // `node remove` of a server, one of three: drained, deleted, its member gone (K3s's
    // controller), K3s uninstalled there.
    let removed = tokio::task::block_in_place(|| {
        foundry(&[
            "--output", "json", "cluster", "node", "remove", "host-2", "--yes",
        ])
    });
    succeeded(&removed, "cluster node remove host-2");
    let report = foundry_tests::json_lines(&removed.stdout);
    let report = report.last().expect("the removal's report");
    assert_eq!(report["role"], "server", "{report}");
    assert_eq!(
        report["members_removed"],
        serde_json::json!([]),
        "K3s's controller removed the member with its Node: {report}"
    );
    let after = etcd_members(&first, &cx).await.expect("listing");
    assert_eq!(
        after.iter().map(|m| m.node.as_str()).collect::<Vec<_>>(),
        ["host-1", "host-3"],
        "host-2's member gone"
    );
    tokio::task::block_in_place(|| {
        until("K3s uninstalled on host-2", Duration::from_secs(60), || {
            crate::k3s_standin::run(&lab, 1, "test ! -e /etc/systemd/system/k3s.service")
                .status
                .success()
        })
    });
    // Two servers left: removing one would leave 1 of 2 voters, refused before any run.
    let refused =
        tokio::task::block_in_place(|| foundry(&["cluster", "node", "remove", "host-3", "--yes"]));
    assert!(!refused.status.success(), "refused");
    let said = String::from_utf8_lossy(&refused.stderr).to_string();
    assert!(
        said.contains("1 of its 2 voters") && said.contains("needs 2"),
        "{said}"
    );
    assert_eq!(
        etcd_members(&first, &cx).await.expect("listing").len(),
        2,
        "nothing was done"
    );
    phase("cluster status, node list, node remove");

    // A member whose Node stays: EtcdMemberGone removes it itself, once its wait for K3s
    // has passed.
    let before = etcd_members(&first, &cx).await.expect("listing");
    let third = before
        .iter()
        .find(|m| m.node == "host-3")
        .expect("host-3's member")
        .clone();
    let removed = EtcdMemberGone {
        host: first.clone(),
        member: "host-3".into(),
        timeout_s: 8,
        remove: true,
    }
    .apply(&cx)
    .await
    .expect("host-3's member removed");
    assert_eq!(removed.removed, [format!("{:x}", third.id)]);
    let after = etcd_members(&first, &cx).await.expect("listing");
    assert_eq!(
        after.iter().map(|m| m.node.as_str()).collect::<Vec<_>>(),
        ["host-1"]
    );
    phase("host-3's member removed by Foundry");
}
