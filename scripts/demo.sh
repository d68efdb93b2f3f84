#!/usr/bin/env bash
# Foundry's main job end to end, as far as it goes today: a durable run that is killed
# part-way and resumed exactly. Uses a throwaway FOUNDRY_HOME unless one is set.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --release --quiet -p foundry-cli
foundry=target/release/foundry
export FOUNDRY_HOME="${FOUNDRY_HOME:-$(mktemp -d)/foundry}"
export FOUNDRY_INPUT_GREETING="${FOUNDRY_INPUT_GREETING:-world}"
rm -rf /tmp/foundry-demo

echo "== starting the example plan, and killing it during its slow step"
"$foundry" workflow start local --input examples/local-plan.yaml &
pid=$!
for _ in $(seq 1 100); do
  if "$foundry" workflow list --output json 2>/dev/null | grep -q '"current_step":"slow#0"'; then break; fi
  sleep 0.1
done
kill -9 "$pid" 2>/dev/null || true
wait "$pid" 2>/dev/null || true

run=$("$foundry" workflow list --output json | sed -n 's/.*"run":"\([^"]*\)".*/\1/p' | head -n 1)
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
