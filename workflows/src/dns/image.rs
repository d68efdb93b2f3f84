//! The PowerDNS image, built here from Debian's packages (debootstrap, then `docker import`)
//! like the lab's hosts: nothing is pulled. One image serves the authoritative server and
//! the recursor; its entry script takes the role.

/// The image both PowerDNS roles run.
pub const PDNS_IMAGE: &str = "foundry-lab-pdns:3";

/// Starts `auth` (pdns_server, SQLite backend, its API on the container's own loopback,
/// port 8081, and nowhere else) or `recursor` in the foreground. As in PowerDNS's own
/// image, `auth` includes the files of `/etc/powerdns/pdns.d`: the API key is set there
/// (Foundry puts a file holding only its scrypt hash there before the start), never in the
/// environment or on a command line, so a restarted container serves its API again with
/// nothing from outside; with no `api-key` there, the start fails saying so. Other
/// settings come from the environment:
/// - `PDNS_ALLOW_FROM` (recursor): who may ask questions;
/// - `PDNS_FORWARD_ZONES` (recursor): `zone=ip,zone=ip`, each zone asked of that server;
/// - `PDNS_FORWARDERS` (recursor): `ip;ip`, asked for every other name. Empty in the lab,
///   where `.` goes to the first forward zone's server instead, so the recursor never asks
///   a root server.
///
/// Further arguments go to the daemon. Security polling (a DNS query to powerdns.com) is
/// off: a lab sends traffic nowhere else.
const ENTRY: &str = r#"#!/bin/sh
set -eu
role="${1:-}"
[ "$#" -gt 0 ] && shift
allow="${PDNS_ALLOW_FROM:-127.0.0.0/8}"
conf=/run/foundry-pdns
mkdir -p "$conf"
umask 027
case "$role" in
auth)
  grep -qs '^[[:space:]]*api-key=.' /etc/powerdns/pdns.d/*.conf || { echo "foundry-pdns: no API key: no file in /etc/powerdns/pdns.d sets api-key (\`foundry component install dns\` puts one there)" >&2; exit 2; }
  db=/var/lib/powerdns/pdns.sqlite3
  mkdir -p /var/lib/powerdns /run/pdns
  if [ ! -s "$db" ]; then
    rm -f "$db.new"
    sqlite3 "$db.new" < /usr/share/pdns-backend-sqlite3/schema/schema.sqlite3.sql
    mv "$db.new" "$db"
  fi
  chown -R pdns:pdns /var/lib/powerdns /run/pdns
  cat > "$conf/pdns.conf" <<CONF
include-dir=/etc/powerdns/pdns.d
launch=gsqlite3
gsqlite3-database=$db
local-address=0.0.0.0
local-port=53
api=yes
webserver=yes
webserver-address=127.0.0.1
webserver-port=8081
webserver-allow-from=127.0.0.0/8
security-poll-suffix=
socket-dir=/run/pdns
setuid=pdns
setgid=pdns
CONF
  chgrp pdns "$conf" "$conf/pdns.conf"
  exec /usr/sbin/pdns_server --config-dir="$conf" --guardian=no --daemon=no --disable-syslog --write-pid=no "$@"
  ;;
recursor)
  forwarders="${PDNS_FORWARDERS:-}"
  zones="${PDNS_FORWARD_ZONES:-}"
  if [ -z "$forwarders" ]; then
    first="${zones%%,*}"
    forwarders="${first#*=}"
  fi
  [ -n "$forwarders" ] || { echo "foundry-pdns: a recursor needs PDNS_FORWARDERS or PDNS_FORWARD_ZONES" >&2; exit 2; }
  mkdir -p /run/pdns-recursor
  chown pdns:pdns /run/pdns-recursor
  cat > "$conf/recursor.conf" <<CONF
local-address=0.0.0.0
local-port=53
allow-from=$allow
forward-zones=$zones
forward-zones-recurse=.=$forwarders
dnssec=off
security-poll-suffix=
socket-dir=/run/pdns-recursor
setuid=pdns
setgid=pdns
CONF
  chgrp pdns "$conf" "$conf/recursor.conf"
  exec /usr/sbin/pdns_recursor --config-dir="$conf" --daemon=no --disable-syslog "$@"
  ;;
*)
  echo "usage: foundry-pdns auth|recursor [daemon arguments]" >&2
  exit 2
  ;;
esac
"#;

/// Builds the image once. Arguments: image, mirror, the entry script.
const BUILD: &str = r#"set -eu
image="$1"; mirror="$2"; entry="$3"
docker image inspect "$image" >/dev/null 2>&1 && exit 0
root=$(mktemp -d /var/tmp/foundry-pdns-rootfs.XXXXXX)
trap 'rm -rf "$root"' EXIT
bootstrap "$root" "$mirror" pdns-server,pdns-backend-sqlite3,pdns-recursor,sqlite3,dnsutils
printf '%s' "$entry" > "$root/usr/local/sbin/foundry-pdns"
chmod 0755 "$root/usr/local/sbin/foundry-pdns"
rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* "$root"/var/lib/powerdns/*
tar -C "$root" -c . | docker import -c 'ENTRYPOINT ["/usr/local/sbin/foundry-pdns"]' - "$image" >/dev/null
"#;

/// The step that builds the image on this machine's Engine unless it is there already.
pub fn build_image(image: &str, mirror: &str) -> foundry_activities::container::BuildImage {
    let script = [crate::image::BOOTSTRAP, BUILD].concat();
    crate::image::build_step(
        "foundry-pdns-image",
        &script,
        image,
        &[image, mirror, ENTRY],
    )
}
