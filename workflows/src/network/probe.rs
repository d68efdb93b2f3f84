//! Whether anything answers at an address on a host's network, asked from that host: the
//! host's own addresses, then ARP, which every neighbour on the link answers even where a
//! firewall drops pings: a request on a raw socket (as root or through sudo). Without a raw
//! socket, `ping` where it is installed, then the kernel (a datagram toward the address
//! makes the host ask who has it; a neighbour entry with a hardware address is an answer).
//! A neighbour on a wire answers ARP in well under a millisecond: three requests over 0.3 s
//! with no answer mean free, so a probe costs 0.3 s plus one SSH round trip. (A Wi-Fi
//! device asleep in power save may answer later; the VIP is outside the DHCP range, where
//! such clients live.)

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::sync::{LazyLock, Mutex};
use std::time::{Duration, Instant};

use foundry_activities::ssh::SshTarget;
use tokio::task::JoinHandle;

/// Prints `self`, `arp <what answered>`, `ping` for an answer, `free`, or `missing
/// <command>`. Needs iproute2 and python3 (Foundry's base packages). Arguments: the
/// address, and [`RAW_ARP`]. A raw ARP request needs root (or sudo); without it the
/// kernel's neighbour table is read instead, where an entry the host may not flush (no
/// `CAP_NET_ADMIN`) still counts as an answer while it lasts.
const PROBE: &str = r#"set -u
a="$1"
for c in ip python3; do command -v "$c" >/dev/null 2>&1 || { echo "missing $c"; exit 0; }; done
if ip -4 -o addr show | grep -q "inet $a/"; then echo self; exit 0; fi
dev=$(ip -4 -o route get "$a" 2>/dev/null | sed -n 's/.* dev \([^ ]*\).*/\1/p')
if [ -n "$dev" ]; then
  if [ "$(id -u)" = 0 ]; then r=$(python3 -c "$2" "$a" "$dev" 2>/dev/null); else r=$(sudo -n python3 -c "$2" "$a" "$dev" 2>/dev/null); fi
  case "$r" in
    none) echo free; exit 0 ;;
    ??:??:??:??:??:??) echo "arp $a is at $r"; exit 0 ;;
  esac
fi
if command -v ping >/dev/null 2>&1 && ping -c 1 -W 1 "$a" >/dev/null 2>&1; then echo ping; exit 0; fi
sudo -n ip neigh flush to "$a" >/dev/null 2>&1 || ip neigh flush to "$a" >/dev/null 2>&1 || true
python3 -c 'import socket, sys; socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b"", (sys.argv[1], 9))' "$a" 2>/dev/null || true
i=0
n=""
while [ "$i" -lt 15 ]; do
  n=$(ip -4 neigh show to "$a")
  case "$n" in
    *lladdr*REACHABLE*|*lladdr*PERMANENT*|*lladdr*NOARP*) echo "arp $n"; exit 0 ;;
    *FAILED*) echo free; exit 0 ;;
  esac
  sleep 0.1
  i=$((i + 1))
done
case "$n" in
  *lladdr*) echo "arp $n" ;;
  *) echo free ;;
esac
"#;

/// An ARP request for the address (argument 1) on the interface (argument 2), sent three
/// at 0, 0.1 and 0.2 s on a raw socket, listening for 0.3 s: prints the MAC that answers,
/// or `none`.
const RAW_ARP: &str = r#"import fcntl, socket, struct, sys, time
target, dev = sys.argv[1], sys.argv[2]
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0806))
s.bind((dev, 0))
mine = s.getsockname()[4]
try:
    inet = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    src = fcntl.ioctl(inet.fileno(), 0x8915, struct.pack("256s", dev[:15].encode()))[20:24]
except OSError:
    src = bytes(4)
tpa = socket.inet_aton(target)
arp = struct.pack("!HHBBH6s4s6s4s", 1, 0x0800, 6, 4, 1, mine, src, bytes(6), tpa)
frame = b"\xff" * 6 + mine + b"\x08\x06" + arp
s.settimeout(0.02)
start = time.monotonic()
sent = 0
while time.monotonic() - start < 0.3:
    if sent < 3 and time.monotonic() - start >= sent * 0.1:
        s.send(frame)
        sent += 1
    try:
        data = s.recv(128)
    except socket.timeout:
        continue
    if len(data) >= 42 and data[12:14] == b"\x08\x06" and data[20:22] == b"\x00\x02" and data[28:32] == tpa:
        print(":".join("%02x" % b for b in data[22:28]))
        sys.exit(0)
print("none")
"#;

/// What a probe found: what answered, if anything, or why it could not tell.
type Answer = Result<Option<String>, String>;

/// An answer started ahead is taken only this soon after it was asked for.
const AHEAD_FRESH: Duration = Duration::from_secs(30);

/// A probe started ahead: when, and its task.
type Started = (Instant, JoinHandle<Answer>);

/// Probes started ahead of their need ([`ahead`]), by who asks and what: each taken once.
static AHEAD: LazyLock<Mutex<HashMap<(SshTarget, Ipv4Addr), Started>>> =
    LazyLock::new(Default::default);

/// Starts probing `address` from `host` now, in the background, so that [`answers`] for
/// the same host and address soon after takes this probe's answer instead of waiting a
/// probe's time (a setup starts the VIP's while its hosts phase runs). An answer that is no
/// answer (the host could not be reached or lacks a command) is asked again then.
pub(super) fn ahead(host: &str, target: &SshTarget, address: Ipv4Addr) {
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return;
    };
    let (host, asker) = (host.to_string(), target.clone());
    let task = runtime.spawn(async move { answers_now(&host, &asker, address).await });
    let mut ahead = AHEAD.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((_, stale)) = ahead.insert((target.clone(), address), (Instant::now(), task)) {
        stale.abort();
    }
}

/// What answered at `address`, asked from `host` (reached as `target`); none when nothing
/// did. The answer of a probe started [`ahead`] when there is a fresh one.
pub(super) async fn answers(host: &str, target: &SshTarget, address: Ipv4Addr) -> Answer {
    let started = AHEAD
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .remove(&(target.clone(), address));
    if let Some((at, task)) = started {
        if at.elapsed() < AHEAD_FRESH {
            if let Ok(Ok(answer)) = task.await {
                return Ok(answer);
            }
        } else {
            task.abort();
        }
    }
    answers_now(host, target, address).await
}

/// [`answers`], asked now.
async fn answers_now(host: &str, target: &SshTarget, address: Ipv4Addr) -> Answer {
    let address = address.to_string();
    let out = super::run_on(
        target,
        &["sh", "-c", PROBE, "foundry-probe", &address, RAW_ARP],
    )
    .await
    .map_err(|e| format!("probing {address} from {host}: {e}"))?;
    let said = String::from_utf8_lossy(&out).trim().to_string();
    Ok(
        match said.split_once(' ').map_or(said.as_str(), |(w, _)| w) {
            "free" => None,
            "missing" => {
                return Err(format!(
                    "probing {address} from {host}: `{}` is not installed there (`foundry host configure` installs it)",
                    said.trim_start_matches("missing ").trim()
                ));
            }
            "self" => Some(format!("{host} holds {address} itself")),
            "ping" => Some(format!("{address} answered a ping from {host}")),
            "arp" => Some(format!(
                "{address} answered ARP from {host}: {}",
                said.trim_start_matches("arp ").trim()
            )),
            _ => return Err(format!("probing {address} from {host}: it said `{said}`")),
        },
    )
}
