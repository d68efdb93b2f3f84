//! `hosts`: the same work (bench/remote/) on freshly made lab hosts by Foundry, Ansible,
//! pyinfra and raw OpenSSH, each on a lab of its own; first and second (no-change) runs
//! timed, the work checked on a sample of hosts after each run.

pub(crate) mod child;
pub(crate) mod lab;
mod tools;

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};

pub use child::rusage_main;
use lab::Lab;
use tools::{Prepared, Python, Timed, Tool};

use crate::figure;

pub const USAGE: &str = "\
Usage: foundry-bench hosts [--hosts N] [--tools LIST] [--foundry PATH]

Has Foundry, Ansible, pyinfra and raw OpenSSH (N parallel `ssh`, the limit) do the same
work on N fresh lab hosts each (`foundry lab up`, then `lab down`): a user with sudo and a
key, a sudoers file, packages, the host name (bench/remote/). Times a first and a second
(no-change) run of each, checks the work on a sample of hosts after each run, and prints
one `name=value` line per figure on stdout (notes on stderr): <tool>_first_s,
<tool>_second_s for foundry, ansible, pyinfra and ssh_limit; ansible_over_foundry_first,
ansible_over_foundry_second, pyinfra_over_foundry_first, pyinfra_over_foundry_second,
foundry_over_ssh_limit_first, foundry_over_ssh_limit_second, foundry_peak_rss_mb.
A tool that cannot run here is printed as `skipped`, its reason on stderr.

Options:
  --hosts N       hosts per lab (default 50)
  --tools LIST    which of foundry,ansible,pyinfra,ssh to run (default: all four)
  --foundry PATH  the `foundry` binary (default: the one beside this executable)
  -h, --help      this help

Needs a Docker Engine (for the labs), the OpenSSH client, and python3 with PyPI reachable
the first time: ansible-core and pyinfra go into a venv in the target directory.

Example:
  cargo build --release -p foundry-cli && cargo run --release -p foundry-bench -- hosts --tools ansible,ssh";

pub struct Options {
    pub hosts: usize,
    pub tools: Vec<Tool>,
    pub foundry: Option<PathBuf>,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            hosts: 50,
            tools: Tool::ALL.to_vec(),
            foundry: None,
        }
    }
}

impl Options {
    pub fn set_hosts(&mut self, value: &str) -> Result<()> {
        self.hosts = value
            .parse()
            .ok()
            .filter(|n| (1..=200).contains(n))
            .with_context(|| format!("--hosts {value}: expected a number from 1 to 200"))?;
        Ok(())
    }

    pub fn set_tools(&mut self, value: &str) -> Result<()> {
        let mut tools = Vec::new();
        for name in value.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            let tool = Tool::parse(name)?;
            if !tools.contains(&tool) {
                tools.push(tool);
            }
        }
        if tools.is_empty() {
            bail!("--tools: name at least one of foundry, ansible, pyinfra, ssh");
        }
        // Always in the same order, whatever order they were named in.
        self.tools = Tool::ALL
            .into_iter()
            .filter(|t| tools.contains(t))
            .collect();
        Ok(())
    }
}

enum Outcome {
    Done(Timed, Timed),
    Skipped(String),
    Failed(String),
}

/// Runs the benchmark; `Ok(false)` when a leg failed (its figures say `failed`).
pub fn run(opts: Options) -> Result<bool> {
    let foundry = crate::cli::locate(opts.foundry.clone())?;
    let target = target_dir(&foundry)?;
    let work = tempfile::Builder::new()
        .prefix("foundry-bench-hosts-")
        .tempdir_in(&target)
        .with_context(|| format!("making a directory in {}", target.display()))?;
    eprintln!(
        "hosts benchmark: {} hosts per lab, tools {}; files in {}; foundry: {}",
        opts.hosts,
        opts.tools
            .iter()
            .map(|t| t.arg())
            .collect::<Vec<_>>()
            .join(","),
        work.path().display(),
        foundry.display()
    );
    child::adopt_orphans()?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let (ok, interrupted) = rt.block_on(legs(&opts, &foundry, &target, work.path()))?;
    drop(rt);
    if ok {
        let kept = work.path().to_path_buf();
        if let Err(e) = work.close() {
            eprintln!("warning: could not remove {}: {e}", kept.display());
        }
    } else {
        eprintln!("the tools' output is kept in {}", work.keep().display());
    }
    if interrupted {
        bail!("interrupted");
    }
    Ok(ok)
}

/// The target directory: the one this executable and `foundry` were built in.
pub(crate) fn target_dir(foundry: &Path) -> Result<PathBuf> {
    let exe = std::env::current_exe().context("finding this executable's path")?;
    exe.parent()
        .and_then(Path::parent)
        .or_else(|| foundry.parent().and_then(Path::parent))
        .map(Path::to_path_buf)
        .context("finding the target directory above this executable")
}

async fn legs(opts: &Options, foundry: &Path, target: &Path, work: &Path) -> Result<(bool, bool)> {
    let python = if opts
        .tools
        .iter()
        .any(|t| matches!(t, Tool::Ansible | Tool::Pyinfra))
    {
        eprintln!("python tools");
        let (python, ansible, pyinfra) = Python::ensure(target.join("bench-venv"), work).await?;
        figure("ansible_core_version", ansible);
        figure("pyinfra_version", pyinfra);
        Some(python)
    } else {
        None
    };
    figure("hosts", opts.hosts.to_string());

    let mut results: Vec<(Tool, Outcome)> = Vec::new();
    let mut interrupted = false;
    for &tool in &opts.tools {
        let dir = work.join(tool.arg());
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let lab = Lab::new(foundry, tool.arg(), dir);
        eprintln!("{tool}: (load average {})", load_average());
        let outcome = if let (Tool::Foundry, Some(why)) = (tool, foundry_missing(tool, &lab).await?)
        {
            Outcome::Skipped(why)
        } else {
            eprintln!("  lab {} of {} hosts", lab.name, opts.hosts);
            let result = tokio::select! {
                result = leg(tool, &lab, python.as_ref(), opts.hosts) => result,
                _ = tokio::signal::ctrl_c() => {
                    interrupted = true;
                    Err(anyhow!("interrupted"))
                }
            };
            let strays = child::sweep();
            if strays > 0 {
                eprintln!("  ended {strays} processes the tool left behind");
            }
            // Whatever happened: no lab is left behind.
            if let Err(e) = lab.down().await {
                eprintln!("  warning: {e:#}");
            } else {
                eprintln!("  lab {} down", lab.name);
            }
            match result {
                Ok((first, second)) => Outcome::Done(first, second),
                Err(e) => Outcome::Failed(format!("{e:#}")),
            }
        };
        report(tool, &outcome);
        results.push((tool, outcome));
        if interrupted {
            break;
        }
    }
    ratios(&results);
    let ok = results
        .iter()
        .all(|(_, o)| !matches!(o, Outcome::Failed(_)));
    Ok((ok, interrupted))
}

async fn foundry_missing(tool: Tool, lab: &Lab) -> Result<Option<String>> {
    if tool != Tool::Foundry {
        return Ok(None);
    }
    std::fs::create_dir_all(&lab.home)
        .with_context(|| format!("creating {}", lab.home.display()))?;
    tools::foundry_missing(lab, &lab.dir).await
}

/// One tool on a fresh lab: first run, check, second run, check.
async fn leg(
    tool: Tool,
    lab: &Lab,
    python: Option<&Python>,
    count: usize,
) -> Result<(Timed, Timed)> {
    let hosts = lab.up(count).await?;
    hosts.expect_unconfigured(&lab.dir).await?;
    let prepared = Prepared::new(tool, lab, &hosts, python)?;
    let first = prepared.run("first").await?;
    eprintln!("  first run: {}", describe(&first));
    hosts.verify(&lab.dir, "first").await?;
    let second = prepared.run("second").await?;
    eprintln!("  second run: {}", describe(&second));
    hosts.verify(&lab.dir, "second").await?;
    eprintln!(
        "  checked as foundry with K on {} hosts after each run",
        hosts.sample().len()
    );
    Ok((first, second))
}

/// The machine's 1, 5 and 15 minute load averages: others' work skews the figures.
pub(crate) fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|| "unknown".into())
}

fn describe(timed: &Timed) -> String {
    let mut text = format!("{:.2} s", secs(timed.took));
    if let Some(changes) = timed.changes {
        text.push_str(&format!(", {changes} changes reported"));
    }
    if let Some(kib) = timed.max_rss_kib {
        text.push_str(&format!(", peak RSS {:.1} MiB", kib as f64 / 1024.0));
    }
    text
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

fn report(tool: Tool, outcome: &Outcome) {
    let name = tool.figure();
    match outcome {
        Outcome::Done(first, second) => {
            figure(
                &format!("{name}_first_s"),
                format!("{:.2}", secs(first.took)),
            );
            figure(
                &format!("{name}_second_s"),
                format!("{:.2}", secs(second.took)),
            );
        }
        Outcome::Skipped(why) => {
            eprintln!("  {tool}: skipped: {why}");
            figure(&format!("{name}_first_s"), "skipped".into());
            figure(&format!("{name}_second_s"), "skipped".into());
        }
        Outcome::Failed(why) => {
            eprintln!("  {tool}: FAILED: {why}");
            figure(&format!("{name}_first_s"), "failed".into());
            figure(&format!("{name}_second_s"), "failed".into());
        }
    }
}

/// The ratios between tools that both ran; `skipped` or `failed` when one did not.
fn ratios(results: &[(Tool, Outcome)]) {
    let find = |tool: Tool| results.iter().find(|(t, _)| *t == tool).map(|(_, o)| o);
    let pairs = [
        ("ansible_over_foundry", Tool::Ansible, Tool::Foundry),
        ("pyinfra_over_foundry", Tool::Pyinfra, Tool::Foundry),
        ("foundry_over_ssh_limit", Tool::Foundry, Tool::Ssh),
    ];
    for (name, top, bottom) in pairs {
        let (Some(a), Some(b)) = (find(top), find(bottom)) else {
            continue;
        };
        for run in ["first", "second"] {
            let value = match (a, b) {
                (Outcome::Done(a1, a2), Outcome::Done(b1, b2)) => {
                    let (a, b) = if run == "first" { (a1, b1) } else { (a2, b2) };
                    format!("{:.2}", secs(a.took) / secs(b.took))
                }
                (Outcome::Failed(_), _) | (_, Outcome::Failed(_)) => "failed".into(),
                _ => "skipped".into(),
            };
            figure(&format!("{name}_{run}"), value);
        }
    }
    if let Some(foundry) = find(Tool::Foundry) {
        let value = match foundry {
            Outcome::Done(first, second) => first
                .max_rss_kib
                .max(second.max_rss_kib)
                .map_or("unknown".into(), |kib| {
                    format!("{:.1}", kib as f64 / 1024.0)
                }),
            Outcome::Failed(_) => "failed".into(),
            Outcome::Skipped(_) => "skipped".into(),
        };
        figure("foundry_peak_rss_mb", value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tools_keep_one_order_and_reject_unknown_names() {
        let mut opts = Options::default();
        assert!(opts.set_tools("ssh, ansible,ssh").is_ok());
        assert_eq!(opts.tools, vec![Tool::Ansible, Tool::Ssh]);
        assert!(opts.set_tools("ansible,chef").is_err());
        assert!(opts.set_tools(",").is_err());
    }

    #[test]
    fn hosts_are_between_1_and_200() {
        let mut opts = Options::default();
        assert!(opts.set_hosts("3").is_ok());
        assert_eq!(opts.hosts, 3);
        for bad in ["0", "201", "many", "-1"] {
            assert!(opts.set_hosts(bad).is_err(), "{bad}");
        }
    }
}
