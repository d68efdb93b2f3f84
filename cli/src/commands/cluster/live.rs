//! `foundry cluster status`, `cluster node list` and `cluster node remove`: the cluster
//! asked live (nodes, etcd, the VIP's holder), and one node taken out of it as one durable
//! run.

use foundry_core::Workflow;
use foundry_workflows::k3s::remove::{K3sNodeRemove, RemoveInput, RemoveOutput, quorum_refusal};
use foundry_workflows::k3s::status::{self, ClusterStatus};
use foundry_workflows::k3s::{ClusterPlan, Role, node_host};

use super::Flags;
use crate::commands::confirm;
use crate::commands::drive::start_or_resume as drive;
use crate::commands::stack::Loaded;
use crate::exit::{self, CliError};
use crate::printer::Printer;

#[derive(Debug, clap::Args)]
pub struct RemoveArgs {
    /// A host of the stack config, by name or address.
    #[arg(value_name = "HOST")]
    host: String,
    /// How long the drain may take, in seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 300)]
    drain_timeout: u64,
    #[command(flatten)]
    flags: Flags,
}

/// `cluster status`: the cluster's summary, then its nodes.
pub async fn status(printer: &Printer, loaded: &Loaded) -> Result<u8, CliError> {
    let live = status::live(&loaded.stack).await?;
    if printer.json() {
        let _ = printer.data(&live);
        return Ok(exit::OK);
    }
    let ready = live.nodes.iter().filter(|n| n.node.ready).count();
    let _ = printer.line(&format!("cluster {} (API {})", live.cluster, live.api));
    let _ = printer.line(&format!("nodes: {ready} of {} Ready", live.nodes.len()));
    let _ = printer.line(&etcd_line(&live));
    let _ = printer.line(&match (&live.vip, &live.vip_holder) {
        (Some(vip), Some(holder)) => format!("VIP {vip}: held by {holder}"),
        (Some(vip), None) => format!("VIP {vip}: no holder (kube-vip's lease has none)"),
        (None, _) => "VIP: none (a single node)".into(),
    });
    let _ = printer.line("");
    node_table(printer, &live);
    Ok(exit::OK)
}

/// `cluster node list`: one row per node (one JSON object per node with `--output json`).
pub async fn list(printer: &Printer, loaded: &Loaded) -> Result<u8, CliError> {
    let live = status::live(&loaded.stack).await?;
    if printer.json() {
        let _ = printer.data_each(&live.nodes);
        return Ok(exit::OK);
    }
    node_table(printer, &live);
    Ok(exit::OK)
}

fn etcd_line(live: &ClusterStatus) -> String {
    let etcd = &live.etcd;
    match (&etcd.read_on, &etcd.error) {
        (Some(on), _) => format!(
            "etcd: {} members, {} voters, {} learners; quorum {} (read on {on})",
            etcd.members.len(),
            etcd.voters,
            etcd.learners,
            etcd.quorum
        ),
        (None, Some(error)) => format!("etcd: could not be read: {error}"),
        (None, None) => "etcd: could not be read".into(),
    }
}

fn node_table(printer: &Printer, live: &ClusterStatus) {
    let rows: Vec<Vec<String>> = live
        .nodes
        .iter()
        .map(|n| {
            let mut state = if n.node.ready { "Ready" } else { "NotReady" }.to_string();
            if n.node.cordoned {
                state.push_str(",SchedulingDisabled");
            }
            vec![
                n.node.name.clone(),
                if n.node.roles.is_empty() {
                    "<none>".into()
                } else {
                    n.node.roles.join(",")
                },
                n.node.kubelet_version.clone(),
                state,
                n.etcd.clone().unwrap_or_else(|| "-".into()),
                if n.holds_vip { "yes" } else { "" }.into(),
            ]
        })
        .collect();
    let _ = printer.table(
        &["NAME", "ROLES", "VERSION", "STATUS", "ETCD", "VIP"],
        &rows,
    );
}

/// `cluster node remove HOST`: refused when it would break etcd's quorum (said with the
/// numbers, before any run); otherwise one durable run.
pub async fn remove(args: RemoveArgs, printer: &Printer, loaded: &Loaded) -> Result<u8, CliError> {
    let stack = &loaded.stack;
    let plan = ClusterPlan::of(stack)?;
    let node = node_host(stack, &args.host)?;
    let live = status::live(stack).await?;
    let Some(view) = live.nodes.iter().find(|n| n.node.name == node.name) else {
        return Err(CliError::new(format!(
            "{} is not a node of the cluster (nodes: {})",
            node.name,
            live.nodes
                .iter()
                .map(|n| n.node.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )));
    };
    let role = if status::is_server(&view.node) {
        Role::Server
    } else {
        Role::Agent
    };
    let etcd_on = match role {
        Role::Agent => None,
        Role::Server => {
            if let Some(refusal) = quorum_refusal(&node.name, &live.etcd.members) {
                return Err(CliError::new(format!(
                    "cluster node remove: nothing was done: {refusal}"
                )));
            }
            let others: Vec<_> = status::servers(
                stack,
                &live
                    .nodes
                    .iter()
                    .map(|n| n.node.clone())
                    .collect::<Vec<_>>(),
            )
            .into_iter()
            .filter(|h| h.name != node.name)
            .collect();
            let view = status::etcd_view(&others).await;
            let on = view
                .read_on
                .as_ref()
                .and_then(|name| others.iter().find(|h| &h.name == name).cloned());
            if on.is_none() {
                return Err(CliError::new(format!(
                    "cluster node remove: nothing was done: no other server answers to read etcd on ({})",
                    view.error.unwrap_or_default()
                )));
            }
            on
        }
    };
    let input = RemoveInput {
        setup: plan.setup,
        node,
        role,
        api: live.api.clone(),
        etcd_on,
        drain_timeout_s: args.drain_timeout,
        member_timeout_s: 120,
    };
    K3sNodeRemove
        .check(&input)
        .map_err(|e| CliError::new(format!("cluster node remove: {e}")))?;
    let what = format!(
        "cordon, drain, delete and uninstall {} ({})",
        input.node.name,
        role.as_str()
    );
    if args.flags.dry_run {
        if printer.json() {
            let _ = printer.data(&serde_json::json!({ "node": input.node.name, "plan": [what] }));
        } else {
            let _ = printer.line(&what);
        }
        return Ok(exit::OK);
    }
    confirm(
        args.flags.yes,
        &format!("Remove {} from the cluster?", input.node.name),
    )?;
    let value = serde_json::to_value(&input).map_err(|e| CliError::new(e.to_string()))?;
    let (run, (code, output)) = drive(K3sNodeRemove::NAME, value, printer).await?;
    let Some(output) = output else {
        return Ok(code);
    };
    let output: RemoveOutput =
        serde_json::from_value(output).map_err(|e| CliError::new(e.to_string()))?;
    let changes = output.changes();
    if printer.json() {
        let _ = printer.data(&serde_json::json!({
            "run": run,
            "node": output.node,
            "role": output.role,
            "evicted": output.evicted,
            "members_removed": output.members_removed,
            "changes": changes,
        }));
    } else {
        for change in changes {
            let _ = printer.line(&format!("k3s: {change}"));
        }
    }
    Ok(code)
}
