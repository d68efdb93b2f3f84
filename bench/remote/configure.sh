#!/bin/sh
# The benchmark's work on one host, as one idempotent script: the raw-SSH limit runs it
#   ssh admin@ADDRESS sudo sh -s -- NAME 'PUBLIC KEY' < configure.sh
# and configure.yml (Ansible) and deploy.py (pyinfra) do the same work with their own
# modules. It prints one `changed: ...` line per change and nothing when all was in place.
set -eu

# Everything sits in one function: the shell reads it whole from stdin before running
# any of it, so no command below can swallow the rest of the script.
main() {
  [ "$#" -eq 2 ] || fail "usage: sh configure.sh NAME 'PUBLIC KEY'"
  name=$1
  key=$2
  case $name in
    '' | -* | *[!A-Za-z0-9.-]*) fail "host name '$name': use letters, digits, '.' and '-'" ;;
  esac
  case $key in
    ssh-* | ecdsa-* | sk-*) ;;
    *) fail "public key: expected one line such as 'ssh-ed25519 AAAA... comment'" ;;
  esac
  [ "$(id -u)" -eq 0 ] || fail "run as root (sudo sh -s -- NAME KEY)"

  # a. user foundry: home /home/foundry, shell /bin/bash, in group sudo
  if ! getent passwd foundry >/dev/null; then
    useradd --create-home --home-dir /home/foundry --shell /bin/bash --groups sudo foundry
    changed "user foundry"
  else
    entry=$(getent passwd foundry)
    home=$(printf '%s' "$entry" | cut -d: -f6)
    shell=$(printf '%s' "$entry" | cut -d: -f7)
    if [ "$home" != /home/foundry ]; then
      usermod --home /home/foundry foundry
      changed "home of foundry"
    fi
    if [ "$shell" != /bin/bash ]; then
      usermod --shell /bin/bash foundry
      changed "shell of foundry"
    fi
    if ! id -nG foundry | tr ' ' '\n' | grep -qx sudo; then
      usermod --append --groups sudo foundry
      changed "foundry in group sudo"
    fi
    if [ ! -d /home/foundry ]; then
      install -d -o foundry -g "$(id -gn foundry)" -m 0755 /home/foundry
      changed "/home/foundry"
    fi
  fi

  # b. /etc/sudoers.d/foundry, validated before it is put in place
  sudoers=/etc/sudoers.d/foundry
  rule='foundry ALL=(ALL:ALL) NOPASSWD: ALL'
  if ! printf '%s\n' "$rule" | cmp -s - "$sudoers"; then
    # sudo ignores names with a dot in /etc/sudoers.d: the candidate is inert meanwhile.
    candidate=$(mktemp /etc/sudoers.d/.foundry.XXXXXX)
    printf '%s\n' "$rule" >"$candidate"
    chown root:root "$candidate"
    chmod 0440 "$candidate"
    if ! visudo -cf "$candidate" >/dev/null; then
      rm -f "$candidate"
      fail "visudo rejected the sudoers rule"
    fi
    mv -f "$candidate" "$sudoers"
    changed "$sudoers"
  elif [ "$(stat -c '%U:%G %a' "$sudoers")" != "root:root 440" ]; then
    chown root:root "$sudoers"
    chmod 0440 "$sudoers"
    changed "owner and mode of $sudoers"
  fi

  # c. the key in /home/foundry/.ssh/authorized_keys
  group=$(id -gn foundry)
  dir=/home/foundry/.ssh
  keys=$dir/authorized_keys
  if [ ! -d "$dir" ]; then
    install -d -o foundry -g "$group" -m 0700 "$dir"
    changed "$dir"
  elif [ "$(stat -c '%U:%G %a' "$dir")" != "foundry:$group 700" ]; then
    chown foundry:"$group" "$dir"
    chmod 0700 "$dir"
    changed "owner and mode of $dir"
  fi
  if ! grep -qxF -- "$key" "$keys" 2>/dev/null; then
    # A last line without its newline would run into the key.
    if [ -s "$keys" ] && [ -n "$(tail -c 1 "$keys")" ]; then
      echo >>"$keys"
    fi
    printf '%s\n' "$key" >>"$keys"
    changed "key in $keys"
  fi
  if [ "$(stat -c '%U:%G %a' "$keys")" != "foundry:$group 600" ]; then
    chown foundry:"$group" "$keys"
    chmod 0600 "$keys"
    changed "owner and mode of $keys"
  fi

  # d. packages, checked with dpkg-query; only missing ones are installed
  wanted="sudo openssh-server python3 procps iproute2"
  # shellcheck disable=SC2086 # one word per package
  installed=$(dpkg-query -W -f='${Package} ${db:Status-Abbrev}\n' $wanted 2>/dev/null || true)
  missing=
  for package in $wanted; do
    printf '%s\n' "$installed" | grep -q "^$package ii" || missing="$missing $package"
  done
  if [ -n "$missing" ]; then
    # shellcheck disable=SC2086
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $missing </dev/null
    changed "packages$missing"
  fi

  # e. the host's name, in /etc/hostname and live
  if [ "$(cat /etc/hostname 2>/dev/null || true)" != "$name" ]; then
    printf '%s\n' "$name" >/etc/hostname
    changed /etc/hostname
  fi
  if [ "$(hostname)" != "$name" ]; then
    hostname "$name"
    changed "hostname"
  fi
}

changed() { printf 'changed: %s\n' "$1"; }
fail() {
  printf 'configure.sh: %s\n' "$1" >&2
  exit 1
}

main "$@"
