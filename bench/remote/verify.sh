#!/bin/sh
# Checks, logged in as foundry with Foundry's key, that a host got the whole of the
# benchmark's work (configure.sh a-e):
#   ssh -i KEY foundry@ADDRESS sh -s -- NAME 'PUBLIC KEY' < verify.sh
# Prints `verified`, or one `not done: ...` line per missing piece and exits 1.
set -u

main() {
  name=$1
  key=$2
  bad=0
  [ "$(id -un)" = foundry ] || missing "logged in as $(id -un), not foundry"
  sudo -n true 2>/dev/null || missing "sudo -n true as foundry"
  entry=$(getent passwd foundry)
  [ "$(printf '%s' "$entry" | cut -d: -f6)" = /home/foundry ] || missing "home /home/foundry"
  [ "$(printf '%s' "$entry" | cut -d: -f7)" = /bin/bash ] || missing "shell /bin/bash"
  id -nG | tr ' ' '\n' | grep -qx sudo || missing "member of group sudo"
  [ "$(sudo -n stat -c '%U:%G %a' /etc/sudoers.d/foundry 2>/dev/null)" = "root:root 440" ] ||
    missing "/etc/sudoers.d/foundry root:root 0440"
  printf 'foundry ALL=(ALL:ALL) NOPASSWD: ALL\n' | sudo -n cmp -s - /etc/sudoers.d/foundry ||
    missing "/etc/sudoers.d/foundry content"
  [ "$(stat -c '%U %a' /home/foundry/.ssh)" = "foundry 700" ] || missing ".ssh foundry 0700"
  [ "$(stat -c '%U %a' /home/foundry/.ssh/authorized_keys)" = "foundry 600" ] ||
    missing "authorized_keys foundry 0600"
  # The key itself (type and base64); a comment after it is the tool's own business.
  awk '{ print $1, $2 }' /home/foundry/.ssh/authorized_keys |
    grep -qxF -- "$(printf '%s\n' "$key" | awk '{ print $1, $2 }')" ||
    missing "the key in authorized_keys"
  for package in sudo openssh-server python3 procps iproute2; do
    dpkg-query -W -f='${db:Status-Abbrev}' "$package" 2>/dev/null | grep -q '^ii' ||
      missing "package $package"
  done
  [ "$(cat /etc/hostname)" = "$name" ] || missing "/etc/hostname is $name"
  [ "$(hostname)" = "$name" ] || missing "hostname is $name"
  [ "$bad" -eq 0 ] || exit 1
  echo verified
}

missing() {
  printf 'not done: %s\n' "$1"
  bad=1
}

main "$@"
