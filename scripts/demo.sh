#!/usr/bin/env bash
# Foundry's main job end to end, as far as it goes today: a local lab of Debian hosts
# (Docker Engine installed and started where missing, the hosts' image built from Debian's
# packages), then a durable run that is killed part-way and resumed exactly.
# FOUNDRY_HOME is ~/.foundry unless set.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/peers.sh
cargo build --release --quiet -p foundry-cli
foundry=target/release/foundry
export FOUNDRY_INPUT_GREETING="${FOUNDRY_INPUT_GREETING:-world}"
rm -rf /tmp/foundry-demo

echo "== the lab: three Debian hosts with sshd (the first time builds their image, about a minute)"
"$foundry" lab up --hosts 3
"$foundry" lab list
echo

echo "== starting the example plan, and killing it during its slow step"
"$foundry" workflow start local --input examples/local-plan.yaml &
pid=$!
for _ in $(seq 1 100); do
  if "$foundry" workflow list --output json 2>/dev/null | grep -q '"current_step":"slow#0"'; then break; fi
  sleep 0.1
done
kill -9 "$pid" 2>/dev/null || true
wait "$pid" 2>/dev/null || true

run=$("$foundry" workflow list --output json | grep '"workflow":"local"' | tail -n 1 | sed -n 's/.*"run":"\([^"]*\)".*/\1/p')
echo
echo "== where the killed run stands"
"$foundry" workflow show "$run"

echo
echo "== resuming it"
"$foundry" workflow resume "$run"

echo
echo "== the greeting was written once:"
cat /tmp/foundry-demo/greetings
"$foundry" workflow list --all
