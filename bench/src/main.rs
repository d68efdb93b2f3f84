//! Foundry's benchmarks, printed side by side with the disk's own figures.
//!
//! Usage: `cargo build --release -p foundry-cli && cargo run --release -p foundry-bench -- engine [--dir DIR] [--foundry PATH]`,
//! or `... -- hosts [--hosts N] [--tools LIST]` for Foundry beside Ansible, pyinfra and
//! raw OpenSSH on lab hosts, or `... -- setup` for `foundry setup` of the whole stack on a
//! fresh lab beside the services' own start and init times, or `... -- join` for the K3s
//! cluster's joins on a lab of systemd hosts beside the K3s stand-in's own join.
//!
//! Prints exactly one `name=value` line per figure on stdout; progress and notes go to
//! stderr. What each figure means and its goal: docs/benchmarks.md.

mod cli;
mod disk;
mod hosts;
mod inproc;
mod join;
mod pg;
mod setup;
mod stats;

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, anyhow, bail};

use crate::stats::{Summary, millis};

const USAGE: &str = "\
Usage: foundry-bench engine [--dir DIR] [--foundry PATH] [--journal redb|postgres]
       foundry-bench hosts [--hosts N] [--tools LIST] [--foundry PATH]   (hosts --help)
       foundry-bench setup [--foundry PATH]                               (setup --help)
       foundry-bench join [--agents N] [--rounds N] [--foundry PATH]     (join --help)

Measures the engine beside the disk it writes to, and prints one `name=value` line per
figure on stdout (notes on stderr): fsync_4k_us, baseline_redb_commit_us,
durable_step_steps, durable_step_us, step_vs_fsync_ratio, fanout100_steps_per_s,
status_10k_steps_ms, status_10k_steps_ms_max, resume_first_action_ms.

Options:
  --dir DIR       where to measure: a fresh directory is made in DIR and removed at the
                  end (default: ./target, on the project's disk; not /tmp, which may be
                  tmpfs)
  --foundry PATH  the `foundry` binary (default: the one beside this executable; build it
                  with `cargo build --release -p foundry-cli`)
  --journal J     redb (default), or postgres: a throwaway PostgreSQL 15 cluster is made
                  in DIR and the engine runs on it, beside the server's own durable
                  single-row commit (pg_commit_us, durable_step_us, step_vs_pg_commit_ratio,
                  fanout100_steps_per_s)
  -h, --help      this help

Build both in release with the same CARGO_TARGET_DIR, e.g.
  cargo build --release -p foundry-cli && cargo run --release -p foundry-bench -- engine";

/// Warm-up, then measured, sequential steps for `durable_step_us`.
const WARMUP_STEPS: u64 = 200;
const DURABLE_STEPS: u64 = 10_000;
/// The durable steps' rounds, each between two halves of as many baseline operations: the
/// ratio is the median of the rounds' ratios of means, so both sides see the same disk
/// weather.
const DURABLE_ROUNDS: u64 = 10;
/// `fanout100_steps_per_s`.
const FANOUT_STEPS: u64 = 10_000;
const FANOUT: u64 = 100;
/// Whole-process runs of `workflow status` and `workflow resume`.
const STATUS_RUNS: usize = 20;
const RESUME_RUNS: usize = 10;
/// Extra runs against the journal exactly as the crash left it (notes only).
const CRASHED_RUNS: usize = 3;
/// In-process reads of the prepared journal (notes only).
const READ_RUNS: usize = 5;
/// The value size of the redb baseline: about one journaled step.
const BASELINE_VALUE_BYTES: usize = 300;

#[derive(Debug, Default)]
struct Options {
    dir: Option<PathBuf>,
    foundry: Option<PathBuf>,
    /// `--journal postgres`: the in-process figures on a PostgreSQL journal.
    postgres: bool,
}

enum Parsed {
    Help,
    Engine(Options),
    HostsHelp,
    Hosts(hosts::Options),
    SetupHelp,
    Setup(setup::Options),
    JoinHelp,
    Join(join::Options),
}

fn value(args: &mut impl Iterator<Item = OsString>, flag: &str) -> Result<PathBuf> {
    args.next()
        .map(PathBuf::from)
        .ok_or_else(|| anyhow!("{flag} needs a value\n\n{USAGE}"))
}

fn parse(args: impl IntoIterator<Item = OsString>) -> Result<Parsed> {
    let mut args = args.into_iter();
    match args
        .next()
        .map(|a| a.to_string_lossy().into_owned())
        .as_deref()
    {
        Some("engine") => parse_engine(args),
        Some("hosts") => parse_hosts(args),
        Some("setup") => parse_setup(args),
        Some("join") => parse_join(args),
        Some("-h" | "--help") => Ok(Parsed::Help),
        Some(other) => {
            bail!("unknown benchmark `{other}`: `engine`, `hosts`, `setup` or `join`\n\n{USAGE}")
        }
        None => bail!("which benchmark? `engine`, `hosts`, `setup` or `join`\n\n{USAGE}"),
    }
}

fn parse_engine(mut args: impl Iterator<Item = OsString>) -> Result<Parsed> {
    let mut opts = Options::default();
    while let Some(arg) = args.next() {
        let text = arg.to_string_lossy();
        match text.as_ref() {
            "-h" | "--help" => return Ok(Parsed::Help),
            "--dir" => opts.dir = Some(value(&mut args, "--dir")?),
            "--foundry" => opts.foundry = Some(value(&mut args, "--foundry")?),
            "--journal" => {
                opts.postgres = match value(&mut args, "--journal")?.to_str() {
                    Some("postgres") => true,
                    Some("redb") => false,
                    _ => bail!("--journal takes redb or postgres\n\n{USAGE}"),
                }
            }
            other => {
                if let Some(dir) = other.strip_prefix("--dir=") {
                    opts.dir = Some(PathBuf::from(dir));
                } else if let Some(bin) = other.strip_prefix("--foundry=") {
                    opts.foundry = Some(PathBuf::from(bin));
                } else {
                    bail!("unexpected argument `{other}`\n\n{USAGE}");
                }
            }
        }
    }
    Ok(Parsed::Engine(opts))
}

fn parse_hosts(mut args: impl Iterator<Item = OsString>) -> Result<Parsed> {
    let mut opts = hosts::Options::default();
    let usage = hosts::USAGE;
    while let Some(arg) = args.next() {
        let text = arg.to_string_lossy().into_owned();
        let (flag, inline) = match text.split_once('=') {
            Some((flag, v)) if flag.starts_with("--") => (flag.to_string(), Some(v.to_string())),
            _ => (text.clone(), None),
        };
        let mut take = |name: &str| -> Result<String> {
            match &inline {
                Some(v) => Ok(v.clone()),
                None => Ok(value(&mut args, name)?.to_string_lossy().into_owned()),
            }
        };
        match flag.as_str() {
            "-h" | "--help" => return Ok(Parsed::HostsHelp),
            "--hosts" => opts.set_hosts(&take("--hosts")?)?,
            "--tools" => opts.set_tools(&take("--tools")?)?,
            "--foundry" => opts.foundry = Some(PathBuf::from(take("--foundry")?)),
            _ => bail!("unexpected argument `{text}`\n\n{usage}"),
        }
    }
    Ok(Parsed::Hosts(opts))
}

fn parse_setup(mut args: impl Iterator<Item = OsString>) -> Result<Parsed> {
    let mut opts = setup::Options::default();
    while let Some(arg) = args.next() {
        let text = arg.to_string_lossy().into_owned();
        match text.as_str() {
            "-h" | "--help" => return Ok(Parsed::SetupHelp),
            "--foundry" => opts.foundry = Some(value(&mut args, "--foundry")?),
            other => match other.strip_prefix("--foundry=") {
                Some(bin) => opts.foundry = Some(PathBuf::from(bin)),
                None => bail!("unexpected argument `{other}`\n\n{}", setup::USAGE),
            },
        }
    }
    Ok(Parsed::Setup(opts))
}

fn parse_join(mut args: impl Iterator<Item = OsString>) -> Result<Parsed> {
    let mut opts = join::Options::default();
    let count = |v: PathBuf, flag: &str| -> Result<usize> {
        v.to_str()
            .and_then(|t| t.parse().ok())
            .ok_or_else(|| anyhow!("{flag} takes a number\n\n{}", join::USAGE))
    };
    while let Some(arg) = args.next() {
        let text = arg.to_string_lossy().into_owned();
        match text.as_str() {
            "-h" | "--help" => return Ok(Parsed::JoinHelp),
            "--foundry" => opts.foundry = Some(value(&mut args, "--foundry")?),
            "--agents" => opts.agents = count(value(&mut args, "--agents")?, "--agents")?,
            "--rounds" => opts.rounds = count(value(&mut args, "--rounds")?, "--rounds")?,
            other => bail!("unexpected argument `{other}`\n\n{}", join::USAGE),
        }
    }
    Ok(Parsed::Join(opts))
}

/// One figure on stdout.
fn figure(name: &str, value: String) {
    println!("{name}={value}");
}

fn engine(opts: Options) -> Result<()> {
    if std::env::var_os("FOUNDRY_FAILPOINTS").is_some() {
        bail!("FOUNDRY_FAILPOINTS is set: the in-process engine would obey it; unset it first");
    }
    let foundry_bin = cli::locate(opts.foundry)?;
    let parent = match opts.dir {
        Some(dir) => dir,
        None => std::env::current_dir()
            .context("finding the current directory")?
            .join("target"),
    };
    std::fs::create_dir_all(&parent).with_context(|| format!("creating {}", parent.display()))?;
    let work = tempfile::Builder::new()
        .prefix("foundry-bench-")
        .tempdir_in(&parent)
        .with_context(|| format!("making a directory in {}", parent.display()))?;
    let dir = work.path();
    let mount = disk::mount_of(dir)?;
    eprintln!(
        "measuring in {} ({} on {}, mounted at {}); foundry: {}",
        dir.display(),
        mount.fstype,
        mount.source,
        mount.point.display(),
        foundry_bin.display()
    );
    if mount.in_memory() {
        eprintln!(
            "WARNING: {} is {}: fsync costs nothing there; pass --dir on a real disk",
            dir.display(),
            mount.fstype
        );
    }
    if opts.postgres {
        return engine_on_postgres(dir, foundry_bin);
    }

    eprintln!("disk: 4 KiB pwrite + fdatasync");
    let mut rewrite = disk::Rewrite::open(dir)?;
    let fsync = disk::fsync_rewrite_4k(&mut rewrite)?;
    eprintln!("  rewrite in place: {}", fsync.describe("us"));
    let append = disk::fsync_append_4k(dir)?;
    eprintln!("  append (file grows): {}", append.describe("us"));
    figure("fsync_4k_us", format!("{:.1}", fsync.median));

    eprintln!("redb {BASELINE_VALUE_BYTES}-byte value, durable commits");
    let redb = disk::redb_commits(dir, BASELINE_VALUE_BYTES)?;
    eprintln!("  one insert per commit: {}", redb.insert.describe("us"));
    eprintln!(
        "  update previous + insert new per commit (the engine's pattern): {}",
        redb.update_and_insert.describe("us")
    );
    figure(
        "baseline_redb_commit_us",
        format!("{:.1}", redb.insert.median),
    );

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;

    let engine = inproc::engine_at(&dir.join("engine-home"));
    in_process_figures(
        &rt,
        &engine,
        "in-process engine",
        "step_vs_fsync_ratio",
        &mut |n| rewrite.samples(n),
    )?;
    drop(rewrite);

    let scratch = dir.join("scratch");
    std::fs::create_dir_all(&scratch).with_context(|| format!("creating {}", scratch.display()))?;
    let foundry = cli::Foundry {
        bin: foundry_bin,
        home: dir.join("cli-home"),
        scratch,
        journal: None,
    };
    let run = rt.block_on(processes(&foundry))?;
    resume_in_process(&rt, &foundry, &run)?;
    drop(rt);
    let kept = work.path().to_path_buf();
    if let Err(e) = work.close() {
        eprintln!("warning: could not remove {}: {e}", kept.display());
    }
    Ok(())
}

/// [`DURABLE_ROUNDS`] rounds, each a share of [`DURABLE_STEPS`] operations of `measured`
/// (which answers its mean in µs and a note) between two halves of as many of `baseline`;
/// the median per-operation time of `measured` and the median of the rounds' ratios, each
/// over the mean of the baseline's two halves (a disk that drifts within a round moves both
/// sides alike).
fn interleaved(
    baseline: &mut dyn FnMut(u64) -> Result<Vec<f64>>,
    measured: &mut dyn FnMut(u64) -> Result<(f64, String)>,
) -> Result<(Summary, Summary)> {
    let per_round = DURABLE_STEPS / DURABLE_ROUNDS;
    let half = per_round / 2;
    let (mut times, mut ratios) = (Vec::new(), Vec::new());
    for round in 1..=DURABLE_ROUNDS {
        let before = stats::mean(&baseline(half)?);
        let (us, note) = measured(per_round)?;
        let after = stats::mean(&baseline(half)?);
        let base_us = (before + after) / 2.0;
        eprintln!(
            "  round {round}: baseline {before:.1} us/op, {per_round} at {us:.1} us, baseline {after:.1} us/op: ratio {:.2}; {note}",
            us / base_us
        );
        times.push(us);
        ratios.push(us / base_us);
    }
    let (times, ratios) = (Summary::of(&times)?, Summary::of(&ratios)?);
    eprintln!("  time: {}", times.describe(" us"));
    eprintln!("  ratio: {}", ratios.describe(""));
    Ok((times, ratios))
}

/// The engine's in-process figures (a warm-up, the durable step, fan-out), the step's beside
/// `baseline`, round by round ([`interleaved`]), as the figure `ratio`; `what` names the engine.
fn in_process_figures(
    rt: &tokio::runtime::Runtime,
    engine: &foundry_core::Engine,
    what: &str,
    ratio: &str,
    baseline: &mut dyn FnMut(u64) -> Result<Vec<f64>>,
) -> Result<()> {
    eprintln!("{what}: warm-up run of {WARMUP_STEPS} steps");
    let warm = inproc::timed_run(rt, engine, WARMUP_STEPS, 0, inproc::Watch::Events)?;
    eprintln!("  {}", warm.describe());
    eprintln!(
        "{what}: sequential steps, each round a run of them between two halves of the baseline"
    );
    let (steps, ratios) = interleaved(baseline, &mut |n| {
        let seq = inproc::timed_run(rt, engine, n, 0, inproc::Watch::Nothing)?;
        Ok((seq.per_step_us(), seq.describe()))
    })?;
    figure("durable_step_steps", DURABLE_STEPS.to_string());
    figure("durable_step_us", format!("{:.1}", steps.median));
    figure(ratio, format!("{:.2}", ratios.median));
    eprintln!("{what}: {FANOUT_STEPS} steps over {FANOUT} children");
    let fan = inproc::timed_run(rt, engine, FANOUT_STEPS, FANOUT, inproc::Watch::Nothing)?;
    eprintln!("  {}", fan.describe());
    figure("fanout100_steps_per_s", format!("{:.0}", fan.steps_per_s()));
    Ok(())
}

/// The in-process figures on a PostgreSQL journal, beside the server's own commit, and
/// `foundry workflow status` of a 10,000-step run kept there.
fn engine_on_postgres(dir: &std::path::Path, foundry_bin: PathBuf) -> Result<()> {
    eprintln!("PostgreSQL 15: a throwaway cluster in {}", dir.display());
    let cluster = pg::cluster(dir)?;
    eprintln!("PostgreSQL {BASELINE_VALUE_BYTES}-byte row, one INSERT per durable commit");
    let mut commits = pg::Commits::open(&cluster, BASELINE_VALUE_BYTES)?;
    let commit = pg::baseline_commit(&mut commits)?;
    eprintln!("  {}", commit.describe("us"));
    figure("pg_commit_us", format!("{:.1}", commit.median));

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    eprintln!(
        "the journal's own write of a sequential step (the fence, the previous step's completion and this one's start, one commit), from a plain caller"
    );
    let mut writes = pg::JournalSteps::open(&cluster)?;
    writes.samples(WARMUP_STEPS)?;
    let (write, ratio) = interleaved(&mut |n| commits.samples(n), &mut |n| {
        Ok((stats::mean(&writes.samples(n)?), String::new()))
    })?;
    drop(writes);
    figure("pg_journal_write_us", format!("{:.1}", write.median));
    figure(
        "journal_write_vs_pg_commit_ratio",
        format!("{:.2}", ratio.median),
    );

    let engine = pg::engine_on(&cluster, &dir.join("engine-home"))?;
    in_process_figures(
        &rt,
        &engine,
        "in-process engine on PostgreSQL",
        "step_vs_pg_commit_ratio",
        &mut |n| commits.samples(n),
    )?;

    eprintln!("CLI on PostgreSQL: a run of 10,001 steps, the last one in doubt");
    let run = pg::unfinished_run(&cluster, 10_000)?;
    let foundry = cli::Foundry {
        bin: foundry_bin,
        home: dir.join("cli-home"),
        scratch: dir.join("scratch"),
        journal: Some(cluster.socket_url()),
    };
    std::fs::create_dir_all(&foundry.scratch)
        .with_context(|| format!("creating {}", foundry.scratch.display()))?;
    let read = pg::timed_views(&rt, &engine, run, READ_RUNS)?;
    eprintln!(
        "  one in-process read of it (Engine::view, no process start): {}",
        read.describe(" ms")
    );
    eprintln!("CLI: `foundry workflow status {run}` x{STATUS_RUNS}");
    let id = run.to_string();
    let mut samples = Vec::with_capacity(STATUS_RUNS);
    for _ in 0..STATUS_RUNS {
        samples.push(millis(rt.block_on(foundry.time_status(&id))?));
    }
    let status = Summary::of(&samples)?;
    eprintln!("  {}", status.describe(" ms"));
    figure("pg_status_10k_steps_ms", format!("{:.1}", status.median));
    figure("pg_status_10k_steps_ms_max", format!("{:.1}", status.max));
    Ok(())
}

/// The `foundry` binary's figures: status and resume of a 10,000-step run.
async fn processes(foundry: &cli::Foundry) -> Result<cli::Prepared> {
    eprintln!("CLI: preparing a run of 10,001 steps, killed in the last one");
    let run = foundry.prepare().await?;
    let size = std::fs::metadata(&run.pristine)
        .map(|m| m.len())
        .unwrap_or(0);
    eprintln!("  journal {:.1} MiB", size as f64 / (1024.0 * 1024.0));

    match read_in_process(foundry, &run.id) {
        Ok(read) => eprintln!(
            "  one in-process read of that journal (RedbStore::read, no process start): {}",
            read.describe(" ms")
        ),
        Err(e) => eprintln!("  (could not read the journal in process: {e:#})"),
    }

    eprintln!("CLI: `foundry workflow status {}` x{STATUS_RUNS}", run.id);
    let mut samples = Vec::with_capacity(STATUS_RUNS);
    for _ in 0..STATUS_RUNS {
        samples.push(millis(foundry.time_status(&run.id).await?));
    }
    let status = Summary::of(&samples)?;
    eprintln!("  {}", status.describe(" ms"));
    figure("status_10k_steps_ms", format!("{:.1}", status.median));
    figure("status_10k_steps_ms_max", format!("{:.1}", status.max));

    eprintln!(
        "CLI: `foundry workflow resume {} --output json` x{RESUME_RUNS}, to its first {} line",
        run.id,
        cli::IN_DOUBT_STEP
    );
    let mut samples = Vec::with_capacity(RESUME_RUNS);
    for _ in 0..RESUME_RUNS {
        cli::restore(&run.pristine, &run.journal)?;
        let (took, event) = foundry.time_resume(&run.id).await?;
        if event != "step_in_doubt" {
            eprintln!(
                "  note: the first event about {} was `{event}`, not step_in_doubt",
                cli::IN_DOUBT_STEP
            );
        }
        samples.push(millis(took));
    }
    let resume = Summary::of(&samples)?;
    eprintln!("  {}", resume.describe(" ms"));
    figure("resume_first_action_ms", format!("{:.1}", resume.median));

    eprintln!("notes: the journal exactly as the crash left it (before anything repaired it)");
    let mut status_samples = Vec::with_capacity(CRASHED_RUNS);
    let mut resume_samples = Vec::with_capacity(CRASHED_RUNS);
    for _ in 0..CRASHED_RUNS {
        cli::restore(&run.crashed, &run.journal)?;
        status_samples.push(millis(foundry.time_status(&run.id).await?));
        cli::restore(&run.crashed, &run.journal)?;
        resume_samples.push(millis(foundry.time_resume(&run.id).await?.0));
    }
    eprintln!(
        "  status (first read after the crash): {}",
        Summary::of(&status_samples)?.describe(" ms")
    );
    eprintln!(
        "  resume to its first action: {}",
        Summary::of(&resume_samples)?.describe(" ms")
    );
    Ok(run)
}

/// The resume of the prepared run again, in this process: where its time goes without a
/// process start (notes only).
fn resume_in_process(
    rt: &tokio::runtime::Runtime,
    foundry: &cli::Foundry,
    run: &cli::Prepared,
) -> Result<()> {
    eprintln!("notes: the same resume in this process (no process start), x{CRASHED_RUNS}");
    let engine = inproc::engine_at(&foundry.home);
    let (mut takes, mut to_first) = (Vec::new(), Vec::new());
    for _ in 0..CRASHED_RUNS {
        cli::restore(&run.pristine, &run.journal)?;
        let (take, first) =
            inproc::resume_to_first_action(rt, &engine, &run.id, cli::IN_DOUBT_STEP)?;
        takes.push(millis(take));
        to_first.push(millis(first));
    }
    eprintln!(
        "  Engine::resume (open, read, take the lease): {}",
        Summary::of(&takes)?.describe(" ms")
    );
    eprintln!(
        "  then Driver::drive to step_in_doubt: {}",
        Summary::of(&to_first)?.describe(" ms")
    );
    Ok(())
}

/// What reading the run's journal costs without a process around it, in ms: the part of
/// `status` that grows with the steps (`resume` decodes the journal this way more than once).
fn read_in_process(foundry: &cli::Foundry, id: &str) -> Result<Summary> {
    use foundry_core::journal::{JournalStore, RedbStore};
    let run: foundry_core::RunId = id.parse().with_context(|| format!("run id {id}"))?;
    let store = RedbStore::new(foundry.home.join("runs"));
    let mut samples = Vec::with_capacity(READ_RUNS);
    for _ in 0..READ_RUNS {
        let t = std::time::Instant::now();
        let snapshot = store.read(run)?;
        samples.push(millis(t.elapsed()));
        anyhow::ensure!(
            snapshot.steps.len() == 10_001,
            "read {} steps",
            snapshot.steps.len()
        );
    }
    Summary::of(&samples)
}

fn main() -> ExitCode {
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    if args.first().is_some_and(|a| a == "__rusage") {
        return match hosts::rusage_main(&args[1..]) {
            Ok(code) => ExitCode::from(code),
            Err(e) => {
                eprintln!("error: {e:#}");
                ExitCode::from(2)
            }
        };
    }
    let outcome = match parse(args) {
        Ok(Parsed::Help) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Ok(Parsed::HostsHelp) => {
            println!("{}", hosts::USAGE);
            return ExitCode::SUCCESS;
        }
        Ok(Parsed::SetupHelp) => {
            println!("{}", setup::USAGE);
            return ExitCode::SUCCESS;
        }
        Ok(Parsed::Engine(opts)) => engine(opts),
        Ok(Parsed::Setup(opts)) => setup::run(opts),
        Ok(Parsed::JoinHelp) => {
            println!("{}", join::USAGE);
            return ExitCode::SUCCESS;
        }
        Ok(Parsed::Join(opts)) => join::run(opts),
        Ok(Parsed::Hosts(opts)) => match hosts::run(opts) {
            Ok(true) => Ok(()),
            Ok(false) => return ExitCode::FAILURE,
            Err(e) => Err(e),
        },
        Err(e) => {
            eprintln!("error: {e:#}");
            return ExitCode::from(2);
        }
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
