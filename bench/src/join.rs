//! `join`: the K3s cluster's joins on a lab of systemd hosts running the lab's K3s
//! stand-in (`foundry lab up --systemd`): `cluster init` and two server joins
//! (`servers_join_3_s`), the agents side by side (`join_10_agents_s`), and one agent's
//! `cluster node add` beside the stand-in's own join of that node, install.sh run over ssh
//! with the same config.yaml and token file (`join_overhead_ratio`), round after round.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};

use crate::figure;
use crate::hosts::child::{self, tail};
use crate::hosts::lab::{Host, Hosts, Lab};
use crate::stats::Summary;

pub const USAGE: &str = "\
Usage: foundry-bench join [--agents N] [--rounds N] [--foundry PATH]

On a fresh lab of systemd hosts (`foundry lab up --systemd`: 3 servers, N agents and one
host more) running the lab's K3s stand-in, with OpenBAO installed by Foundry: times
`foundry cluster init` plus `foundry cluster node add` of two servers (servers_join_3_s),
then the N agents in one `node add` with agents_at_once N (join_10_agents_s, named for
N = 10), then, round after round on the last host, one agent's `cluster node add` beside
the stand-in's own join of that node (install.sh run over ssh with the same files, until
its Node is Ready), the node removed between runs: join_overhead_ratio is the median of
Foundry's times over the median of the stand-in's (min, median and max on stderr).

Options:
  --agents N      agents joined at once (default 10; a 2-core machine may not hold 14
                  systemd hosts: fewer are said in the output)
  --rounds N      rounds of the overhead comparison (default 3)
  --foundry PATH  the `foundry` binary (default: the one beside this executable)
  -h, --help      this help";

/// One `foundry` command of the cluster.
const STEP_TIMEOUT: Duration = Duration::from_secs(20 * 60);
/// One ssh command.
const SSH_TIMEOUT: Duration = Duration::from_secs(5 * 60);
/// How long a node directly installed may take to be Ready in the API.
const READY_TIMEOUT: Duration = Duration::from_secs(120);
const SERVERS: usize = 3;
/// Where Foundry puts install.sh on a node, and the files the stand-in's uninstall removes.
const INSTALLER: &str = "/usr/local/lib/foundry/k3s-install.sh";
const KEPT: &str = "/root/foundry-bench-join.tar";

#[derive(Debug)]
pub struct Options {
    pub foundry: Option<std::path::PathBuf>,
    pub agents: usize,
    pub rounds: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            foundry: None,
            agents: 10,
            rounds: 3,
        }
    }
}

pub fn run(opts: Options) -> Result<()> {
    ensure!(opts.agents >= 1, "--agents: at least 1");
    ensure!(opts.rounds >= 1, "--rounds: at least 1");
    let foundry = crate::cli::locate(opts.foundry.clone())?;
    let target = crate::hosts::target_dir(&foundry)?;
    let work = tempfile::Builder::new()
        .prefix("foundry-bench-join-")
        .tempdir_in(&target)
        .with_context(|| format!("making a directory in {}", target.display()))?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let lab = Lab::new(&foundry, "join", work.path().to_path_buf());
    let outcome = rt.block_on(async {
        let outcome = legs(&lab, &opts).await;
        if let Err(e) = lab.down().await {
            eprintln!("warning: {e:#}");
        }
        outcome
    });
    drop(rt);
    match outcome {
        Ok(()) => {
            let _ = work.close();
            Ok(())
        }
        Err(e) => {
            eprintln!("the commands' output is kept in {}", work.keep().display());
            Err(e)
        }
    }
}

/// The lab's config: the first [`SERVERS`] hosts control-plane nodes, the rest workers,
/// `agents_at_once` as asked.
fn write_config(config: &Path, agents_at_once: usize) -> Result<()> {
    use foundry_workflows::config::{At, NodeRole};
    let mut stack = foundry_workflows::config::load(config)
        .with_context(|| format!("reading {}", config.display()))?;
    let cluster = stack
        .cluster
        .as_mut()
        .context("the systemd lab's config has no cluster")?;
    for (i, node) in cluster.nodes.iter_mut().enumerate() {
        node.role = if i < SERVERS {
            NodeRole::ControlPlane
        } else {
            NodeRole::Worker
        };
    }
    let k3s = &mut stack.components.get_or_insert_with(Default::default).k3s;
    k3s.agents_at_once = Some(At::new(u32::try_from(agents_at_once)?));
    let text = foundry_workflows::config::render(&stack, "The join benchmark's lab.")
        .map_err(|e| anyhow::anyhow!("rendering {}: {e}", config.display()))?;
    std::fs::write(config, text).with_context(|| format!("writing {}", config.display()))
}

/// `foundry --config CONFIG ARGS` (`--yes` after a `cluster` command), timed; its output
/// on failure.
async fn foundry(lab: &Lab, config: &Path, args: &[&str], name: &str) -> Result<f64> {
    let mut cmd = lab.foundry();
    cmd.arg("--config").arg(config).args(args);
    if args.first() == Some(&"cluster") {
        cmd.arg("--yes");
    }
    let done = child::run(cmd, name, &lab.dir, STEP_TIMEOUT, None).await?;
    done.ensure_success(&format!("`foundry {}`", args.join(" ")))?;
    Ok(done.took.as_secs_f64())
}

/// `script` run by `sh` as root on `host` over ssh; its stdout.
async fn on(hosts: &Hosts, host: &Host, script: &str, dir: &Path, name: &str) -> Result<String> {
    let mut cmd = hosts.ssh(host, &host.user);
    cmd.arg(crate::hosts::lab::remote_command(&[
        "sudo", "sh", "-c", script,
    ])?);
    let done = child::run(cmd, name, dir, SSH_TIMEOUT, None).await?;
    if !done.status.success() {
        bail!(
            "{name} on {}: {:?}\n{}",
            host.name,
            done.status,
            tail(&done.stderr, 10)
        );
    }
    Ok(done.stdout)
}

/// Prints `True` when node `$1`'s Ready condition is, asked of the server's own API with
/// the kubeconfig's client certificate.
const NODE_READY: &str = r#"d=$(mktemp -d) && cd "$d" && python3 -c '
import base64, json
k = json.load(open("/etc/rancher/k3s/k3s.yaml"))
user, cluster = k["users"][0]["user"], k["clusters"][0]["cluster"]
for name, data in (("c.crt", user["client-certificate-data"]), ("c.key", user["client-key-data"]),
                   ("ca.crt", cluster["certificate-authority-data"])):
    open(name, "wb").write(base64.b64decode(data))
' && curl -s --cacert ca.crt --cert c.crt --key c.key "https://127.0.0.1:6443/api/v1/nodes/$1" \
| python3 -c 'import json, sys
try:
    n = json.load(sys.stdin)
    print(any(c["type"] == "Ready" and c["status"] == "True" for c in n["status"]["conditions"]))
except Exception:
    print(False)'; cd / && rm -rf "$d""#;

/// The stand-in's own join of `node`: install.sh over ssh with the files Foundry put
/// there, then until its Node is Ready on the first server; seconds.
async fn direct_join(
    hosts: &Hosts,
    node: &Host,
    first: &Host,
    dir: &Path,
    round: usize,
) -> Result<f64> {
    let install = format!(
        "env INSTALL_K3S_SKIP_DOWNLOAD=true INSTALL_K3S_EXEC=agent sh {INSTALLER} >/dev/null"
    );
    let ready = format!("set -- '{}'\n{NODE_READY}", node.name);
    let began = Instant::now();
    on(hosts, node, &install, dir, &format!("direct-{round}")).await?;
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        let said = on(hosts, first, &ready, dir, &format!("ready-{round}")).await?;
        if said.trim() == "True" {
            return Ok(began.elapsed().as_secs_f64());
        }
        if Instant::now() > deadline {
            bail!(
                "{} not Ready {READY_TIMEOUT:?} after its install",
                node.name
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn legs(lab: &Lab, opts: &Options) -> Result<()> {
    let count = SERVERS + opts.agents + 1;
    eprintln!(
        "join benchmark: a lab of {count} systemd hosts ({SERVERS} servers, {} agents, 1 for \
         the overhead rounds); load average {}",
        opts.agents,
        crate::hosts::load_average()
    );
    if opts.agents != 10 {
        eprintln!(
            "NOTE: {} agents, not 10: join_10_agents_s below is for {} agents at once",
            opts.agents, opts.agents
        );
    }
    let hosts = lab.up_with(count, &["--systemd"]).await?;
    let config = hosts.config.clone();
    write_config(&config, opts.agents)?;
    let names: Vec<String> = hosts.hosts.iter().map(|h| h.name.clone()).collect();
    ensure!(names.len() == count, "the lab has {} hosts", names.len());
    foundry(
        lab,
        &config,
        &["component", "install", "openbao"],
        "openbao",
    )
    .await?;
    eprintln!("OpenBAO installed");

    let init = foundry(lab, &config, &["cluster", "init"], "init").await?;
    let mut add = vec!["cluster", "node", "add"];
    add.extend(names[1..SERVERS].iter().map(String::as_str));
    add.extend(["--role", "server"]);
    let servers = foundry(lab, &config, &add, "servers").await?;
    eprintln!("cluster init {init:.2} s, then two servers one at a time {servers:.2} s");
    figure("servers_join_3_s", format!("{:.2}", init + servers));

    let mut add = vec!["cluster", "node", "add"];
    add.extend(
        names[SERVERS..SERVERS + opts.agents]
            .iter()
            .map(String::as_str),
    );
    add.extend(["--role", "agent"]);
    let agents = foundry(lab, &config, &add, "agents").await?;
    eprintln!("{} agents at once: {agents:.2} s", opts.agents);
    figure("join_10_agents_s", format!("{agents:.2}"));

    // One agent, round after round: Foundry's join, then the stand-in's own of the same
    // node with the same files, the node removed (and its files put back) between them.
    let node = &hosts.hosts[count - 1];
    let first = &hosts.hosts[0];
    let save = format!(
        "tar -cf {KEPT} /usr/local/bin/k3s /etc/rancher/k3s/config.yaml /etc/rancher/k3s/foundry-token"
    );
    let restore = format!("tar -xf {KEPT} -C /");
    let remove = ["cluster", "node", "remove", node.name.as_str()];
    let (mut by_foundry, mut by_standin) = (Vec::new(), Vec::new());
    for round in 0..opts.rounds {
        let add = [
            "cluster",
            "node",
            "add",
            node.name.as_str(),
            "--role",
            "agent",
        ];
        let took = foundry(lab, &config, &add, &format!("add-{round}")).await?;
        on(&hosts, node, &save, &lab.dir, &format!("save-{round}")).await?;
        foundry(lab, &config, &remove, &format!("remove-{round}")).await?;
        on(
            &hosts,
            node,
            &restore,
            &lab.dir,
            &format!("restore-{round}"),
        )
        .await?;
        let direct = direct_join(&hosts, node, first, &lab.dir, round).await?;
        foundry(lab, &config, &remove, &format!("remove-direct-{round}")).await?;
        eprintln!(
            "  round {}: foundry cluster node add {took:.2} s, install.sh over ssh until Ready {direct:.2} s",
            round + 1
        );
        by_foundry.push(took);
        by_standin.push(direct);
    }
    let (f, s) = (Summary::of(&by_foundry)?, Summary::of(&by_standin)?);
    eprintln!("one agent's join by Foundry: {}", f.describe(" s"));
    eprintln!("the stand-in's own join:     {}", s.describe(" s"));
    figure("join_overhead_ratio", format!("{:.2}", f.median / s.median));
    Ok(())
}
