#!/usr/bin/env bash
# Foundry's main job end to end: a local lab of Debian hosts (Docker Engine installed and
# started where missing, the hosts' image built from Debian's packages), then `foundry
# setup` on it: the hosts configured, OpenBAO, PowerDNS and the registry installed, as one
# durable run. The first setup is killed (SIGKILL) part-way; `foundry setup` again resumes
# it exactly where it stopped; run once more, it changes nothing.
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
echo

echo "== foundry setup, killed (SIGKILL) once PowerDNS's internal server is created"
point="stack/dns/container/foundry-lab-default-dns-internal#0@effect"
if FOUNDRY_FAILPOINTS="$point" "$foundry" --config "$config" setup --yes; then
  echo "(the setup had nothing left to do there: it was done already)"
fi

echo
echo "== where the killed run stands"
"$foundry" workflow list

echo
echo "== foundry setup again: it resumes the unfinished run where it stopped"
"$foundry" --config "$config" setup --yes

echo
echo "== once more: nothing left to change"
"$foundry" --config "$config" setup --yes
echo
echo "the lab and its stack stay up (foundry lab down removes them)"
