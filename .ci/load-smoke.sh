#!/usr/bin/env bash
# Smoke run of the load generator (benches/load.rs): every scenario at
# N=50 for a fraction of a second each, against a real master (the cluster
# ones against masters on a redis-server of their own: about 7 s of the
# run), so the tool cannot rot. Mosquitto is optional here: without it, its comparisons are
# skipped with a note (this script installs nothing). The full run and its
# results are in BENCHMARKS.md.
#
# Ends with "N passed, M failed" and exits non-zero on any failure.
set -uo pipefail
cd "$(dirname "$0")/.."

out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
args=(--smoke --json "$out/results.json" --svg-dir "$out")
if ! command -v mosquitto >/dev/null 2>&1 && [ ! -x /usr/sbin/mosquitto ]; then
  echo "note: mosquitto is not installed: comparisons with it are skipped (apt-get install mosquitto for the full run)"
  args+=(--mosquitto none)
fi

if ! command -v redis-server >/dev/null 2>&1; then
  # The cluster scenarios start their own redis-server, as the cluster
  # tests do (.ci/run installs it); without it they fail and say so.
  echo "note: redis-server is not installed: the cluster scenarios will fail (apt-get install redis-server)"
fi

cargo bench --bench load -- "${args[@]}" 2>&1 | tee "$out/load.log"
status=${PIPESTATUS[0]}

passed=0
failed=0
check() { # NAME CONDITION...
  local name=$1
  shift
  if "$@"; then
    passed=$((passed + 1))
  else
    echo "FAILED: $name"
    failed=$((failed + 1))
  fi
}
# The tool's own count: one per measurement, failures listed above it.
line=$(grep -E '^[0-9]+ passed, [0-9]+ failed$' "$out/load.log" | tail -n 1)
if [ -n "$line" ]; then
  passed=$((passed + ${line%% passed*}))
  tool_failed=${line#*passed, }
  failed=$((failed + ${tool_failed%% failed}))
fi
check "load generator exit status ($status)" test "$status" -eq 0
check "load generator printed its count" test -n "$line"
check "results JSON written" grep -q '"samples"' "$out/results.json"
check "latency plot written" grep -q '<svg' "$out/latency.svg"
check "memory plot written" grep -q '<svg' "$out/memory-vs-n.svg"
check "heartbeat measured" grep -qE '^heartbeat +edge-gw sealed' "$out/load.log"
check "storm measured" grep -qE '^storm +edge-gw sealed' "$out/load.log"
check "cluster heartbeat measured" grep -qE '^cluster heartbeat +edge-gw sealed cluster ' "$out/load.log"
check "cluster push measured" grep -qE '^cluster push +edge-gw sealed cluster A→B p99 ' "$out/load.log"
check "cluster failover measured" grep -qE '^cluster failover +[0-9]+ masters: sessions on survivors ' "$out/load.log"

echo "load smoke: $passed passed, $failed failed"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
