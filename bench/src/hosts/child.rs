//! Child processes of the hosts benchmark. Each runs in its own process group with a time
//! limit; past it, or when the benchmark is interrupted, the whole group is killed. Some
//! descendants leave the group (Ansible's workers and SSH connection masters start
//! sessions of their own): this process adopts them as their subreaper, and [`sweep`]
//! ends them after each tool. Output goes to files, kept for the error messages.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use rustix::process::{
    Pid, Signal, WaitOptions, getpid, kill_process, kill_process_group, set_child_subreaper,
    waitpid,
};
use tokio::process::Command;

/// A finished child.
pub struct Finished {
    pub status: ExitStatus,
    /// From spawn to exit.
    pub took: Duration,
    pub stdout: String,
    pub stderr: String,
}

impl Finished {
    /// `what` failed with its status and the end of its output.
    pub fn ensure_success(&self, what: &str) -> Result<()> {
        if self.status.success() {
            return Ok(());
        }
        bail!(
            "{what} failed ({}):\n{}",
            self.status,
            tail(&format!("{}\n{}", self.stdout, self.stderr), 20)
        )
    }
}

/// The last `n` non-empty lines of `text`.
pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Kills a process group when dropped: the child's, unless it was already killed.
struct Group(Option<Pid>);

impl Group {
    fn kill(&mut self) {
        if let Some(pid) = self.0.take() {
            // ESRCH: the group is already empty.
            let _ = kill_process_group(pid, Signal::KILL);
        }
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Runs `cmd` to its end or for at most `limit`, in its own process group, with stdin
/// from `stdin` (or nothing) and its output in `<scratch>/<name>.stdout|.stderr`. Every
/// process left in its group when it ends is killed too.
pub async fn run(
    mut cmd: Command,
    name: &str,
    scratch: &Path,
    limit: Duration,
    stdin: Option<&Path>,
) -> Result<Finished> {
    let out = scratch.join(format!("{name}.stdout"));
    let err = scratch.join(format!("{name}.stderr"));
    cmd.stdout(create(&out)?)
        .stderr(create(&err)?)
        .process_group(0)
        .kill_on_drop(true);
    match stdin {
        Some(path) => {
            let file =
                fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
            cmd.stdin(Stdio::from(file));
        }
        None => {
            cmd.stdin(Stdio::null());
        }
    }
    let program = cmd.as_std().get_program().to_string_lossy().into_owned();
    let start = Instant::now();
    let mut child = cmd
        .spawn()
        .with_context(|| format!("{name}: starting {program}"))?;
    let mut group = Group(child.id().and_then(|id| Pid::from_raw(id as i32)));
    let waited = tokio::time::timeout(limit, child.wait()).await;
    let took = start.elapsed();
    group.kill();
    let status = match waited {
        Ok(status) => status.with_context(|| format!("{name}: waiting for {program}"))?,
        Err(_) => {
            let _ = child.wait().await;
            bail!(
                "{name}: {program} did not end within {limit:?} and was killed; its output is in {} and {}",
                out.display(),
                err.display()
            );
        }
    };
    Ok(Finished {
        status,
        took,
        stdout: fs::read_to_string(&out).unwrap_or_default(),
        stderr: fs::read_to_string(&err).unwrap_or_default(),
    })
}

/// Makes this process the parent of its descendants' orphans, so that [`sweep`] finds them.
pub fn adopt_orphans() -> Result<()> {
    set_child_subreaper(Some(getpid())).context("prctl(PR_SET_CHILD_SUBREAPER)")
}

/// Kills and reaps every process whose parent is this one: the strays a tool left, once
/// adopted. Call it only when no child of [`run`] is running. Returns how many were still
/// running.
pub fn sweep() -> usize {
    let me = getpid().as_raw_nonzero().get();
    let Ok(entries) = fs::read_dir("/proc") else {
        return 0;
    };
    let mut swept = 0;
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<i32>().ok())
        else {
            continue;
        };
        // `pid (comm) state ppid ...`: the name may hold spaces and parentheses.
        let Ok(stat) = fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        let mut fields = stat
            .rsplit_once(')')
            .map(|(_, rest)| rest.split_whitespace())
            .into_iter()
            .flatten();
        let state = fields.next();
        let parent = fields.next().and_then(|p| p.parse::<i32>().ok());
        if parent != Some(me) {
            continue;
        }
        let Some(pid) = Pid::from_raw(pid) else {
            continue;
        };
        // A zombie has ended already (an adopted process that exited): only reap it.
        if state != Some("Z") {
            let _ = kill_process(pid, Signal::KILL);
            swept += 1;
        }
        let _ = waitpid(Some(pid), WaitOptions::empty());
    }
    swept
}

fn create(path: &Path) -> Result<Stdio> {
    let file = fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    Ok(Stdio::from(file))
}

/// The hidden `__rusage OUT PROGRAM ARGS...` mode of this executable: runs PROGRAM as its
/// only child, writes the child's peak resident set (`ru_maxrss` of
/// `getrusage(RUSAGE_CHILDREN)`, in KiB) to OUT and exits with the child's code. Run in a
/// process of its own so that no other child's peak (Ansible's, say) is counted.
pub fn rusage_main(args: &[std::ffi::OsString]) -> Result<u8> {
    let [out, program, rest @ ..] = args else {
        bail!("usage: foundry-bench __rusage OUT PROGRAM [ARGS...]");
    };
    let status = std::process::Command::new(program)
        .args(rest)
        .status()
        .with_context(|| format!("starting {}", program.to_string_lossy()))?;
    let usage = nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_CHILDREN)
        .context("getrusage(RUSAGE_CHILDREN)")?;
    let out = PathBuf::from(out);
    fs::write(&out, format!("{}\n", usage.max_rss()))
        .with_context(|| format!("writing {}", out.display()))?;
    use std::os::unix::process::ExitStatusExt;
    Ok(match (status.code(), status.signal()) {
        (Some(code), _) => u8::try_from(code).unwrap_or(1),
        (None, Some(signal)) => u8::try_from(128 + signal).unwrap_or(1),
        (None, None) => 1,
    })
}
