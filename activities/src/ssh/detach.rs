//! A long command run detached on a host, under the step's name: a dropped connection or
//! a killed `foundry` does not stop it, and the step reattaches by name to read the rest of
//! its output and its exit code. It runs once per attempt, across reconnects and restarts.
//!
//! On the host, `<base>/<instance>/` holds `attempt`, `pid`, `out`, `err` and, once the
//! command has ended, `exit`; `<base>` is `/var/lib/foundry/steps` for root, else
//! `~/.local/state/foundry/steps`. `mkdir` of that directory is the claim: whoever makes it
//! starts the command, anyone else attaches. Where systemd is PID 1 (and the command runs as
//! root) the command runs as a transient unit `foundry-step-<instance>`, so it outlives
//! the SSH session's scope; elsewhere `setsid` detaches it. Directories of commands that
//! ended over a week ago are swept when a new one starts.

use std::time::{Duration, Instant};

use foundry_core::{Activity, ActivityCx, ActivityError, InDoubt, RetryPolicy, Stream};
use serde::{Deserialize, Serialize};

use super::pool::SshPool;
use super::{SshTarget, command_line};
use crate::local::CommandOutput;

/// Modes: `start` (claim and start, unless this attempt already did; then attach),
/// `attach` (stream the output from the given offsets until the command ends), `status`
/// (`exit N`, `running`, `lost` or `missing`), `stop` (signal the command's group).
const SCRIPT: &str = r#"
set -u
mode=$1 name=$2 attempt=$3 oo=$4 eo=$5
shift 5
if [ "$(id -u)" = 0 ]; then base=/var/lib/foundry/steps; else base="${HOME:-/tmp}/.local/state/foundry/steps"; fi
d="$base/$name"
alive() { [ ! -e "$d/pid" ] || [ -d "/proc/$(cat "$d/pid")" ]; }
ended() { [ -e "$d/exit" ] || ! alive; }
drain() {
  s=$(stat -c %s "$d/out" 2>/dev/null || echo "$oo")
  if [ "$s" -gt "$oo" ]; then tail -c +"$((oo + 1))" "$d/out" | head -c "$((s - oo))"; oo=$s; fi
  s=$(stat -c %s "$d/err" 2>/dev/null || echo "$eo")
  if [ "$s" -gt "$eo" ]; then tail -c +"$((eo + 1))" "$d/err" | head -c "$((s - eo))" >&2; eo=$s; fi
}
case $mode in
status)
  if [ -e "$d/exit" ]; then echo "exit $(cat "$d/exit")"
  elif [ ! -d "$d" ]; then echo missing
  elif alive; then echo running
  else echo lost; fi
  exit 0 ;;
stop)
  [ -e "$d/pid" ] && [ ! -e "$d/exit" ] && kill -TERM -- "-$(cat "$d/pid")" 2>/dev/null
  exit 0 ;;
start)
  mkdir -p "$base" && chmod 700 "$base" || exit 70
  find "$base" -mindepth 1 -maxdepth 1 -type d -mtime +7 -exec rm -rf {} + 2>/dev/null
  # An earlier attempt that ended: this attempt runs the command afresh.
  if [ -d "$d" ] && [ "$(cat "$d/attempt" 2>/dev/null || echo 0)" -lt "$attempt" ] && ended; then rm -rf "$d"; fi
  # The command comes twice: n words with every `$` doubled (systemd expands `$` in a
  # unit's command line), then the n words as they are.
  n=$1; shift
  if mkdir "$d" 2>/dev/null; then
    echo "$attempt" > "$d/attempt"; : > "$d/out"; : > "$d/err"
    run='echo $$ > "$0/pid.new" && mv "$0/pid.new" "$0/pid"; "$@" >> "$0/out" 2>> "$0/err" < /dev/null; echo $? > "$0/exit.new"; mv "$0/exit.new" "$0/exit"'
    if [ "$(id -u)" = 0 ] && [ "$(cat /proc/1/comm 2>/dev/null)" = systemd ] && command -v systemd-run > /dev/null; then
      unit_run=$(printf '%s' "$run" | sed 's/[$]/$$/g')
      words=; i=1
      while [ "$i" -le "$n" ]; do words="$words \"\${$i}\""; i=$((i + 1)); done
      eval "systemd-run --quiet --collect --unit \"foundry-step-\$name\" sh -c \"\$unit_run\" \"\$d\" $words" > /dev/null || exit 71
    else
      shift "$n"
      setsid sh -c "$run" "$d" "$@" < /dev/null > /dev/null 2>&1 &
    fi
  fi ;;
esac
[ -d "$d" ] || exit 0
while :; do
  drain
  if ended; then drain; exit 0; fi
  sleep 0.2
done
"#;

/// A command run detached on a host; see the module's documentation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SshDetached {
    pub target: SshTarget,
    pub argv: Vec<String>,
    /// Run it with `sudo` (the user needs passwordless sudo).
    pub sudo: bool,
    pub policy: RetryPolicy,
    /// How long to keep reaching for a host that dropped off before this attempt gives up
    /// (the command keeps running; the next attempt reattaches to it).
    pub reattach_for_ms: u64,
}

impl SshDetached {
    pub fn new(target: SshTarget, argv: Vec<String>) -> Self {
        SshDetached {
            target,
            argv,
            sudo: false,
            policy: RetryPolicy::default(),
            reattach_for_ms: 10 * 60 * 1000,
        }
    }

    fn what(&self) -> String {
        format!(
            "{}: `{}`",
            self.target,
            self.argv.first().map_or("", String::as_str)
        )
    }

    /// The script in `mode` for this step, as one quoted command line.
    fn line(
        &self,
        mode: &str,
        cx: &ActivityCx,
        offsets: (u64, u64),
    ) -> Result<String, ActivityError> {
        let mut argv: Vec<String> = ["sh", "-c", SCRIPT, "foundry-detached", mode]
            .map(String::from)
            .to_vec();
        argv.push(cx.instance());
        argv.push(cx.attempt().to_string());
        argv.push(offsets.0.to_string());
        argv.push(offsets.1.to_string());
        if mode == "start" {
            argv.push(self.argv.len().to_string());
            argv.extend(self.argv.iter().map(|w| w.replace('$', "$$")));
            argv.extend(self.argv.iter().cloned());
        }
        command_line(&argv, self.sudo)
    }

    async fn status(&self, cx: &ActivityCx) -> Result<Remote, ActivityError> {
        let line = self.line("status", cx, (0, 0))?;
        let session = SshPool::global().session(&self.target).await?;
        let (code, out) = session.channel().await?.capture(&line, cx).await?;
        let text = String::from_utf8_lossy(&out);
        let text = text.trim();
        match text.split_once(' ') {
            _ if code != 0 => Err(ActivityError::transient(format!(
                "{}: reading the command's state exited with status {code}",
                self.target
            ))),
            Some(("exit", n)) => n.parse().map(Remote::Exit).map_err(|_| {
                ActivityError::permanent(format!("{}: unreadable exit code `{n}`", self.target))
            }),
            None if text == "running" => Ok(Remote::Running),
            None if text == "lost" => Ok(Remote::Lost),
            None if text == "missing" => Ok(Remote::Missing),
            _ => Err(ActivityError::transient(format!(
                "{}: unexpected state `{text}`",
                self.target
            ))),
        }
    }

    /// Streams the command's output until it ends (starting it first in `start` mode),
    /// reconnecting while the host is out of reach for up to `reattach_for_ms`; then its
    /// state and the last line it wrote to stderr.
    async fn follow(
        &self,
        cx: &ActivityCx,
        mode: &str,
    ) -> Result<(Remote, Option<String>), ActivityError> {
        let pool = SshPool::global();
        let mut out = LineSplitter::new(Stream::Stdout);
        let mut err = LineSplitter::new(Stream::Stderr);
        let reconnect = self.reconnect_policy();
        let mut unreachable_since: Option<Instant> = None;
        let mut failures = 0;
        loop {
            let attempt = async {
                let line = self.line(mode, cx, (out.offset, err.offset))?;
                let session = pool.session(&self.target).await?;
                let result = session
                    .channel()
                    .await?
                    .exec(&line, cx, |stream, data| match stream {
                        Stream::Stdout => out.push(cx, data),
                        Stream::Stderr => err.push(cx, data),
                    })
                    .await;
                if result.is_err() {
                    pool.forget(&self.target, &session).await;
                }
                let code = result?;
                if code != 0 {
                    return Err(ActivityError::permanent(format!(
                        "{}: starting the command failed with status {code}",
                        self.target
                    )));
                }
                self.status(cx).await
            };
            match attempt.await {
                Ok(Remote::Running) => {}
                Ok(state) => {
                    out.finish(cx);
                    err.finish(cx);
                    return Ok((state, err.last.take()));
                }
                Err(e) if e.transient && !cx.cancel_token().is_cancelled() => {
                    let since = *unreachable_since.get_or_insert_with(Instant::now);
                    failures += 1;
                    let Some(pause) = reconnect.delay_after(failures, since.elapsed()) else {
                        return Err(ActivityError::transient(format!(
                            "{}; out of reach for {}s, the command may still be running and the next attempt reattaches to it",
                            e.message,
                            since.elapsed().as_secs()
                        )));
                    };
                    tracing::info!(target = %self.target, error = %e.message, "reattaching to the detached command");
                    tokio::select! {
                        () = tokio::time::sleep(pause) => {}
                        () = cx.cancel_token().cancelled() => {}
                    }
                    continue;
                }
                Err(e) => {
                    if cx.cancel_token().is_cancelled() {
                        self.stop(cx).await;
                    }
                    return Err(e);
                }
            }
            unreachable_since = None;
            failures = 0;
        }
    }

    /// How [`Self::follow`] reconnects to a host out of reach: after 200 ms, doubling up to
    /// 5 s, for as long as `reattach_for_ms` allows. A policy, as data, like a step's.
    fn reconnect_policy(&self) -> RetryPolicy {
        RetryPolicy {
            initial_ms: 200,
            factor: 2.0,
            max_delay_ms: 5_000,
            max_attempts: u32::MAX,
            max_elapsed_ms: Some(self.reattach_for_ms),
            jitter: 0.0,
        }
    }

    /// Best effort, bounded: signals the command when its run is cancelled.
    async fn stop(&self, cx: &ActivityCx) {
        let Ok(line) = self.line("stop", cx, (0, 0)) else {
            return;
        };
        let quiet = ActivityCx::standalone(cx.step());
        let stopping = async {
            let session = SshPool::global().session(&self.target).await?;
            session.channel().await?.capture(&line, &quiet).await
        };
        let _ = tokio::time::timeout(Duration::from_secs(10), stopping).await;
    }

    fn outcome(
        &self,
        state: Remote,
        last_err: Option<String>,
    ) -> Result<CommandOutput, ActivityError> {
        match state {
            Remote::Exit(code) => CommandOutput::from_exit(&self.what(), code, last_err),
            Remote::Lost => Err(ActivityError::transient(format!(
                "{}: the command's process is gone without an exit code (was the host restarted?)",
                self.what()
            ))),
            Remote::Missing | Remote::Running => Err(ActivityError::transient(format!(
                "{}: the command's state vanished from the host",
                self.what()
            ))),
        }
    }
}

/// The command's state on the host.
#[derive(Debug, PartialEq)]
enum Remote {
    Exit(i64),
    Running,
    Lost,
    Missing,
}

/// Splits one stream of output into lines for events, counting the bytes seen so a
/// reattach asks only for the rest.
struct LineSplitter {
    stream: Stream,
    pending: Vec<u8>,
    offset: u64,
    last: Option<String>,
}

impl LineSplitter {
    fn new(stream: Stream) -> Self {
        LineSplitter {
            stream,
            pending: Vec::new(),
            offset: 0,
            last: None,
        }
    }

    fn push(&mut self, cx: &ActivityCx, data: &[u8]) {
        self.offset += data.len() as u64;
        self.pending.extend_from_slice(data);
        while let Some(at) = self.pending.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.pending.drain(..=at).collect();
            self.line(cx, &line[..line.len() - 1]);
        }
    }

    fn finish(&mut self, cx: &ActivityCx) {
        if !self.pending.is_empty() {
            let rest = std::mem::take(&mut self.pending);
            self.line(cx, &rest);
        }
    }

    fn line(&mut self, cx: &ActivityCx, bytes: &[u8]) {
        let text = String::from_utf8_lossy(bytes).into_owned();
        cx.output(self.stream, text.clone());
        self.last = Some(text);
    }
}

impl Activity for SshDetached {
    type Output = CommandOutput;

    fn kind(&self) -> &'static str {
        "ssh-detached"
    }

    fn in_doubt(&self) -> InDoubt {
        InDoubt::Probe
    }

    fn retry_policy(&self) -> RetryPolicy {
        self.policy.clone()
    }

    /// In doubt after a restart: not started means not there; otherwise reattach, wait
    /// for the end, and settle the attempt with the command's true exit code.
    async fn probe(&self, cx: &ActivityCx) -> Result<Option<CommandOutput>, ActivityError> {
        if self.status(cx).await? == Remote::Missing {
            return Ok(None);
        }
        let (state, last_err) = self.follow(cx, "attach").await?;
        match self.outcome(state, last_err) {
            Ok(output) => Ok(Some(CommandOutput {
                probed: true,
                ..output
            })),
            Err(e) => Err(e.settling()),
        }
    }

    async fn apply(&self, cx: &ActivityCx) -> Result<CommandOutput, ActivityError> {
        let (state, last_err) = self.follow(cx, "start").await?;
        self.outcome(state, last_err)
    }
}
