//! The remote scripts of `host-configure`. Each checks, changes only what differs, and
//! prints `changed` or `unchanged` last. Values arrive as arguments (`sh -c SCRIPT sh ARG…`),
//! never pasted into the text. The benchmark replicates exactly this work.

/// Args: user, home, shell, group.
pub const USER: &str = r#"set -eu
u="$1"; home="$2"; shell="$3"; group="$4"
if ! getent passwd "$u" >/dev/null; then
  useradd --create-home --home-dir "$home" --shell "$shell" --groups "$group" "$u"
  echo changed; exit 0
fi
changed=unchanged
entry=$(getent passwd "$u")
if [ "$(echo "$entry" | cut -d: -f6)" != "$home" ]; then usermod --home "$home" --move-home "$u"; changed=changed; fi
if [ "$(echo "$entry" | cut -d: -f7)" != "$shell" ]; then usermod --shell "$shell" "$u"; changed=changed; fi
case " $(id -nG "$u") " in *" $group "*) ;; *) usermod -aG "$group" "$u"; changed=changed ;; esac
echo "$changed"
"#;

/// Args: content, path. Validated with `visudo -cf` before it is moved into place.
pub const SUDOERS: &str = r#"set -eu
want="$1"; path="$2"
if [ -f "$path" ] && [ "$(stat -c '%U:%G %a' "$path")" = "root:root 440" ] && printf '%s' "$want" | cmp -s - "$path"; then
  echo unchanged; exit 0
fi
tmp=$(mktemp "$path.XXXXXX")
trap 'rm -f "$tmp"' EXIT
printf '%s' "$want" > "$tmp"
chown root:root "$tmp"; chmod 0440 "$tmp"
visudo -cqf "$tmp"
mv -f "$tmp" "$path"
trap - EXIT
echo changed
"#;

/// Args: user, public key line.
pub const SSH_KEY: &str = r#"set -eu
u="$1"; key="$2"
home=$(getent passwd "$u" | cut -d: -f6)
grp=$(id -gn "$u")
dir="$home/.ssh"; file="$dir/authorized_keys"; changed=unchanged
[ -d "$dir" ] || { mkdir -p "$dir"; changed=changed; }
if [ "$(stat -c '%U:%G %a' "$dir")" != "$u:$grp 700" ]; then chown "$u:$grp" "$dir"; chmod 0700 "$dir"; changed=changed; fi
if ! grep -qxF -- "$key" "$file" 2>/dev/null; then
  if [ -s "$file" ] && [ -n "$(tail -c1 "$file")" ]; then echo >> "$file"; fi
  printf '%s\n' "$key" >> "$file"; changed=changed
fi
if [ "$(stat -c '%U:%G %a' "$file")" != "$u:$grp 600" ]; then chown "$u:$grp" "$file"; chmod 0600 "$file"; changed=changed; fi
echo "$changed"
"#;

/// Args: packages. Only missing ones are installed.
pub const PACKAGES: &str = r#"set -eu
n=$#
for p in "$@"; do
  [ "$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)" = "install ok installed" ] || set -- "$@" "$p"
done
shift "$n"
[ "$#" -eq 0 ] && { echo unchanged; exit 0; }
export DEBIAN_FRONTEND=noninteractive
ls /var/lib/apt/lists/*_Packages >/dev/null 2>&1 || apt-get update -qq >&2
apt-get install -y --no-install-recommends "$@" >&2
echo changed
"#;

/// Args: name.
pub const HOSTNAME: &str = r#"set -eu
name="$1"; changed=unchanged
if [ "$(cat /etc/hostname 2>/dev/null || true)" != "$name" ]; then printf '%s\n' "$name" > /etc/hostname; changed=changed; fi
if [ "$(hostname)" != "$name" ]; then hostname "$name"; changed=changed; fi
echo "$changed"
"#;
