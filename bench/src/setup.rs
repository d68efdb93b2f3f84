//! `setup`: `foundry setup --yes` of the whole stack on a fresh one-host lab (cold), again
//! (no change), and resumed after a SIGKILL at its midpoint; beside the critical path no
//! tool can shorten, measured with plain `docker` commands against the same images.

use std::collections::BTreeMap;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::Command;

use crate::figure;
use crate::hosts::child::{self, tail};
use crate::hosts::lab::Lab;

pub const USAGE: &str = "\
Usage: foundry-bench setup [--foundry PATH]

Runs `foundry setup --yes` of the whole stack (OpenBAO, PowerDNS, the registry) on a fresh
one-host lab (`foundry lab up --hosts 1`, in a FOUNDRY_HOME of its own under the target
directory): cold, then again (no change), then on a second lab killed at its midpoint and
resumed. Then measures the services' own start and init times with plain `docker`
commands against the lab's images (each the median of three runs). Prints one
`name=value` line per figure on stdout (notes on stderr): setup_cold_s, setup_peak_rss_mib, setup_noop_s, resume_after_kill_s,
resume_first_action_ms, critical_openbao_s, critical_dns_s, critical_registry_s,
critical_path_s, setup_overhead_ratio.

Options:
  --foundry PATH  the `foundry` binary (default: the one beside this executable)
  -h, --help      this help

Example:
  cargo build --release -p foundry-cli -p foundry-bench && cargo run --release -p foundry-bench -- setup";

/// One whole setup; building the component images the first time takes longer.
const SETUP_TIMEOUT: Duration = Duration::from_secs(20 * 60);
/// One `docker`, `openssl` or `curl` command of the critical path.
const SHORT_TIMEOUT: Duration = Duration::from_secs(60);
/// A service that has not answered within this is reported as failed.
const READY_TIMEOUT: Duration = Duration::from_secs(120);
/// Between two readiness probes.
const POLL: Duration = Duration::from_millis(10);
/// Stdout lines read from the resumed setup.
const MAX_LINES: usize = 200_000;
/// Each critical-path figure is the median of this many runs.
const CRITICAL_RUNS: usize = 3;
/// Where the killed setup dies: about half its steps are done by then.
const KILL_AT: &str = "stack/dns/api-key#0@completed";
/// OpenBAO's key shares and threshold, as `foundry setup` initializes it.
const SHARES: u32 = 3;
const THRESHOLD: u32 = 2;

#[derive(Debug, Default)]
pub struct Options {
    pub foundry: Option<PathBuf>,
}

pub fn run(opts: Options) -> Result<()> {
    if std::env::var_os("FOUNDRY_FAILPOINTS").is_some() {
        bail!("FOUNDRY_FAILPOINTS is set: every setup would obey it; unset it first");
    }
    let foundry = crate::cli::locate(opts.foundry)?;
    let target = crate::hosts::target_dir(&foundry)?;
    let work = tempfile::Builder::new()
        .prefix("foundry-bench-setup-")
        .tempdir_in(&target)
        .with_context(|| format!("making a directory in {}", target.display()))?;
    eprintln!(
        "setup benchmark: files in {}; foundry: {}; load average {}",
        work.path().display(),
        foundry.display(),
        crate::hosts::load_average()
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let outcome = rt.block_on(legs(&foundry, work.path()));
    drop(rt);
    match outcome {
        Ok(()) => {
            let kept = work.path().to_path_buf();
            if let Err(e) = work.close() {
                eprintln!("warning: could not remove {}: {e}", kept.display());
            }
            Ok(())
        }
        Err(e) => {
            eprintln!("the commands' output is kept in {}", work.keep().display());
            Err(e)
        }
    }
}

async fn legs(foundry: &Path, work: &Path) -> Result<()> {
    let own_exe = std::env::current_exe().context("finding this executable's path")?;

    // The cold and no-change runs, on a lab of their own.
    let dir = work.join("cold");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let lab = Lab::new(foundry, "setup", dir.clone());
    let first = first_lab(&lab, &own_exe, &dir).await;
    if let Err(e) = lab.down().await {
        eprintln!("warning: {e:#}");
    } else {
        eprintln!("lab {} down", lab.name);
    }
    let (cold, images) = first?;

    // The resume, on a second fresh lab.
    let dir = work.join("resume");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let lab = Lab::new(foundry, "resume", dir.clone());
    let resumed = resume_lab(&lab, &dir).await;
    if let Err(e) = lab.down().await {
        eprintln!("warning: {e:#}");
    } else {
        eprintln!("lab {} down", lab.name);
    }
    resumed?;

    // The critical path, once both labs are gone.
    let crit = work.join("critical");
    std::fs::create_dir_all(&crit).with_context(|| format!("creating {}", crit.display()))?;
    let tag = lab.name.trim_start_matches("bench-resume-").to_string();
    let mut openbao = Vec::new();
    let mut dns = Vec::new();
    let mut registry = Vec::new();
    for i in 0..CRITICAL_RUNS {
        let tag = format!("{tag}-{i}");
        openbao.push(critical_openbao(&images.openbao, &crit, &tag).await);
        dns.push(critical_dns(&images.dns, &crit, &tag).await);
        registry.push(critical_registry(&images.registry, &crit, &tag).await);
    }
    let openbao = median_of("critical_openbao_s", openbao);
    let dns = median_of("critical_dns_s", dns);
    let registry = median_of("critical_registry_s", registry);
    match (&openbao, &dns, &registry) {
        (Ok(o), Ok(d), Ok(r)) => {
            let path = (o + d).max(*r);
            figure("critical_path_s", format!("{path:.2}"));
            figure("setup_overhead_ratio", format!("{:.2}", cold / path));
        }
        _ => {
            figure("critical_path_s", "failed".into());
            figure("setup_overhead_ratio", "failed".into());
        }
    }
    ensure!(
        openbao.is_ok() && dns.is_ok() && registry.is_ok(),
        "a critical-path measurement failed (above)"
    );
    Ok(())
}

/// The median of a critical-path figure's runs (OpenBAO's raft election alone varies by
/// seconds from one start to the next), reported with its spread; failed when one run did.
fn median_of(name: &str, runs: Vec<Result<f64>>) -> Result<f64> {
    let measured = runs
        .into_iter()
        .collect::<Result<Vec<f64>>>()
        .and_then(|samples| crate::stats::Summary::of(&samples));
    if let Ok(summary) = &measured {
        eprintln!("{name}: {}", summary.describe(" s"));
    }
    let median = measured.map(|s| s.median);
    report_critical(name, &median);
    median
}

fn report_critical(name: &str, measured: &Result<f64>) {
    match measured {
        Ok(s) => figure(name, format!("{s:.2}")),
        Err(e) => {
            eprintln!("{name}: FAILED: {e:#}");
            figure(name, "failed".into());
        }
    }
}

/// The images the lab's config names, or the components' defaults.
struct Images {
    openbao: String,
    dns: String,
    registry: String,
}

fn images_of(config: &Path) -> Result<Images> {
    let stack = foundry_workflows::config::load(config)
        .with_context(|| format!("reading the images from {}", config.display()))?;
    let components = stack.components.unwrap_or_default();
    Ok(Images {
        openbao: components
            .openbao
            .image
            .unwrap_or_else(|| foundry_workflows::openbao::OPENBAO_IMAGE.into()),
        dns: components
            .dns
            .image
            .unwrap_or_else(|| foundry_workflows::dns::PDNS_IMAGE.into()),
        registry: components
            .zot
            .image
            .unwrap_or_else(|| foundry_workflows::registry::ZOT_IMAGE.into()),
    })
}

/// Which of `images` the Engine does not have yet.
async fn missing_images(images: &Images, dir: &Path) -> Result<Vec<String>> {
    let mut missing = Vec::new();
    for image in [&images.openbao, &images.dns, &images.registry] {
        let mut cmd = Command::new("docker");
        cmd.args(["image", "inspect", "--format", "{{.Id}}", image]);
        let run = child::run(cmd, "image-inspect", dir, SHORT_TIMEOUT, None).await?;
        if !run.status.success() {
            missing.push(image.clone());
        }
    }
    Ok(missing)
}

/// `foundry --config CFG setup ARGS...` with the lab's home, through this executable's
/// `__rusage` mode when `rss` names the file for its peak.
fn setup_command(lab: &Lab, own_exe: &Path, rss: Option<&Path>, args: &[&str]) -> Command {
    let mut cmd = match rss {
        Some(rss) => {
            let mut wrapper = Command::new(own_exe);
            wrapper.arg("__rusage").arg(rss).arg(lab.binary());
            lab.with_home(wrapper)
        }
        None => lab.foundry(),
    };
    cmd.arg("--config")
        .arg(lab.config_path())
        .arg("setup")
        .arg("--yes")
        .args(args);
    cmd
}

/// Lab up, the cold run (its seconds returned) and the no-change runs.
async fn first_lab(lab: &Lab, own_exe: &Path, dir: &Path) -> Result<(f64, Images)> {
    eprintln!("lab {} of 1 host", lab.name);
    let hosts = lab.up(1).await?;
    let images = images_of(&hosts.config)?;
    let missing = missing_images(&images, dir).await?;
    if missing.is_empty() {
        eprintln!(
            "images already on the Engine (not built by this setup): {}, {}, {}",
            images.openbao, images.dns, images.registry
        );
    } else {
        eprintln!(
            "NOTE: images to be built by the cold setup, which setup_cold_s then includes: {}",
            missing.join(", ")
        );
    }

    let rss = dir.join("setup-cold.maxrss");
    let cmd = setup_command(lab, own_exe, Some(&rss), &[]);
    let cold = child::run(cmd, "setup-cold", dir, SETUP_TIMEOUT, None).await?;
    cold.ensure_success("the cold `foundry setup --yes`")?;
    ensure!(
        cold.stdout.contains("setup complete") && !cold.stdout.contains("nothing changed"),
        "the cold setup did not say `setup complete` with changes:\n{}",
        tail(&cold.stdout, 20)
    );
    let cold_s = cold.took.as_secs_f64();
    eprintln!(
        "cold setup: {cold_s:.2} s (load average {})",
        crate::hosts::load_average()
    );
    figure("setup_cold_s", format!("{cold_s:.2}"));
    let rss_kib: Option<u64> = std::fs::read_to_string(&rss)
        .ok()
        .and_then(|t| t.trim().parse().ok());
    figure(
        "setup_peak_rss_mib",
        rss_kib.map_or("unknown".into(), |kib| {
            format!("{:.1}", kib as f64 / 1024.0)
        }),
    );

    let cmd = setup_command(lab, own_exe, None, &[]);
    let noop = child::run(cmd, "setup-noop", dir, SETUP_TIMEOUT, None).await?;
    noop.ensure_success("the second `foundry setup --yes`")?;
    ensure!(
        noop.stdout.contains("setup complete: nothing changed"),
        "the second setup did not say `setup complete: nothing changed`:\n{}",
        tail(&noop.stdout, 20)
    );
    figure("setup_noop_s", format!("{:.2}", noop.took.as_secs_f64()));

    // Once more with events, for where the no-change run's time goes.
    let cmd = setup_command(lab, own_exe, None, &["--output", "json"]);
    let again = child::run(cmd, "setup-noop-json", dir, SETUP_TIMEOUT, None).await?;
    again.ensure_success("the third `foundry setup --yes --output json`")?;
    let lines: Vec<&str> = again.stdout.lines().collect();
    ensure!(
        changed(&lines) == Some(false),
        "the third setup's JSON summary does not say `\"changed\": false`:\n{}",
        tail(&again.stdout, 5)
    );
    eprintln!(
        "no-change run again with --output json: {:.2} s; by phase (first step started to last completed):",
        again.took.as_secs_f64()
    );
    for phase in phases(&lines) {
        eprintln!(
            "  {:<8} {:>7.3} s  {} steps, from {:.3} s",
            phase.name,
            phase.span_ms as f64 / 1000.0,
            phase.steps,
            phase.from_ms as f64 / 1000.0
        );
    }
    Ok((cold_s, images))
}

/// Lab up, a setup killed at [`KILL_AT`], then the resume timed.
async fn resume_lab(lab: &Lab, dir: &Path) -> Result<()> {
    eprintln!("lab {} of 1 host", lab.name);
    lab.up(1).await?;
    let mut cmd = lab.foundry();
    cmd.arg("--config")
        .arg(lab.config_path())
        .args(["setup", "--yes", "--output", "json"])
        .env("FOUNDRY_FAILPOINTS", KILL_AT);
    let killed = child::run(cmd, "setup-killed", dir, SETUP_TIMEOUT, None).await?;
    ensure!(
        killed.status.signal() == Some(libc::SIGKILL),
        "the setup with FOUNDRY_FAILPOINTS={KILL_AT} was not killed ({}):\n{}",
        killed.status,
        tail(&format!("{}\n{}", killed.stdout, killed.stderr), 20)
    );
    let done = killed
        .stdout
        .lines()
        .filter(|l| event_of(l).is_some_and(|(e, _)| e == "step_completed"))
        .count();
    eprintln!(
        "setup killed at {KILL_AT} after {:.2} s, {done} steps completed",
        killed.took.as_secs_f64()
    );

    let mut cmd = lab.foundry();
    cmd.arg("--config")
        .arg(lab.config_path())
        .args(["setup", "--yes", "--output", "json"]);
    let resumed = timed_resume(cmd, dir).await?;
    let lines: Vec<&str> = resumed.stdout.iter().map(String::as_str).collect();
    ensure!(
        resumed.success,
        "the resumed setup failed:\n{}\n{}",
        tail(&resumed.stdout.join("\n"), 20),
        tail(&resumed.stderr, 20)
    );
    ensure!(
        resumed.stderr.contains("resuming the unfinished setup")
            || lines.iter().any(|l| {
                serde_json::from_str::<serde_json::Value>(l)
                    .is_ok_and(|v| v["event"] == "run_started" && v["resumed"] == true)
            }),
        "the second setup did not resume the killed run (no `run_started` with `resumed: true`, \
         no `resuming the unfinished setup`)"
    );
    ensure!(
        changed(&lines) == Some(true),
        "the resumed setup's JSON summary does not say `\"changed\": true`"
    );
    let first = resumed
        .first_action
        .context("the resumed setup printed no step_started or step_in_doubt event")?;
    figure(
        "resume_after_kill_s",
        format!("{:.2}", resumed.took.as_secs_f64()),
    );
    figure(
        "resume_first_action_ms",
        format!("{:.1}", first.as_secs_f64() * 1000.0),
    );
    eprintln!("resumed run by phase:");
    for phase in phases(&lines) {
        eprintln!(
            "  {:<8} {:>7.3} s  {} steps",
            phase.name,
            phase.span_ms as f64 / 1000.0,
            phase.steps
        );
    }
    Ok(())
}

struct Resumed {
    success: bool,
    took: Duration,
    first_action: Option<Duration>,
    stdout: Vec<String>,
    stderr: String,
}

/// Runs `cmd` to its end, its stdout read line by line: from spawn to exit, and to its
/// first `step_started` or `step_in_doubt` event.
async fn timed_resume(mut cmd: Command, dir: &Path) -> Result<Resumed> {
    let err = dir.join("setup-resumed.stderr");
    let file =
        std::fs::File::create(&err).with_context(|| format!("creating {}", err.display()))?;
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(file))
        .kill_on_drop(true);
    let start = Instant::now();
    let mut child = cmd.spawn().context("starting `foundry setup`")?;
    let stdout = child
        .stdout
        .take()
        .context("the setup's stdout is not piped")?;
    let mut lines = BufReader::new(stdout).lines();
    let deadline = tokio::time::Instant::now() + SETUP_TIMEOUT;
    let mut first_action = None;
    let mut kept = Vec::new();
    for _ in 0..MAX_LINES {
        let line = match tokio::time::timeout_at(deadline, lines.next_line()).await {
            Err(_) => bail!("the resumed setup did not end within {SETUP_TIMEOUT:?}"),
            Ok(line) => line.context("reading the resumed setup's stdout")?,
        };
        let Some(line) = line else { break };
        if first_action.is_none()
            && event_of(&line).is_some_and(|(e, _)| e == "step_started" || e == "step_in_doubt")
        {
            first_action = Some(start.elapsed());
        }
        kept.push(line);
    }
    let status = tokio::time::timeout_at(deadline, child.wait())
        .await
        .context("the resumed setup did not end")?
        .context("waiting for the resumed setup")?;
    let took = start.elapsed();
    Ok(Resumed {
        success: status.success(),
        took,
        first_action,
        stdout: kept,
        stderr: std::fs::read_to_string(&err).unwrap_or_default(),
    })
}

/// A JSON event line's `event` and `step`.
fn event_of(line: &str) -> Option<(String, Option<String>)> {
    let value: serde_json::Value = serde_json::from_str(line).ok()?;
    let event = value.get("event")?.as_str()?.to_string();
    let step = value.get("step").and_then(|s| s.as_str()).map(String::from);
    Some((event, step))
}

/// The `changed` of setup's JSON summary, the line that has it.
fn changed(lines: &[&str]) -> Option<bool> {
    lines.iter().rev().find_map(|l| {
        let value: serde_json::Value = serde_json::from_str(l).ok()?;
        value.get("changed")?.as_bool()
    })
}

/// One phase of a run: the steps whose key starts with its name.
#[derive(Debug, PartialEq)]
struct Phase {
    name: String,
    /// From the first step started (or completed from a probe) to the last completed.
    span_ms: u64,
    /// When it began, from the run's first event.
    from_ms: u64,
    steps: usize,
}

/// The phase a step key belongs to: its first segment (`stack/dns/zone#0` is `stack`,
/// `verify#0` is `verify`).
fn phase_of(step: &str) -> &str {
    let end = step.find(['/', '#']).unwrap_or(step.len());
    &step[..end]
}

/// The phases of a run from its `--output json` events (`at` in ms since the epoch), in
/// the order they began.
fn phases(lines: &[&str]) -> Vec<Phase> {
    let mut origin = None;
    // name -> (first, last, completed steps)
    let mut spans: BTreeMap<String, (u64, u64, usize)> = BTreeMap::new();
    for line in lines {
        let Ok(value) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        let Some(at) = value.get("at").and_then(|a| a.as_u64()) else {
            continue;
        };
        origin.get_or_insert(at);
        let (Some(event), Some(step)) = (
            value.get("event").and_then(|e| e.as_str()),
            value.get("step").and_then(|s| s.as_str()),
        ) else {
            continue;
        };
        let entry = spans
            .entry(phase_of(step).to_string())
            .or_insert((at, at, 0));
        entry.0 = entry.0.min(at);
        entry.1 = entry.1.max(at);
        if event == "step_completed" {
            entry.2 += 1;
        }
    }
    let origin = origin.unwrap_or(0);
    let mut phases: Vec<Phase> = spans
        .into_iter()
        .map(|(name, (first, last, steps))| Phase {
            name,
            span_ms: last - first,
            from_ms: first.saturating_sub(origin),
            steps,
        })
        .collect();
    phases.sort_by_key(|p| p.from_ms);
    phases
}

/// A container of the critical path, removed (with its anonymous volumes) when dropped.
struct Container(String);

impl Drop for Container {
    fn drop(&mut self) {
        let _ = std::process::Command::new("docker")
            .args(["rm", "--force", "--volumes", &self.0])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

async fn docker(args: &[&str], dir: &Path, what: &str) -> Result<String> {
    let mut cmd = Command::new("docker");
    cmd.args(args);
    let run = child::run(cmd, "docker", dir, SHORT_TIMEOUT, None).await?;
    run.ensure_success(what)?;
    Ok(run.stdout.trim().to_string())
}

/// The container's address on Docker's default bridge, which this machine reaches.
async fn address(name: &str, dir: &Path) -> Result<String> {
    let ip = docker(
        &[
            "inspect",
            "--format",
            "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
            name,
        ],
        dir,
        "docker inspect",
    )
    .await?;
    ensure!(!ip.is_empty(), "container {name} has no address");
    Ok(ip)
}

/// `curl` with `body` on its stdin (never on its command line): HTTP status and body, or
/// 0 and curl's error when no HTTP answer came.
async fn curl(args: &[&str], body: Option<&str>) -> Result<(u16, String)> {
    // A probe gets no answer quickly; OpenBAO's init may take its time.
    let limit = if body.is_some() { "60" } else { "2" };
    let mut cmd = Command::new("curl");
    cmd.args(["--silent", "--show-error", "--max-time", limit])
        .args(["--write-out", "\n%{http_code}"])
        .args(args)
        .stdin(if body.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    if body.is_some() {
        cmd.arg("--data-binary").arg("@-");
    }
    let mut child = cmd.spawn().context("starting curl")?;
    if let (Some(body), Some(mut stdin)) = (body, child.stdin.take()) {
        stdin
            .write_all(body.as_bytes())
            .await
            .context("writing curl's stdin")?;
    }
    let out = tokio::time::timeout(SHORT_TIMEOUT, child.wait_with_output())
        .await
        .context("curl did not end")?
        .context("waiting for curl")?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
    match code.trim().parse() {
        Ok(0) | Err(_) => Ok((0, String::from_utf8_lossy(&out.stderr).trim().to_string())),
        Ok(code) => Ok((code, body.to_string())),
    }
}

/// Polls `probe` until it says ready, for at most [`READY_TIMEOUT`].
async fn until<F, Fut>(what: &str, mut probe: F) -> Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<bool>>,
{
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        if probe().await? {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("{what} did not answer within {READY_TIMEOUT:?}");
        }
        tokio::time::sleep(POLL).await;
    }
}

/// OpenBAO as Foundry runs it (the image's `server -config`, TLS with a certificate put
/// into the container, raft in a volume): from `docker run` until `sys/init` and
/// [`THRESHOLD`] `sys/unseal` calls are done and `sys/health` says active (raft has its
/// leader).
async fn critical_openbao(image: &str, dir: &Path, tag: &str) -> Result<f64> {
    let cert = dir.join("tls.crt");
    let key = dir.join("tls.key");
    let mut cmd = Command::new("openssl");
    cmd.args(["req", "-x509", "-newkey", "ec", "-pkeyopt"])
        .args(["ec_paramgen_curve:prime256v1", "-nodes", "-days", "1"])
        .args(["-subj", "/CN=openbao", "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&cert);
    child::run(cmd, "openssl", dir, SHORT_TIMEOUT, None)
        .await?
        .ensure_success("openssl req (the benchmark's own OpenBAO certificate)")?;
    let name = format!("foundry-bench-{tag}-openbao");
    let guard = Container(name.clone());
    let start = Instant::now();
    docker(
        &[
            "run",
            "--detach",
            "--name",
            &name,
            "--env",
            "BAO_API_ADDR=https://127.0.0.1:8200",
            "--env",
            "BAO_CLUSTER_ADDR=https://127.0.0.1:8201",
            "--mount",
            &format!(
                "type=bind,src={},dst={},readonly",
                cert.display(),
                foundry_workflows::openbao::image::TLS_CERT_PATH
            ),
            "--mount",
            &format!(
                "type=bind,src={},dst={},readonly",
                key.display(),
                foundry_workflows::openbao::image::TLS_KEY_PATH
            ),
            "--mount",
            &format!(
                "type=volume,dst={}",
                foundry_workflows::openbao::image::DATA_PATH
            ),
            image,
            "server",
            &format!("-config={}", foundry_workflows::openbao::image::CONFIG_PATH),
        ],
        dir,
        "docker run (OpenBAO)",
    )
    .await?;
    let ip = address(&name, dir).await?;
    let base = format!("https://{ip}:8200/v1");
    let health = format!("{base}/sys/health");
    let health = health.as_str();
    until("OpenBAO", move || async move {
        Ok(curl(&["--insecure", health], None).await?.0 != 0)
    })
    .await?;
    let (code, body) = curl(
        &[
            "--insecure",
            "--request",
            "PUT",
            &format!("{base}/sys/init"),
        ],
        Some(&format!(
            r#"{{"secret_shares":{SHARES},"secret_threshold":{THRESHOLD}}}"#
        )),
    )
    .await?;
    ensure!(
        code == 200,
        "OpenBAO's sys/init answered {code}: {}",
        tail(&body, 3)
    );
    let init: serde_json::Value =
        serde_json::from_str(&body).context("OpenBAO's sys/init answer is not JSON")?;
    let keys: Vec<String> = init["keys"]
        .as_array()
        .map(|k| {
            k.iter()
                .filter_map(|k| k.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    ensure!(
        keys.len() == SHARES as usize,
        "OpenBAO's sys/init gave {} keys, expected {SHARES}",
        keys.len()
    );
    let mut sealed = true;
    for key in keys.iter().take(THRESHOLD as usize) {
        let (code, body) = curl(
            &[
                "--insecure",
                "--request",
                "PUT",
                &format!("{base}/sys/unseal"),
            ],
            Some(&serde_json::json!({ "key": key }).to_string()),
        )
        .await?;
        ensure!(
            code == 200,
            "OpenBAO's sys/unseal answered {code}: {}",
            tail(&body, 3)
        );
        let state: serde_json::Value =
            serde_json::from_str(&body).context("OpenBAO's sys/unseal answer is not JSON")?;
        sealed = state["sealed"].as_bool().unwrap_or(true);
    }
    ensure!(
        !sealed,
        "OpenBAO is still sealed after {THRESHOLD} unseal calls"
    );
    // Unsealed, raft elects its leader: until then nothing can be written.
    until("OpenBAO's active node", move || async move {
        Ok(curl(&["--insecure", health], None).await?.0 == 200)
    })
    .await?;
    let took = start.elapsed().as_secs_f64();
    drop(guard);
    eprintln!(
        "critical OpenBAO: docker run, TLS answering, init ({SHARES} shares), {THRESHOLD} unseals over its HTTP API, until sys/health says active: {took:.2} s"
    );
    Ok(took)
}

/// The authoritative PowerDNS server as Foundry runs it (`auth`, an API key in
/// `pdns.d`, its data in a volume): from `docker run` until its API answers on the
/// container's loopback (any HTTP answer, through bash's `/dev/tcp` in the container, the
/// way Foundry's relay reaches it).
async fn critical_dns(image: &str, dir: &Path, tag: &str) -> Result<f64> {
    // A key for this throwaway server only; the API is asked nothing that needs it.
    let conf = dir.join("api-key.conf");
    std::fs::write(&conf, format!("api-key=bench-{tag}\n"))
        .with_context(|| format!("writing {}", conf.display()))?;
    let name = format!("foundry-bench-{tag}-pdns");
    let guard = Container(name.clone());
    let start = Instant::now();
    docker(
        &[
            "run",
            "--detach",
            "--name",
            &name,
            "--mount",
            &format!(
                "type=bind,src={},dst=/etc/powerdns/pdns.d/foundry-api-key.conf,readonly",
                conf.display()
            ),
            "--mount",
            "type=volume,dst=/var/lib/powerdns",
            image,
            "auth",
        ],
        dir,
        "docker run (PowerDNS)",
    )
    .await?;
    const ASK: &str = r#"exec 3<>/dev/tcp/127.0.0.1/8081 || exit 1
printf 'GET /api/v1/servers HTTP/1.0\r\n\r\n' >&3
head -c 5 <&3"#;
    let container = name.as_str();
    until("PowerDNS's API", move || async move {
        let mut cmd = Command::new("docker");
        cmd.args(["exec", container, "bash", "-c", ASK]);
        let run = child::run(cmd, "pdns-ask", dir, SHORT_TIMEOUT, None).await?;
        Ok(run.status.success() && run.stdout.starts_with("HTTP/"))
    })
    .await?;
    let took = start.elapsed().as_secs_f64();
    drop(guard);
    eprintln!(
        "critical PowerDNS: docker run until its API answers (each probe a `docker exec`): {took:.2} s"
    );
    Ok(took)
}

/// The registry as Foundry runs it (`serve CONFIG`, Foundry's `config.json`, storage in a
/// volume): from `docker run` until `GET /v2/` answers 200.
async fn critical_registry(image: &str, dir: &Path, tag: &str) -> Result<f64> {
    let input: foundry_workflows::registry::RegistryInput = serde_json::from_value(
        serde_json::json!({ "network": "bridge", "ipv4": "127.0.0.1", "volume": "unused" }),
    )
    .context("the registry's input")?;
    let config = dir.join("config.json");
    std::fs::write(&config, input.zot_config())
        .with_context(|| format!("writing {}", config.display()))?;
    let name = format!("foundry-bench-{tag}-registry");
    let guard = Container(name.clone());
    let start = Instant::now();
    docker(
        &[
            "run",
            "--detach",
            "--name",
            &name,
            "--mount",
            &format!(
                "type=bind,src={},dst={},readonly",
                config.display(),
                foundry_workflows::registry::CONFIG_PATH
            ),
            "--mount",
            &format!("type=volume,dst={}", foundry_workflows::registry::DATA_PATH),
            image,
            "serve",
            foundry_workflows::registry::CONFIG_PATH,
        ],
        dir,
        "docker run (registry)",
    )
    .await?;
    let ip = address(&name, dir).await?;
    let url = format!("http://{ip}:{}/v2/", foundry_workflows::registry::PORT);
    let url = url.as_str();
    until("the registry", move || async move {
        Ok(curl(&[url], None).await?.0 == 200)
    })
    .await?;
    let took = start.elapsed().as_secs_f64();
    drop(guard);
    eprintln!("critical registry: docker run until GET /v2/ answers 200: {took:.2} s");
    Ok(took)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phases_span_their_steps_in_the_order_they_began() {
        let lines = [
            r#"{"run":"r","at":1000,"event":"run_started","workflow":"setup","resumed":false,"foundry_version":"0"}"#,
            r#"{"run":"r","at":1010,"event":"step_started","step":"hosts/h1/user#0","kind":"k","attempt":1}"#,
            r#"{"run":"r","at":1500,"event":"step_completed","step":"hosts/h1/user#0","duration_ms":490,"from_probe":false}"#,
            "not json",
            r#"{"run":"r","at":1600,"event":"step_completed","step":"stack/dns/api-key#0","duration_ms":0,"from_probe":true}"#,
            r#"{"run":"r","at":2600,"event":"step_completed","step":"stack/openbao/init#0","duration_ms":900,"from_probe":false}"#,
            r#"{"run":"r","at":2700,"event":"step_started","step":"verify#0","kind":"k","attempt":1}"#,
            r#"{"run":"r","at":2750,"event":"step_completed","step":"verify#0","duration_ms":50,"from_probe":false}"#,
            r#"{"setup":"r","changed":false}"#,
        ];
        let got = phases(&lines);
        let names: Vec<&str> = got.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["hosts", "stack", "verify"]);
        assert_eq!(
            got[0],
            Phase {
                name: "hosts".into(),
                span_ms: 490,
                from_ms: 10,
                steps: 1
            }
        );
        assert_eq!(
            (got[1].span_ms, got[1].from_ms, got[1].steps),
            (1000, 600, 2)
        );
        assert_eq!((got[2].span_ms, got[2].steps), (50, 1));
        assert_eq!(changed(&lines), Some(false));
    }

    #[test]
    fn a_step_key_names_its_phase_by_its_first_segment() {
        assert_eq!(phase_of("stack/dns/zone#0"), "stack");
        assert_eq!(phase_of("verify#0"), "verify");
        assert_eq!(phase_of("keys"), "keys");
    }

    #[test]
    fn events_are_read_from_json_lines_only() {
        assert_eq!(
            event_of(r#"{"event":"step_in_doubt","step":"a#0"}"#),
            Some(("step_in_doubt".into(), Some("a#0".into())))
        );
        assert_eq!(event_of("setup complete"), None);
        assert_eq!(changed(&["plain text"]), None);
    }
}
