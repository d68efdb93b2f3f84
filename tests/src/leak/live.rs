//! Secrets looked for where a running stack shows them: every container's configuration as
//! the Engine reports it (`docker inspect`), and processes' command lines, sampled while an
//! install runs (a secret in an argv is readable by every user of its host for as long as
//! the process lives).

use std::collections::BTreeSet;
use std::process::Command;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use serde_json::Value;

/// `secret` in every form it could be written in: as is, base64 (standard and URL-safe,
/// without padding, which a longer encoding would not end with) and hex in either case.
pub fn forms(secret: &str) -> Vec<String> {
    let bytes = secret.as_bytes();
    let standard = base64(bytes, b"+/");
    let url_safe = base64(bytes, b"-_");
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let mut all = vec![
        secret.to_string(),
        standard,
        url_safe,
        hex.to_ascii_uppercase(),
        hex,
    ];
    all.sort();
    all.dedup();
    all
}

/// Base64 without padding, with `last` as the alphabet's two last characters (`+/`
/// standard, `-_` URL-safe).
pub fn base64(bytes: &[u8], last: &[u8; 2]) -> String {
    let alphabet: Vec<u8> = (b'A'..=b'Z')
        .chain(b'a'..=b'z')
        .chain(b'0'..=b'9')
        .chain(last.iter().copied())
        .collect();
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..=chunk.len() {
            out.push(char::from(alphabet[((n >> (18 - 6 * i)) & 63) as usize]));
        }
    }
    out
}

/// Where command lines are read.
#[derive(Clone, Debug)]
pub enum Procs {
    /// This machine's `/proc`: its own processes and those of every container of its
    /// Engine (the lab's hosts, OpenBAO, PowerDNS), which share its kernel.
    Local,
    /// A container's own view, through `docker exec` (a lab host, as its users see it).
    Container(String),
}

/// Every process's command line, one per line (its arguments separated by NUL bytes);
/// only `sh` and `cat`, which even a busybox has.
const LIST: &str = r#"for f in /proc/[0-9]*/cmdline; do cat "$f" 2>/dev/null; echo; done"#;

impl Procs {
    /// One look at every process's command line; none when it could not be taken.
    fn sample(&self) -> Option<Vec<String>> {
        match self {
            Procs::Local => {
                let mut lines = Vec::new();
                for entry in std::fs::read_dir("/proc").ok()?.flatten() {
                    let name = entry.file_name();
                    if !name.to_string_lossy().bytes().all(|b| b.is_ascii_digit()) {
                        continue;
                    }
                    // A process may end between the listing and the read.
                    if let Ok(raw) = std::fs::read(entry.path().join("cmdline")) {
                        lines.push(String::from_utf8_lossy(&raw).replace('\0', " "));
                    }
                }
                Some(lines)
            }
            Procs::Container(id) => {
                let out = Command::new("docker")
                    .args(["exec", id, "sh", "-c", LIST])
                    .output()
                    .ok()?;
                out.status.success().then(|| {
                    String::from_utf8_lossy(&out.stdout)
                        .lines()
                        .map(|l| l.replace('\0', " "))
                        .collect()
                })
            }
        }
    }
}

/// What a sampler saw: how many looks it took, and every distinct command line.
#[derive(Debug, Default)]
pub struct Sampled {
    pub samples: usize,
    pub lines: BTreeSet<String>,
}

impl Sampled {
    /// No form ([`forms`]) of any of `secrets` in any command line seen.
    pub fn assert_clean(&self, what: &str, secrets: &[String]) {
        for (i, secret) in secrets.iter().enumerate() {
            for form in forms(secret) {
                for line in &self.lines {
                    assert!(
                        !line.contains(&form),
                        "secret #{i} is on a command line of {what}: {}",
                        line.replace(&form, "<secret>")
                    );
                }
            }
        }
    }

    /// Whether a command line seen matches `what`.
    pub fn saw(&self, what: impl Fn(&str) -> bool) -> bool {
        self.lines.iter().any(|l| what(l.trim()))
    }
}

/// Command lines sampled on a thread every `every`, at most `max` times, until stopped.
pub struct Sampler {
    stop: mpsc::Sender<()>,
    thread: JoinHandle<Sampled>,
}

impl Sampler {
    pub fn start(procs: Procs, every: Duration, max: usize) -> Sampler {
        let (stop, stopped) = mpsc::channel::<()>();
        let thread = std::thread::spawn(move || {
            let mut seen = Sampled::default();
            for _ in 0..max {
                if let Some(lines) = procs.sample() {
                    seen.samples += 1;
                    seen.lines
                        .extend(lines.into_iter().filter(|l| !l.trim().is_empty()));
                }
                if stopped.recv_timeout(every) != Err(mpsc::RecvTimeoutError::Timeout) {
                    break;
                }
            }
            seen
        });
        Sampler { stop, thread }
    }

    /// Stops sampling; what was seen.
    pub fn stop(self) -> Sampled {
        let _ = self.stop.send(());
        self.thread.join().expect("the sampler thread")
    }
}

/// Every string in a JSON value, object keys too.
fn strings<'a>(value: &'a Value, out: &mut Vec<&'a str>) {
    match value {
        Value::String(s) => out.push(s),
        Value::Array(items) => items.iter().for_each(|v| strings(v, out)),
        Value::Object(map) => {
            for (k, v) in map {
                out.push(k);
                strings(v, out);
            }
        }
        _ => {}
    }
}

/// No form of any of `secrets` in what `docker inspect` shows of any container on this
/// machine's Engine: its environment, command, arguments, entry point and labels, and every
/// other string of it, read as JSON (so an escape cannot hide one) and as raw bytes. A
/// container that goes away meanwhile (another test's) is skipped. Returns the names of
/// the containers searched.
pub fn assert_no_container_shows(secrets: &[String]) -> Vec<String> {
    let listed = Command::new("docker")
        .args(["ps", "-aq", "--no-trunc"])
        .output()
        .expect("docker ps");
    assert!(listed.status.success(), "docker ps: {listed:?}");
    let mut searched = Vec::new();
    let forms: Vec<(usize, String)> = secrets
        .iter()
        .enumerate()
        .flat_map(|(i, s)| forms(s).into_iter().map(move |f| (i, f)))
        .collect();
    for id in String::from_utf8_lossy(&listed.stdout).split_whitespace() {
        let out = Command::new("docker")
            .args(["inspect", id])
            .output()
            .expect("docker inspect");
        if !out.status.success() {
            continue;
        }
        let json: Value = serde_json::from_slice(&out.stdout).expect("docker inspect's JSON");
        let name = json[0]["Name"].as_str().unwrap_or(id).to_string();
        let mut texts = Vec::new();
        strings(&json, &mut texts);
        let raw = String::from_utf8_lossy(&out.stdout);
        for (i, form) in &forms {
            let field = ["Env", "Cmd", "Entrypoint", "Labels"]
                .into_iter()
                .find(|f| json[0]["Config"][f].to_string().contains(form.as_str()))
                .or_else(|| {
                    json[0]["Args"]
                        .to_string()
                        .contains(form.as_str())
                        .then_some("Args")
                });
            assert!(
                field.is_none()
                    && !raw.contains(form.as_str())
                    && !texts.iter().any(|t| t.contains(form.as_str())),
                "secret #{i} is in docker inspect {name} ({})",
                field.unwrap_or("elsewhere")
            );
        }
        searched.push(name);
    }
    searched
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms_are_base64_and_hex() {
        let all = forms("any carnal pleas");
        for expected in [
            "any carnal pleas",
            "YW55IGNhcm5hbCBwbGVhcw",
            "616e79206361726e616c20706c656173",
            "616E79206361726E616C20706C656173",
        ] {
            assert!(all.iter().any(|f| f == expected), "{expected}: {all:?}");
        }
        assert!(forms("\u{fb}\u{ff}").iter().any(|f| f == "w7vDvw"));
        assert!(base64(&[0xfb, 0xff, 0xbf], b"-_") == "-_-_");
        assert!(base64(&[0xfb, 0xff, 0xbf], b"+/") == "+/+/");
    }
}
