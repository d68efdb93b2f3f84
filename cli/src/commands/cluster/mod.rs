//! `foundry cluster`: the K3s cluster the stack config describes. `init` makes it on the
//! first control-plane node; `node add` joins more hosts (servers one at a time, agents side
//! by side). Each is one durable run; the same command again resumes an unfinished run with
//! the same input instead of starting another, and on a cluster that is as asked changes
//! nothing.

mod live;

use std::path::Path;

use foundry_core::Workflow;
use foundry_workflows::component::Component;
use foundry_workflows::k3s::add::{AddInput, AddOutput, K3sNodeAdd};
use foundry_workflows::k3s::component::K3s;
use foundry_workflows::k3s::init::{InitOutput, K3sInit};
use foundry_workflows::k3s::{ClusterPlan, Role, node_host};

use super::stack::Loaded;
use crate::commands::confirm;
use crate::commands::drive::start_or_resume as drive;
use crate::exit::{self, CliError};
use crate::printer::Printer;

#[derive(Debug, clap::Subcommand)]
pub enum ClusterCmd {
    /// Make the cluster: K3s on the first control-plane node, behind the API's VIP.
    #[command(after_help = "\
K3s is uploaded from components.k3s.binary and .installer (nothing is downloaded on the
host), its flags written to /etc/rancher/k3s/config.yaml, kube-vip's manifest put in the
server's manifests directory, and the installer run detached, so a dropped connection or
a killed foundry does not stop it. The server token comes from OpenBAO, or is made there
for a host with no cluster; the kubeconfig, pointed at the VIP, is kept there too. A host
that already runs a cluster whose token OpenBAO does not hold is refused.

Examples:
  foundry cluster init
  foundry cluster init --single-node
  foundry cluster init --dry-run --output json")]
    Init(InitArgs),
    /// The cluster now: nodes, etcd's members and voters, the VIP's holder (asked live).
    #[command(after_help = "\
Examples:
  foundry cluster status
  foundry cluster status --output json")]
    Status,
    /// The cluster's nodes.
    #[command(subcommand)]
    Node(NodeCmd),
}

/// Room for `list` and `remove`.
#[derive(Debug, clap::Subcommand)]
pub enum NodeCmd {
    /// Join hosts to the cluster: servers strictly one at a time, agents side by side.
    #[command(after_help = "\
Each server is done only once its node is Ready and its etcd member a voter, before the
next one starts; a host whose address is already an etcd member's of another node is
refused until that member is removed. Agents join
at most components.k3s.agents_at_once at a time. The join token always comes from
OpenBAO: without one, nothing joins. A host's role is --role's, else the one
cluster.nodes gives it (control-plane: server), else agent.

Examples:
  foundry cluster node add host-2 host-3 --role server --yes
  foundry cluster node add host-4 host-5
  foundry cluster node add host-4 --dry-run")]
    Add(AddArgs),
    /// The nodes now: roles, versions, Ready, cordoned, etcd membership, the VIP's holder.
    #[command(after_help = "\
Asked live of the cluster's API (through the VIP, else each control-plane node) with the
kubeconfig OpenBAO keeps, and of etcd over SSH on a server.

Examples:
  foundry cluster node list
  foundry cluster node list --output json")]
    List,
    /// Take a node out: cordon, drain, delete, its etcd member gone, K3s uninstalled.
    #[command(after_help = "\
A server whose removal would leave etcd without a quorum (a majority of its voters) is
refused before anything is done. The drain evicts pods through the API, honouring their
disruption budgets, for at most --drain-timeout seconds. A server's etcd member is
removed by K3s with its Node; Foundry removes it itself when K3s has not.

Examples:
  foundry cluster node remove host-4 --yes
  foundry cluster node remove host-3 --drain-timeout 600")]
    Remove(live::RemoveArgs),
}

#[derive(Debug, clap::Args)]
pub struct InitArgs {
    /// One server and no VIP: no kube-vip, the kubeconfig points at the server.
    #[arg(long)]
    single_node: bool,
    #[command(flatten)]
    flags: Flags,
}

#[derive(Debug, clap::Args)]
pub struct AddArgs {
    /// Hosts of the stack config, by name or address.
    #[arg(value_name = "HOST", required = true)]
    hosts: Vec<String>,
    /// Their role, instead of what cluster.nodes says.
    #[arg(long, value_enum)]
    role: Option<RoleArg>,
    #[command(flatten)]
    flags: Flags,
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum RoleArg {
    Server,
    Agent,
}

#[derive(Debug, clap::Args)]
pub struct Flags {
    /// Do it without asking (needed without a terminal).
    #[arg(long, short = 'y')]
    pub(crate) yes: bool,
    /// Say what would be done, asked live of the cluster, and change nothing.
    #[arg(long)]
    pub(crate) dry_run: bool,
}

pub async fn run(
    cmd: ClusterCmd,
    printer: &Printer,
    config: Option<&Path>,
) -> Result<u8, CliError> {
    let loaded = Loaded::load(config)?;
    match cmd {
        ClusterCmd::Init(args) => init(args, printer, &loaded).await,
        ClusterCmd::Node(NodeCmd::Add(args)) => add(args, printer, &loaded).await,
        ClusterCmd::Status => live::status(printer, &loaded).await,
        ClusterCmd::Node(NodeCmd::List) => live::list(printer, &loaded).await,
        ClusterCmd::Node(NodeCmd::Remove(args)) => live::remove(args, printer, &loaded).await,
    }
}

async fn init(args: InitArgs, printer: &Printer, loaded: &Loaded) -> Result<u8, CliError> {
    let input = K3s.init_input(&loaded.stack, args.single_node)?;
    if args.flags.dry_run {
        let status = K3s.status(&loaded.stack).await?;
        let plan = if status.healthy {
            Vec::new()
        } else {
            vec![format!(
                "install K3s on {} ({}), {}",
                input.first.name,
                if args.single_node {
                    "single node"
                } else {
                    "cluster-init, kube-vip"
                },
                status.summary
            )]
        };
        return said_plan(printer, "k3s", &input.first.name, &plan);
    }
    confirm(
        args.flags.yes,
        &format!("Make the cluster on {}?", input.first.name),
    )?;
    let value = serde_json::to_value(&input).map_err(|e| CliError::new(e.to_string()))?;
    let (run, (code, output)) = drive(K3sInit::NAME, value, printer).await?;
    let Some(output) = output else {
        return Ok(code);
    };
    let output: InitOutput =
        serde_json::from_value(output).map_err(|e| CliError::new(e.to_string()))?;
    report(
        printer,
        &run,
        &output.server,
        &output.api,
        &output.changes(),
    );
    Ok(code)
}

async fn add(args: AddArgs, printer: &Printer, loaded: &Loaded) -> Result<u8, CliError> {
    let stack = &loaded.stack;
    let plan = ClusterPlan::of(stack)?;
    let given = args.role.map(|r| match r {
        RoleArg::Server => Role::Server,
        RoleArg::Agent => Role::Agent,
    });
    let (mut servers, mut agents) = (Vec::new(), Vec::new());
    for host in &args.hosts {
        let node = node_host(stack, host)?;
        match ClusterPlan::role_of(stack, &node, given) {
            Role::Server => servers.push(node),
            Role::Agent => agents.push(node),
        }
    }
    let input = AddInput {
        setup: plan.setup,
        first: plan.first,
        servers,
        agents,
        agents_at_once: plan.agents_at_once,
        single_node: plan.single_node,
    };
    K3sNodeAdd
        .check(&input)
        .map_err(|e| CliError::new(format!("cluster node add: {e}")))?;
    let said: Vec<String> = input
        .servers
        .iter()
        .map(|s| format!("join {} as a server", s.name))
        .chain(
            input
                .agents
                .iter()
                .map(|a| format!("join {} as an agent", a.name)),
        )
        .collect();
    if args.flags.dry_run {
        let status = K3s.status(stack).await?;
        let present: Vec<String> = status.detail["nodes"]
            .as_array()
            .map(|nodes| {
                nodes
                    .iter()
                    .filter(|n| n["ready"] == true)
                    .filter_map(|n| n["name"].as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default();
        let plan: Vec<String> = input
            .servers
            .iter()
            .chain(&input.agents)
            .zip(&said)
            .filter(|(n, _)| !present.contains(&n.name))
            .map(|(_, s)| s.clone())
            .collect();
        return said_plan(printer, "k3s", &input.first.name, &plan);
    }
    confirm(
        args.flags.yes,
        &format!("{}?", capitalized(&said.join(", "))),
    )?;
    let value = serde_json::to_value(&input).map_err(|e| CliError::new(e.to_string()))?;
    let (run, (code, output)) = drive(K3sNodeAdd::NAME, value, printer).await?;
    let Some(output) = output else {
        return Ok(code);
    };
    let output: AddOutput =
        serde_json::from_value(output).map_err(|e| CliError::new(e.to_string()))?;
    report(
        printer,
        &run,
        &input.first.name,
        match output.api.is_empty() {
            true => input.join_url(),
            false => output.api.clone(),
        }
        .as_str(),
        &output.changes(),
    );
    Ok(code)
}

fn capitalized(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(c) => c.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

fn said_plan(
    printer: &Printer,
    component: &str,
    host: &str,
    plan: &[String],
) -> Result<u8, CliError> {
    if printer.json() {
        let _ = printer.data(&serde_json::json!({
            "component": component,
            "host": host,
            "plan": plan,
        }));
    } else if plan.is_empty() {
        let _ = printer.line("nothing to do");
    } else {
        for step in plan {
            let _ = printer.line(step);
        }
    }
    Ok(exit::OK)
}

fn report(printer: &Printer, run: &str, server: &str, api: &str, changes: &[String]) {
    if printer.json() {
        let _ = printer.data(&serde_json::json!({
            "component": "k3s",
            "run": run,
            "server": server,
            "api": api,
            "changed": !changes.is_empty(),
            "changes": changes,
        }));
        return;
    }
    if changes.is_empty() {
        let _ = printer.line("k3s: nothing changed");
    } else {
        for change in changes {
            let _ = printer.line(&format!("k3s: {change}"));
        }
    }
}
