#!/usr/bin/env bash
# Foundry's main job end to end, as far as it goes today (until `foundry setup` exists): a
# local lab of Debian hosts (Docker Engine installed and started where missing, the hosts'
# image built from Debian's packages), then `foundry host configure --all` on it as a
# durable run, killed part-way and resumed exactly; run again, it changes nothing.
# FOUNDRY_HOME is ~/.foundry unless set.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/peers.sh
cargo build --release --quiet -p foundry-cli
foundry=target/release/foundry
home="${FOUNDRY_HOME:-$HOME/.foundry}"
config="$home/lab-default.yaml"

echo "== the lab: three Debian hosts with sshd (the first time builds their image, about a minute)"
"$foundry" lab up --hosts 3
"$foundry" lab list
echo

echo "== configuring every host, and killing foundry (SIGKILL) once host-2's sudoers file is written"
if FOUNDRY_FAILPOINTS='host-2/sudoers#0@effect' "$foundry" --config "$config" host configure --all; then
  echo "the run was expected to be killed" >&2
  exit 1
fi

run=$("$foundry" workflow list --output json | grep '"workflow":"host-configure"' | tail -n 1 | sed -n 's/.*"run":"\([^"]*\)".*/\1/p')
echo
echo "== where the killed run stands"
"$foundry" workflow show "$run"

echo
echo "== resuming it: the step cut mid-way runs again (its script checks first), the rest continue"
"$foundry" workflow resume "$run"

echo
echo "== configuring again: nothing left to change"
"$foundry" --config "$config" host configure --all
"$foundry" --config "$config" host list

echo
echo "== the interrupted run is done; the lab stays up (foundry lab down removes it)"
"$foundry" workflow list --all
