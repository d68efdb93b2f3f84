//! The relays that carry PowerDNS API requests into the servers' containers: one per
//! (Engine, container, port) for the whole process, shared by every [`super::Client`].
//!
//! PowerDNS's webserver (4.7) answers every request with `Connection: close`, so one TCP
//! connection cannot carry two requests. A relay is one exec in the server's container
//! (bash and coreutils, which PowerDNS's Debian images have) that loops: it reads a
//! request framed by its length, opens a fresh connection to the API on the container's
//! loopback, says whether it could (`+`, or what bash said and `-`), passes the request
//! on, and writes back the answer framed by its length. Starting an exec costs the Engine
//! a process in the container (80 to 220 ms under load, over SSH a round trip more); a
//! request on a relay that runs costs a few milliseconds.
//!
//! The key travels only in the request's header, on the exec's stdin: never in an argv,
//! an environment or a file. Requests on one relay go one at a time. A relay that died
//! (its container restarted or replaced, the SSH connection dropped, the runtime that
//! made it gone) is noticed by its stream ending before the `+`: the request never reached
//! the API, so it is sent once more, on a fresh relay. A relay that ends after its `+` and
//! before the answer leaves the request's fate unknown: a transient error, for the
//! engine's in-doubt probes.
//!
//! The relays' streams live on a runtime of their own, made once per process, so a relay
//! made by one caller's runtime never waits on another's reactor, whichever runtime
//! (a test's, the CLI's) asks.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex, OnceLock};

use bollard::Docker;
use foundry_core::ActivityError;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};

use crate::container::{Endpoint, ExecStream, StderrHandle};

/// The relay's shell, as it is named in the exec's command line and in what it says.
const NAME: &str = "foundry-pdns-api";

/// The relay run in the server's container. Arguments: the API's address and port.
/// Bash's own words when the connection fails go to stdout, before the `-`.
const RELAY: &str = r#"LC_ALL=C
while IFS= read -r n; do
  case $n in
  ''|*[!0-9]*) echo "$0: a request length that is not a number" >&2; exit 2 ;;
  esac
  if { exec 3<>"/dev/tcp/$1/$2"; } 2>&1; then
    echo +
    head -c "$n" >&3
    a=$(cat <&3; printf .)
    exec 3<&-
    a=${a%.}
    printf '%s\n%s' "${#a}" "$a"
  else
    echo -
    head -c "$n" >/dev/null
  fi
done"#;

/// The longest line the relay sends outside an answer.
const LINE_MAX: usize = 1024;
/// How many lines bash may say about a failed connection before its `-`.
const SAID_MAX: usize = 8;
/// The largest answer read (a zone of many thousand records fits).
const ANSWER_MAX: usize = 64 << 20;

/// Which relay: the Engine, the container, the API's port in it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(super) struct Target {
    pub endpoint: Endpoint,
    pub container: String,
    pub port: u16,
}

/// A relay that runs, with the Engine's client that started it.
struct Relay {
    framed: Framed<ExecStream>,
    stderr: StderrHandle,
    _docker: Docker,
}

/// What a relay did with a request.
#[derive(Debug, PartialEq, Eq)]
enum Carried {
    /// The API's whole answer, as it sent it.
    Answer(Vec<u8>),
    /// No connection to the API could be made in the container: why. The relay runs on.
    Refused(String),
}

/// How a relay failed a request; it is not used again.
#[derive(Debug, PartialEq, Eq)]
enum Lost {
    /// Before its `+`: the request did not reach the API.
    NotSent(String),
    /// After its `+`, before the whole answer: the request's fate is unknown.
    Unknown(String),
}

impl Relay {
    async fn start(target: &Target, what: &str) -> Result<Relay, ActivityError> {
        let docker = target.endpoint.connect().await?;
        let port = target.port.to_string();
        let stream = target
            .endpoint
            .exec_stream(
                &docker,
                &target.container,
                &["bash", "-c", RELAY, NAME, "127.0.0.1", &port],
            )
            .await
            .map_err(|e| ActivityError {
                message: format!("{what}: {}", e.message),
                ..e
            })?;
        Ok(Relay {
            stderr: stream.stderr_handle(),
            framed: Framed(BufReader::new(stream)),
            _docker: docker,
        })
    }

    /// Carries one request; a relay that ended says why on stderr, when it does.
    async fn carry(&mut self, request: &[u8]) -> Result<Carried, Lost> {
        let said = |why: String| match self.stderr.text().lines().last() {
            Some(last) => last.to_string(),
            None => why,
        };
        match self.framed.carry(request).await {
            Ok(carried) => Ok(carried),
            Err(Lost::NotSent(why)) => Err(Lost::NotSent(said(why))),
            Err(Lost::Unknown(why)) => Err(Lost::Unknown(said(why))),
        }
    }
}

/// The relay's protocol over its stdin (written) and stdout (read).
struct Framed<S>(BufReader<S>);

impl<S: AsyncRead + AsyncWrite + Unpin> Framed<S> {
    async fn carry(&mut self, request: &[u8]) -> Result<Carried, Lost> {
        let sent: std::io::Result<()> = async {
            let input = self.0.get_mut();
            input
                .write_all(format!("{}\n", request.len()).as_bytes())
                .await?;
            input.write_all(request).await?;
            input.flush().await
        }
        .await;
        // A write that failed left the request incomplete, which the API cannot act on.
        if let Err(e) = sent {
            return Err(Lost::NotSent(format!("the relay's stream broke: {e}")));
        }
        let mut said: Vec<String> = Vec::new();
        loop {
            match self.line().await {
                Ok(Some(line)) if line == "+" => break,
                Ok(Some(line)) if line == "-" => {
                    let why = said.pop().unwrap_or_else(|| "no connection".into());
                    return Ok(Carried::Refused(why));
                }
                Ok(Some(line)) if said.len() < SAID_MAX => said.push(line),
                Ok(Some(_)) => {
                    return Err(Lost::NotSent(format!(
                        "the relay said more than {SAID_MAX} lines and did not connect"
                    )));
                }
                Ok(None) => return Err(Lost::NotSent("the relay ended".into())),
                Err(e) => return Err(Lost::NotSent(e)),
            }
        }
        let length = match self.line().await {
            Ok(Some(line)) => line,
            Ok(None) => return Err(Lost::Unknown("the relay ended".into())),
            Err(e) => return Err(Lost::Unknown(e)),
        };
        let length: usize = length
            .parse()
            .ok()
            .filter(|n| *n <= ANSWER_MAX)
            .ok_or_else(|| {
                Lost::Unknown(format!("the relay sent no answer's length: {length:?}"))
            })?;
        let mut answer = vec![0; length];
        if let Err(e) = self.0.read_exact(&mut answer).await {
            return Err(Lost::Unknown(format!("the answer ended early: {e}")));
        }
        Ok(Carried::Answer(answer))
    }

    /// One line the relay sent, without its end; `None` at the end of its stream.
    async fn line(&mut self) -> Result<Option<String>, String> {
        let mut line = Vec::new();
        let read = (&mut self.0)
            .take(LINE_MAX as u64 + 1)
            .read_until(b'\n', &mut line)
            .await
            .map_err(|e| format!("the relay's stream broke: {e}"))?;
        match line.pop() {
            None if read == 0 => Ok(None),
            Some(b'\n') => Ok(Some(String::from_utf8_lossy(&line).into_owned())),
            _ => Err(format!(
                "the relay sent a line longer than {LINE_MAX} bytes, or cut short"
            )),
        }
    }
}

/// A relay's place in the pool: taken by the request it carries, put back after.
type Slot = Arc<tokio::sync::Mutex<Option<Relay>>>;

/// The relays of this process.
static RELAYS: LazyLock<Mutex<HashMap<Target, Slot>>> = LazyLock::new(Mutex::default);

/// The runtime the relays' streams live on.
fn runtime() -> Result<&'static tokio::runtime::Runtime, ActivityError> {
    static RUNTIME: OnceLock<Result<tokio::runtime::Runtime, String>> = OnceLock::new();
    RUNTIME
        .get_or_init(|| {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .thread_name(NAME)
                .enable_all()
                .build()
                .map_err(|e| e.to_string())
        })
        .as_ref()
        .map_err(|e| {
            ActivityError::transient(format!("starting the PowerDNS API relays' runtime: {e}"))
        })
}

/// Aborts the task when the caller stops waiting for it (a timeout): the relay it took
/// is dropped with it, in whatever state.
struct AbortOnDrop(tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Carries one request (the whole HTTP request's bytes) to the API through the target's
/// relay, and returns the API's whole answer. `what` names the request in errors.
pub(super) async fn exchange(
    target: &Target,
    what: &str,
    request: Vec<u8>,
) -> Result<Vec<u8>, ActivityError> {
    let slot = {
        let mut relays = RELAYS
            .lock()
            .map_err(|_| ActivityError::permanent("the PowerDNS API relays are poisoned"))?;
        relays.entry(target.clone()).or_default().clone()
    };
    let (target, what_owned) = (target.clone(), what.to_string());
    let task = runtime()?.spawn(async move {
        let mut held = slot.lock_owned().await;
        let what = what_owned.as_str();
        // A relay kept from an earlier request may have died since: a request it did not
        // send goes once more, on a fresh relay.
        let mut reused = held.is_some();
        loop {
            let mut relay = match held.take() {
                Some(relay) => relay,
                None => Relay::start(&target, what).await?,
            };
            let lost = match relay.carry(&request).await {
                Ok(Carried::Answer(answer)) => {
                    *held = Some(relay);
                    return Ok(answer);
                }
                Ok(Carried::Refused(why)) => {
                    *held = Some(relay);
                    why
                }
                Err(Lost::NotSent(why)) if reused => {
                    tracing::debug!(container = %target.container, %why, "a PowerDNS API relay ended; starting another");
                    reused = false;
                    continue;
                }
                Err(Lost::NotSent(why) | Lost::Unknown(why)) => why,
            };
            return Err(ActivityError::transient(format!(
                "{what}: the API does not answer: {lost}"
            )));
        }
    });
    let _abort = AbortOnDrop(task.abort_handle());
    task.await
        .map_err(|e| ActivityError::transient(format!("{what}: the relay's task ended: {e}")))?
}

#[cfg(test)]
mod tests {
    use std::process::Stdio;

    use tokio::io::{AsyncRead, AsyncWrite, BufReader};
    use tokio::net::TcpListener;

    use super::*;

    /// The relay's script run by this machine's bash, toward `port` on loopback.
    fn relay_here(
        port: u16,
    ) -> (
        tokio::process::Child,
        Framed<impl AsyncRead + AsyncWrite + Unpin>,
    ) {
        let mut child = tokio::process::Command::new("bash")
            .args(["-c", RELAY, NAME, "127.0.0.1", &port.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("bash");
        let (stdin, stdout) = (child.stdin.take(), child.stdout.take());
        let io = tokio::io::join(stdout.expect("stdout"), stdin.expect("stdin"));
        (child, Framed(BufReader::new(io)))
    }

    /// A server that answers each connection's request (read whole: it ends with a blank
    /// line and has no body) with `answer`, then closes it. Returns what it was sent.
    async fn serve(listener: TcpListener, answer: &'static [u8], n: usize) -> Vec<Vec<u8>> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut seen = Vec::new();
        for _ in 0..n {
            let (mut conn, _) = listener.accept().await.expect("accept");
            let mut request = Vec::new();
            while !request.ends_with(b"\r\n\r\n") {
                let mut byte = [0u8; 1];
                if conn.read(&mut byte).await.expect("read") == 0 {
                    break;
                }
                request.push(byte[0]);
            }
            conn.write_all(answer).await.expect("write");
            seen.push(request);
        }
        seen
    }

    #[tokio::test]
    async fn one_relay_carries_requests_one_after_another_byte_for_byte() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        // Multi-byte characters and trailing newlines: framed by bytes, none lost.
        const ANSWER: &[u8] = "HTTP/1.1 200 OK\r\n\r\ncafé ☕\n\n".as_bytes();
        let server = tokio::spawn(serve(listener, ANSWER, 3));
        let (_child, mut relay) = relay_here(port);
        let requests: Vec<Vec<u8>> = (0..3)
            .map(|i| format!("GET /{i} HTTP/1.1\r\nx-api-key: k\r\n\r\n").into_bytes())
            .collect();
        for request in &requests {
            let carried = relay.carry(request).await.expect("carried");
            assert_eq!(carried, Carried::Answer(ANSWER.to_vec()));
        }
        assert_eq!(server.await.expect("server"), requests);
    }

    #[tokio::test]
    async fn a_refused_connection_is_said_and_the_relay_runs_on() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        drop(listener);
        let (_child, mut relay) = relay_here(port);
        let request = b"GET / HTTP/1.1\r\n\r\n";
        for _ in 0..2 {
            match relay.carry(request).await {
                Ok(Carried::Refused(why)) => {
                    assert!(why.contains("Connection refused"), "{why}")
                }
                other => panic!("{other:?}"),
            }
        }
    }

    #[tokio::test]
    async fn a_relay_that_ended_did_not_send_the_request() {
        let (mut child, mut relay) = relay_here(9);
        child.kill().await.expect("kill");
        match relay.carry(b"GET / HTTP/1.1\r\n\r\n").await {
            Err(Lost::NotSent(_)) => {}
            other => panic!("{other:?}"),
        }
    }
}
