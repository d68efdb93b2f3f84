//! Whether anything answers at an address on a host's network, asked from that host: the
//! host's own addresses, then `ping` where it is installed, then ARP through the kernel (a
//! datagram toward the address makes the host ask who has it; a neighbour entry with a
//! hardware address is an answer). ARP answers even where a firewall drops pings. No
//! answer within the kernel's ARP tries (about 3 s) means free.

use std::net::Ipv4Addr;

use foundry_activities::ssh::SshTarget;

/// Prints `self`, `ping`, `arp <neighbour entry>` for an answer, `free`, or `missing
/// <command>`. Needs
/// iproute2 and python3 (Foundry's base packages). Argument: the address.
const PROBE: &str = r#"set -u
a="$1"
for c in ip python3; do command -v "$c" >/dev/null 2>&1 || { echo "missing $c"; exit 0; }; done
if ip -4 -o addr show | grep -q "inet $a/"; then echo self; exit 0; fi
if command -v ping >/dev/null 2>&1 && ping -c 1 -W 1 "$a" >/dev/null 2>&1; then echo ping; exit 0; fi
sudo -n ip neigh flush to "$a" >/dev/null 2>&1 || ip neigh flush to "$a" >/dev/null 2>&1 || true
python3 -c 'import socket, sys; socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b"", (sys.argv[1], 9))' "$a" 2>/dev/null || true
i=0
n=""
while [ "$i" -lt 40 ]; do
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

/// What answered at `address`, asked from `host` (reached as `target`); none when nothing
/// did.
pub(super) async fn answers(
    host: &str,
    target: &SshTarget,
    address: Ipv4Addr,
) -> Result<Option<String>, String> {
    let address = address.to_string();
    let out = super::run_on(target, &["sh", "-c", PROBE, "foundry-probe", &address])
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
