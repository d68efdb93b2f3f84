//! The real `foundry` binary: a crashed run of 10,001 steps prepared with a failpoint,
//! then `workflow status` and `workflow resume` timed as whole processes.

use std::fs;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

/// The step the prepared run crashed in; resuming finds it in doubt.
pub const IN_DOUBT_STEP: &str = "noop-10000#0";
/// Preparing 10,001 durable steps.
const PREPARE_TIMEOUT: Duration = Duration::from_secs(600);
/// Any one short command (list, status).
const SHORT_TIMEOUT: Duration = Duration::from_secs(60);
/// From spawning `resume` to its first line about the in-doubt step.
const RESUME_TIMEOUT: Duration = Duration::from_secs(60);
/// Lines of `resume` output read before giving up on finding the step.
const MAX_RESUME_LINES: usize = 100_000;

/// The `foundry` binary: `--foundry PATH`, else the one beside this executable.
pub fn locate(explicit: Option<PathBuf>) -> Result<PathBuf> {
    if let Some(path) = explicit {
        ensure!(path.is_file(), "--foundry {}: no such file", path.display());
        return Ok(path);
    }
    let exe = std::env::current_exe().context("finding this executable's path")?;
    let beside = exe.parent().map(|dir| dir.join("foundry"));
    match beside {
        Some(path) if path.is_file() => Ok(path),
        _ => bail!(
            "no `foundry` binary beside {}: build it first with `cargo build --release -p foundry-cli` \
             (with the same CARGO_TARGET_DIR as this benchmark), or pass --foundry PATH",
            exe.display()
        ),
    }
}

/// `foundry` with its own home under the benchmark directory.
pub struct Foundry {
    pub bin: PathBuf,
    pub home: PathBuf,
    /// Where commands' output files go.
    pub scratch: PathBuf,
    /// `FOUNDRY_JOURNAL` for its commands: a PostgreSQL journal's URL; the home's files
    /// when `None`.
    pub journal: Option<String>,
}

/// The prepared run: 10,000 completed steps and one in doubt.
pub struct Prepared {
    pub id: String,
    pub journal: PathBuf,
    /// The journal as the killed process left it.
    pub crashed: PathBuf,
    /// The journal after `workflow list` read it (which repairs a crashed file).
    pub pristine: PathBuf,
}

struct Captured {
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

/// The last lines of a command's stderr, for an error message.
fn tail(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(10)..].join("\n")
}

fn output_file(path: &Path) -> Result<Stdio> {
    let file = fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    Ok(Stdio::from(file))
}

fn read_output(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_default()
}

impl Foundry {
    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(&self.bin);
        cmd.args(args)
            .env("FOUNDRY_HOME", &self.home)
            .env("NO_COLOR", "1")
            .env_remove("FOUNDRY_FAILPOINTS")
            .env_remove("FOUNDRY_LOG")
            .stdin(Stdio::null())
            .kill_on_drop(true);
        match &self.journal {
            Some(url) => cmd.env("FOUNDRY_JOURNAL", url),
            None => cmd.env_remove("FOUNDRY_JOURNAL"),
        };
        cmd
    }

    /// Runs `cmd` to its end, its output in files under `scratch`.
    async fn captured(&self, mut cmd: Command, name: &str, limit: Duration) -> Result<Captured> {
        let out = self.scratch.join(format!("{name}.stdout"));
        let err = self.scratch.join(format!("{name}.stderr"));
        cmd.stdout(output_file(&out)?).stderr(output_file(&err)?);
        let mut child = cmd
            .spawn()
            .with_context(|| format!("spawning {}", self.bin.display()))?;
        let status = match tokio::time::timeout(limit, child.wait()).await {
            Ok(status) => status.with_context(|| format!("waiting for `foundry` ({name})"))?,
            Err(_) => {
                let _ = child.kill().await;
                bail!("`foundry` ({name}) did not end within {limit:?}");
            }
        };
        Ok(Captured {
            status,
            stdout: read_output(&out),
            stderr: read_output(&err),
        })
    }

    fn journal_of(&self, id: &str) -> PathBuf {
        self.home.join("runs").join(format!("{id}.journal"))
    }

    /// Starts `engine-bench` with 10,001 steps and kills it (failpoint) right after the
    /// last step's `started` is durable; finds the run with `workflow list`.
    pub async fn prepare(&self) -> Result<Prepared> {
        let input = self.scratch.join("input-10k.json");
        fs::write(&input, "{\"steps\": 10001}\n")
            .with_context(|| format!("writing {}", input.display()))?;
        let input = input.to_string_lossy().into_owned();
        let mut start = self.command(&["workflow", "start", "engine-bench", "--input", &input]);
        start.env("FOUNDRY_FAILPOINTS", format!("{IN_DOUBT_STEP}@started"));
        let t = Instant::now();
        let started = self.captured(start, "start", PREPARE_TIMEOUT).await?;
        if started.status.signal() != Some(libc::SIGKILL) {
            bail!(
                "`foundry workflow start engine-bench` was expected to die by SIGKILL at its \
                 failpoint, but ended with {}:\n{}",
                started.status,
                tail(&started.stderr)
            );
        }
        eprintln!(
            "  prepared 10,001 steps with the CLI in {:.1} s (killed at {IN_DOUBT_STEP}@started, as expected)",
            t.elapsed().as_secs_f64()
        );
        // Before anything reads it: the file exactly as the killed process left it.
        let runs = self.home.join("runs");
        let mut journals = Vec::new();
        for entry in fs::read_dir(&runs).with_context(|| format!("reading {}", runs.display()))? {
            let path = entry?.path();
            if path.extension().is_some_and(|e| e == "journal") {
                journals.push(path);
            }
        }
        let [journal] = journals.as_slice() else {
            bail!(
                "expected one journal in {}, found {}",
                runs.display(),
                journals.len()
            );
        };
        let crashed = self.scratch.join("crashed.journal");
        save(journal, &crashed)?;

        let list = self
            .captured(
                self.command(&["workflow", "list", "--all", "-o", "json"]),
                "list",
                SHORT_TIMEOUT,
            )
            .await?;
        ensure!(
            list.status.success(),
            "`foundry workflow list` failed:\n{}",
            tail(&list.stderr)
        );
        let mut ids = Vec::new();
        for line in list.stdout.lines().filter(|l| !l.trim().is_empty()) {
            let row: serde_json::Value = serde_json::from_str(line).with_context(|| {
                format!("`workflow list` printed a line that is not JSON: {line}")
            })?;
            if let Some(id) = row["run"].as_str() {
                let steps = &row["steps"];
                eprintln!(
                    "  run {id}: state {}, {} steps done, {} in doubt",
                    row["state"], steps["done"], steps["in_doubt"]
                );
                ensure!(
                    steps["done"] == 10_000 && steps["in_doubt"] == 1,
                    "the prepared run should have 10,000 steps done and 1 in doubt: {line}"
                );
                ids.push(id.to_string());
            }
        }
        let [id] = ids.as_slice() else {
            bail!(
                "`workflow list` should show one run, showed {}: {}",
                ids.len(),
                list.stdout
            );
        };
        let path = self.journal_of(id);
        ensure!(
            &path == journal,
            "the run {id} has no journal at {}",
            path.display()
        );
        let pristine = self.scratch.join("pristine.journal");
        save(&path, &pristine)?;
        Ok(Prepared {
            id: id.clone(),
            journal: path,
            crashed,
            pristine,
        })
    }

    /// One `foundry workflow status <id>`, timed from spawn to exit.
    pub async fn time_status(&self, id: &str) -> Result<Duration> {
        let err = self.scratch.join("status.stderr");
        let mut cmd = self.command(&["workflow", "status", id]);
        cmd.stdout(Stdio::null()).stderr(output_file(&err)?);
        let t = Instant::now();
        let mut child = cmd
            .spawn()
            .with_context(|| format!("spawning {}", self.bin.display()))?;
        let status = match tokio::time::timeout(SHORT_TIMEOUT, child.wait()).await {
            Ok(status) => status.context("waiting for `foundry workflow status`")?,
            Err(_) => {
                let _ = child.kill().await;
                bail!("`foundry workflow status` did not end within {SHORT_TIMEOUT:?}");
            }
        };
        let took = t.elapsed();
        ensure!(
            status.success(),
            "`foundry workflow status {id}` failed ({status}):\n{}",
            tail(&read_output(&err))
        );
        Ok(took)
    }

    /// One `foundry workflow resume <id> --output json`, timed from spawn to its first
    /// stdout line about [`IN_DOUBT_STEP`]; then the process is killed and reaped.
    /// Returns the time and that line's event name.
    pub async fn time_resume(&self, id: &str) -> Result<(Duration, String)> {
        let err = self.scratch.join("resume.stderr");
        let mut cmd = self.command(&["workflow", "resume", id, "--output", "json"]);
        cmd.stdout(Stdio::piped()).stderr(output_file(&err)?);
        let t = Instant::now();
        let mut child = cmd
            .spawn()
            .with_context(|| format!("spawning {}", self.bin.display()))?;
        let stdout = child
            .stdout
            .take()
            .context("the resume's stdout is not piped")?;
        let mut lines = BufReader::new(stdout).lines();
        let deadline = tokio::time::Instant::now() + RESUME_TIMEOUT;
        let mut found = None;
        let mut first_lines = Vec::new();
        let mut outcome = "its output ended";
        for _ in 0..MAX_RESUME_LINES {
            let line = match tokio::time::timeout_at(deadline, lines.next_line()).await {
                Err(_) => {
                    outcome = "the time limit passed";
                    break;
                }
                Ok(Err(e)) => return Err(e).context("reading the resume's stdout"),
                Ok(Ok(None)) => break,
                Ok(Ok(Some(line))) => line,
            };
            let at = t.elapsed();
            let event: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
            if event["step"] == IN_DOUBT_STEP {
                found = Some((at, event["event"].as_str().unwrap_or("?").to_string()));
                break;
            }
            if first_lines.len() < 5 {
                first_lines.push(line);
            }
        }
        drop(lines);
        // It may have finished already; either way it must be gone before the next try.
        let _ = child.start_kill();
        match tokio::time::timeout(SHORT_TIMEOUT, child.wait()).await {
            Ok(status) => {
                status.context("reaping `foundry workflow resume`")?;
            }
            Err(_) => {
                bail!("`foundry workflow resume` did not die within {SHORT_TIMEOUT:?} of SIGKILL")
            }
        }
        match found {
            Some(found) => Ok(found),
            None => bail!(
                "`foundry workflow resume {id}` printed nothing about {IN_DOUBT_STEP} before {outcome}; \
                 first lines:\n{}\nstderr:\n{}",
                first_lines.join("\n"),
                tail(&read_output(&err))
            ),
        }
    }
}

/// Copies a run's journal and its write-ahead log (`<id>.wal` beside it), which together
/// are the run's state.
fn copy_run(from: &Path, to: &Path) -> Result<()> {
    for (src, dst) in [
        (from.to_path_buf(), to.to_path_buf()),
        (from.with_extension("wal"), to.with_extension("wal")),
    ] {
        match fs::copy(&src, &dst) {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let _ = fs::remove_file(&dst);
            }
            Err(e) => {
                return Err(e)
                    .with_context(|| format!("copying {} to {}", src.display(), dst.display()));
            }
        }
    }
    Ok(())
}

/// Keeps an image of a run's journal and log.
fn save(journal: &Path, image: &Path) -> Result<()> {
    copy_run(journal, image)
}

/// Puts `image` back as the run's journal and log.
pub fn restore(image: &Path, journal: &Path) -> Result<()> {
    copy_run(image, journal)
}
