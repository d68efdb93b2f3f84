#!/usr/bin/env bash
# Installs and starts the real peers the tests talk to, on a fresh Debian 12 machine:
# Docker Engine (Debian's docker.io, dockerd started here), busybox-static for a tiny
# test image, debootstrap for the lab's host image, and a Secret Service for the keyring
# tests (GNOME Keyring, D-Bus, secret-tool; each test starts its own private bus and
# daemon). Idempotent; every wait is bounded.
set -euo pipefail

need=()
command -v dockerd >/dev/null 2>&1 || need+=(docker.io)
[ -x /bin/busybox ] || need+=(busybox-static)
command -v debootstrap >/dev/null 2>&1 || need+=(debootstrap)
command -v dbus-daemon >/dev/null 2>&1 || need+=(dbus-daemon)
command -v dbus-send >/dev/null 2>&1 || need+=(dbus-bin)
command -v gnome-keyring-daemon >/dev/null 2>&1 || need+=(gnome-keyring)
command -v secret-tool >/dev/null 2>&1 || need+=(libsecret-tools)
if [ "${#need[@]}" -gt 0 ]; then
  echo "installing: ${need[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi

socket=/var/run/docker.sock
engine_up() { docker -H "unix://$socket" version >/dev/null 2>&1; }
if ! engine_up; then
  echo "starting dockerd"
  mkdir -p /var/log
  nohup dockerd >/var/log/foundry-dockerd.log 2>&1 &
  for _ in $(seq 1 60); do
    engine_up && break
    sleep 1
  done
fi
if ! engine_up; then
  echo "error: the Docker Engine did not start; its log:" >&2
  tail -n 30 /var/log/foundry-dockerd.log >&2 || true
  exit 1
fi
docker -H "unix://$socket" version --format 'Docker Engine {{.Server.Version}} (API {{.Server.APIVersion}})'
