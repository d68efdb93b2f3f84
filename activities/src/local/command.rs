//! Runs a local program from an argv, never through a shell string.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Stdio;

use foundry_core::{
    Activity, ActivityCx, ActivityError, InDoubt, RetryPolicy, SecretValue, Stream,
};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::Command;

/// A program and its arguments, run as they are: no shell sees them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunCommand {
    pub argv: Vec<String>,
    /// A read-only check: exit status 0 means the command's effect is already there.
    /// Without one, a step in doubt runs the command again, so it must be idempotent.
    pub probe: Option<Vec<String>>,
    pub cwd: Option<PathBuf>,
    pub env: BTreeMap<String, String>,
    pub policy: RetryPolicy,
    /// What the command reads on stdin (then end of file; without it, stdin is empty):
    /// the way to give it a secret, which in its argv any user of this machine could read
    /// in the process list. Never serialized; the probe gets none.
    #[serde(skip)]
    pub stdin: Option<SecretValue>,
}

impl RunCommand {
    pub fn new(argv: Vec<String>) -> Self {
        RunCommand {
            argv,
            probe: None,
            cwd: None,
            env: BTreeMap::new(),
            policy: RetryPolicy::default(),
            stdin: None,
        }
    }
}

/// What the journal keeps of a run command: only its exit status, never its output (which
/// may hold anything).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandOutput {
    pub exit_code: i32,
    /// Taken from the probe, not from running the command.
    pub probed: bool,
}

impl CommandOutput {
    /// A probe command's verdict: exit status 0 means the effect is already there.
    pub fn from_probe(code: i64) -> Option<CommandOutput> {
        (code == 0).then_some(CommandOutput {
            exit_code: 0,
            probed: true,
        })
    }

    /// A command's outcome: status 0 is success; anything else a transient failure that
    /// names `what` ran and quotes the last line it wrote to stderr.
    pub fn from_exit(
        what: &str,
        code: i64,
        last_err: Option<String>,
    ) -> Result<CommandOutput, ActivityError> {
        if code == 0 {
            return Ok(CommandOutput {
                exit_code: 0,
                probed: false,
            });
        }
        let detail = last_err.map(|l| format!(": {l}")).unwrap_or_default();
        Err(ActivityError::transient(format!(
            "{what} exited with status {code}{detail}"
        )))
    }
}

/// A longer line is shown in pieces of this many bytes.
const LINE_BYTES: u64 = 64 * 1024;

/// Streams `pipe` as output events, line by line, to its end; its last line. Bytes that
/// are not UTF-8 are shown as U+FFFD: a program's output never stops the step.
async fn forward(cx: &ActivityCx, stream: Stream, pipe: impl AsyncRead + Unpin) -> Option<String> {
    let mut reader = BufReader::new(pipe);
    let mut line = Vec::new();
    let mut last = None;
    loop {
        line.clear();
        match (&mut reader)
            .take(LINE_BYTES)
            .read_until(b'\n', &mut line)
            .await
        {
            Ok(0) | Err(_) => return last,
            Ok(_) => {}
        }
        let bytes = line.strip_suffix(b"\n").unwrap_or(&line);
        let text = String::from_utf8_lossy(bytes).into_owned();
        cx.output(stream, text.clone());
        last = Some(text);
    }
}

/// The environment variables that carry secrets and answers into foundry itself: a child
/// process never inherits them.
pub const PRIVATE_ENV_PREFIXES: [&str; 2] = ["FOUNDRY_SECRET_", "FOUNDRY_INPUT_"];

/// Removes from `cmd` every variable of this process's environment that starts with one
/// of [`PRIVATE_ENV_PREFIXES`]; variables set on `cmd` afterwards stay.
pub fn without_private_env(cmd: &mut std::process::Command) {
    for (name, _) in std::env::vars_os() {
        let private = name
            .to_str()
            .is_some_and(|n| PRIVATE_ENV_PREFIXES.iter().any(|p| n.starts_with(p)));
        if private {
            cmd.env_remove(name);
        }
    }
}

/// A local command must not outlive a killed foundry: the step would be in doubt while
/// the orphan still runs, and the resumed run could probe before the orphan's effect
/// lands, then run the command a second time.
#[allow(unsafe_code)]
fn die_with_parent(cmd: &mut Command) {
    // SAFETY: the closure runs in the child between fork and exec and only makes one
    // async-signal-safe system call (prctl); it allocates nothing and takes no lock.
    unsafe {
        cmd.pre_exec(|| {
            rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL))
                .map_err(std::io::Error::from)
        });
    }
}

impl RunCommand {
    fn command(&self, argv: &[String]) -> Result<Command, ActivityError> {
        let (program, args) = argv
            .split_first()
            .ok_or_else(|| ActivityError::permanent("empty command: argv needs a program"))?;
        let mut cmd = Command::new(program);
        without_private_env(cmd.as_std_mut());
        cmd.args(args)
            .envs(&self.env)
            .stdin(Stdio::null())
            .kill_on_drop(true);
        if let Some(cwd) = &self.cwd {
            cmd.current_dir(cwd);
        }
        die_with_parent(&mut cmd);
        Ok(cmd)
    }

    /// Runs `argv`, `input` on its stdin, streaming its output as events; its exit code,
    /// or an error.
    async fn exec(
        &self,
        cx: &ActivityCx,
        argv: &[String],
        input: Option<&SecretValue>,
    ) -> Result<(i32, Option<String>), ActivityError> {
        let mut cmd = self.command(argv)?;
        if input.is_some() {
            cmd.stdin(Stdio::piped());
        }
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| ActivityError::permanent(format!("cannot run `{}`: {e}", argv[0])))?;
        let stdout = child.stdout.take();
        let stderr = child.stderr.take();
        let stdin = child.stdin.take();
        let feed = async {
            if let (Some(mut pipe), Some(input)) = (stdin, input) {
                // A command that does not read it all closes the pipe: not an error here,
                // its exit status says how it went.
                let _ = pipe.write_all(input.expose().as_bytes()).await;
            }
        };
        let out = async {
            match stdout {
                Some(p) => forward(cx, Stream::Stdout, p).await,
                None => None,
            }
        };
        let err = async {
            match stderr {
                Some(p) => forward(cx, Stream::Stderr, p).await,
                None => None,
            }
        };
        let run = async {
            let (_, last_err, (), status) = tokio::join!(out, err, feed, child.wait());
            (last_err, status)
        };
        let (last_err, status) = tokio::select! {
            r = run => r,
            () = cx.cancel_token().cancelled() => {
                return Err(ActivityError::permanent(format!("`{}` was stopped: the run is cancelled", argv[0])));
            }
        };
        let status = status
            .map_err(|e| ActivityError::transient(format!("waiting for `{}`: {e}", argv[0])))?;
        // A signal leaves no exit code; report it as 128 + signal, as shells do.
        let code = status.code().unwrap_or_else(|| {
            use std::os::unix::process::ExitStatusExt;
            128 + status.signal().unwrap_or(0)
        });
        Ok((code, last_err))
    }
}

impl Activity for RunCommand {
    type Output = CommandOutput;

    fn kind(&self) -> &'static str {
        "command"
    }

    /// A command with a probe is decided by it; one without is run again.
    fn in_doubt(&self) -> InDoubt {
        match self.probe {
            Some(_) => InDoubt::Probe,
            None => InDoubt::Rerun,
        }
    }

    fn retry_policy(&self) -> RetryPolicy {
        self.policy.clone()
    }

    async fn probe(&self, cx: &ActivityCx) -> Result<Option<CommandOutput>, ActivityError> {
        let Some(probe) = &self.probe else {
            return Ok(None);
        };
        let (code, _) = self.exec(cx, probe, None).await?;
        Ok(CommandOutput::from_probe(code.into()))
    }

    async fn apply(&self, cx: &ActivityCx) -> Result<CommandOutput, ActivityError> {
        let (code, last_err) = self.exec(cx, &self.argv, self.stdin.as_ref()).await?;
        CommandOutput::from_exit(&format!("`{}`", self.argv[0]), code.into(), last_err)
    }
}
