#!/usr/bin/env bash
# Emulated end-to-end smoke test of the router builds.
#
#   .ci/cross-smoke.sh TARGET...      e.g. mipsel-unknown-linux-musl armv7-unknown-linux-musleabihf
#   .ci/cross-smoke.sh all            the five targets of board/build.sh
#
# For each target: start the x86_64 master on loopback (temporary --state-dir,
# --heartbeat 1), run the target's agent-only static binary under
# qemu-<arch>-static, and check through the master's HTTP API that the agent
#   - joined sealed ("sealed": true, i.e. a Noise session with the fleet key),
#   - delivered >= 3 reports at --interval 1 with plausible values (cpu 0-100,
#     memory total > 0): every report is produced by a smol Timer, so this is
#     the proof that timers fire on the target (see board/README.md, MIPS BE),
#   - received a push through --on-push (the file gets exactly the pushed text),
#   - exits 0 within 3 s of SIGTERM.
# Everything is bounded with `timeout` and killed on exit. The last line is
# "N passed, M failed"; the exit status is non-zero if anything failed.
#
# Binaries: the agent comes from board/build.sh's output directory
# ($EDGE_GW_BOARD_OUT, default target/cross/out/edge-gw-TARGET); it is built
# with board/build.sh if missing (set EDGE_GW_SMOKE_BUILD=always to rebuild
# first, =never to fail instead). The master is $EDGE_GW_MASTER_BIN, else the
# host debug build (`cargo build`, rustup toolchain, default target dir).
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

ALL_TARGETS=(mipsel-unknown-linux-musl armv7-unknown-linux-musleabihf
  mips-unknown-linux-musl aarch64-unknown-linux-musl x86_64-unknown-linux-musl)
OUT=${EDGE_GW_BOARD_OUT:-$ROOT/target/cross/out}
BUILD=${EDGE_GW_SMOKE_BUILD:-missing}
PER_TARGET_LIMIT=${EDGE_GW_SMOKE_LIMIT:-90}   # seconds for one target's whole check

if [ $# -eq 0 ]; then
  echo "usage: $0 TARGET... | all" >&2
  exit 2
fi
targets=()
for t in "$@"; do
  if [ "$t" = all ]; then targets+=("${ALL_TARGETS[@]}"); else targets+=("$t"); fi
done

log() { printf '[smoke %5ds] %s\n' "$SECONDS" "$*"; }

# --- tools ----------------------------------------------------------------
need_pkgs=()
command -v curl >/dev/null || need_pkgs+=(curl)
command -v jq >/dev/null || need_pkgs+=(jq)
command -v file >/dev/null || need_pkgs+=(file)
for t in "${targets[@]}"; do
  case $t in
    x86_64-*) ;;
    *) command -v qemu-mipsel-static >/dev/null || need_pkgs+=(qemu-user-static) ;;
  esac
done
if [ ${#need_pkgs[@]} -gt 0 ]; then
  log "installing ${need_pkgs[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q >/dev/null && apt-get install -y -q --no-install-recommends \
    $(printf '%s\n' "${need_pkgs[@]}" | sort -u) >/dev/null || {
    echo "cannot install ${need_pkgs[*]}" >&2
    exit 1
  }
fi

# --- processes and cleanup -----------------------------------------------
WORK=$(mktemp -d "${TMPDIR:-/tmp}/edge-gw-cross-smoke.XXXXXX")
PIDS=()
cleanup() {
  local p
  for p in "${PIDS[@]}"; do kill -KILL "$p" 2>/dev/null; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null; done
  if [ "${EDGE_GW_SMOKE_KEEP:-0}" = 1 ]; then
    echo "logs kept in $WORK"
  else
    rm -rf "$WORK"
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- the master (host build) ------------------------------------------------
MASTER_BIN=${EDGE_GW_MASTER_BIN:-}
if [ -z "$MASTER_BIN" ]; then
  log "building the host master (cargo build)"
  timeout 1200 cargo build --quiet --bin edge-gw || { echo "host build failed" >&2; exit 1; }
  MASTER_BIN=$ROOT/target/debug/edge-gw
fi
[ -x "$MASTER_BIN" ] || { echo "no master binary at $MASTER_BIN" >&2; exit 1; }

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

qemu_for() {
  case $1 in
    mipsel-*) echo "qemu-mipsel-static mipsel" ;;
    mips-*) echo "qemu-mips-static mips" ;;
    armv7-*|arm-*) echo "qemu-arm-static arm" ;;
    aarch64-*) echo "qemu-aarch64-static aarch64" ;;
    x86_64-*) echo "- x86_64" ;;   # runs natively
    *) return 1 ;;
  esac
}

# api PATH [curl args...]: GET/POST against the current master, JSON on stdout.
api() {
  local path=$1; shift
  curl -fsS --max-time 3 -H "Authorization: Bearer $TOKEN" "$@" "http://127.0.0.1:$HTTP$path"
}

# wait_until SECONDS CMD...: polls CMD every 0.2 s.
wait_until() {
  local limit=$1; shift
  local end=$((SECONDS + limit))
  while [ $SECONDS -le $end ]; do
    "$@" && return 0
    sleep 0.2
  done
  return 1
}

passed=0
failed=0
summary=()

# check_target TARGET: returns 0 if every check passes; prints why not.
check_target() {
  local target=$1
  local bin=$OUT/edge-gw-$target
  local q arch qemu
  q=$(qemu_for "$target") || { echo "unknown target $target"; return 1; }
  qemu=${q% *}; arch=${q#* }
  local uuid=qemu-$arch
  local dir=$WORK/$target
  mkdir -p "$dir"

  if [ "$BUILD" = always ] || { [ "$BUILD" = missing ] && [ ! -x "$bin" ]; }; then
    log "$target: building with board/build.sh"
    board/build.sh "$target" > "$dir/build.log" 2>&1 || { tail -30 "$dir/build.log"; echo "build failed"; return 1; }
  fi
  [ -x "$bin" ] || { echo "no agent binary at $bin"; return 1; }
  file -b "$bin" | grep -q 'statically linked' || { echo "not statically linked: $(file -b "$bin")"; return 1; }

  # Master.
  local state=$dir/master port
  port=$(free_port); HTTP=$(free_port)
  timeout --signal=KILL $((PER_TARGET_LIMIT + 30)) "$MASTER_BIN" --master \
    --listen "127.0.0.1:$port" --http "127.0.0.1:$HTTP" \
    --state-dir "$state" --heartbeat 1 --log-level debug \
    </dev/null >"$dir/master.log" 2>&1 &
  local mpid=$!
  PIDS+=("$mpid")
  wait_until 15 test -s "$state/api.token" || { echo "master wrote no api.token"; tail -20 "$dir/master.log"; return 1; }
  TOKEN=$(tr -d '\n' < "$state/api.token")
  wait_until 15 api /api/status -o /dev/null || { echo "master API not answering"; tail -20 "$dir/master.log"; return 1; }

  # Agent under qemu.
  local adir=$dir/agent
  mkdir -p "$adir"
  local cmd=("$bin")
  [ "$qemu" != - ] && cmd=("$qemu" "$bin")
  local t0=$SECONDS
  timeout --signal=KILL $((PER_TARGET_LIMIT + 30)) "${cmd[@]}" \
    --agent "127.0.0.1:$port" --key-file "$state/fleet.key" --uuid "$uuid" \
    --interval 1 --on-push "cat > $adir/pushed" --state-dir "$adir" --log-level debug \
    </dev/null >"$dir/agent.log" 2>&1 &
  local apid=$!
  PIDS+=("$apid")

  # Joined sealed, >= 3 reports, plausible values.
  local j=$dir/agent.json
  reports_ok() {
    api "/api/agents/$uuid" -o "$j" 2>/dev/null || return 1
    jq -e '.online == true and .counters.reports >= 3' "$j" >/dev/null
  }
  if ! wait_until 45 reports_ok; then
    echo "fewer than 3 reports within 45 s (timers not firing?)"
    [ -s "$j" ] && jq -c '{online, sealed, counters}' "$j"
    echo "--- agent log"; tail -15 "$dir/agent.log"
    echo "--- master log"; tail -10 "$dir/master.log"
    return 1
  fi
  local t_reports=$((SECONDS - t0))
  jq -e '.sealed == true' "$j" >/dev/null || { echo "session not sealed: $(jq -c '{sealed,wire}' "$j")"; return 1; }
  jq -e '.health.host as $h | ($h.cpu_percent >= 0 and $h.cpu_percent <= 100
        and $h.memory_kb.total > 0)' "$j" >/dev/null || {
    echo "implausible health: $(jq -c '.health.host | {cpu_percent, memory_kb}' "$j")"
    return 1
  }
  local summary_line
  summary_line=$(jq -r '"reports=\(.counters.reports) sealed=\(.sealed) wire=\(.wire) cpu=\(.health.host.cpu_percent)% mem_total=\(.health.host.memory_kb.total)kB"' "$j")
  # Resident set of a native agent (x86_64), for the footprint table; under
  # qemu it would be qemu's. Reported, not asserted.
  if [ "$qemu" = - ]; then
    local agent_pid rss
    agent_pid=$(awk '{ print $1 }' "/proc/$apid/task/$apid/children" 2>/dev/null)   # under `timeout`
    rss=$(awk '/^VmRSS/ { print $2 }' "/proc/${agent_pid:-0}/status" 2>/dev/null)
    [ -n "$rss" ] && summary_line="$summary_line rss=${rss}KiB"
  fi

  # Push through --on-push.
  local text="smoke push to $uuid: $RANDOM-$RANDOM $(date +%s) \"quoted\" & done"
  local body
  body=$(jq -cn --arg to "$uuid" --arg body "$text" '{to: $to, body: $body}')
  api /api/push -X POST -H 'Content-Type: application/json' --data-binary "$body" -o "$dir/push.json" \
    || { echo "POST /api/push failed"; return 1; }
  printf '%s' "$text" > "$dir/expected"
  pushed_ok() { [ -f "$adir/pushed" ] && cmp -s "$adir/pushed" "$dir/expected"; }
  if ! wait_until 20 pushed_ok; then
    echo "push not delivered through --on-push within 20 s"
    [ -f "$adir/pushed" ] && { echo "got:"; od -c "$adir/pushed" | head -5; }
    tail -15 "$dir/agent.log"
    return 1
  fi

  # SIGTERM: exit 0 within 3 s.
  local ts
  ts=$(date +%s%N)
  kill -TERM "$apid"
  local waited=0 rc=
  while [ $waited -lt 30 ]; do   # 30 x 0.1 s
    if ! kill -0 "$apid" 2>/dev/null; then break; fi
    sleep 0.1; waited=$((waited + 1))
  done
  if kill -0 "$apid" 2>/dev/null; then
    echo "agent still running 3 s after SIGTERM"
    kill -KILL "$apid" 2>/dev/null
    wait "$apid" 2>/dev/null
    return 1
  fi
  wait "$apid"; rc=$?
  local stop_ms=$((($(date +%s%N) - ts) / 1000000))
  [ "$rc" = 0 ] || { echo "agent exited $rc after SIGTERM"; tail -5 "$dir/agent.log"; return 1; }

  kill -TERM "$mpid" 2>/dev/null
  wait "$mpid" 2>/dev/null
  echo "$summary_line; 3 reports after ${t_reports}s; push ok; SIGTERM exit 0 in ${stop_ms} ms"
  return 0
}

for target in "${targets[@]}"; do
  start=$SECONDS
  log "$target: start"
  check_target "$target" > "$WORK/$target.out" 2>&1
  rc=$?
  out=$(cat "$WORK/$target.out")
  took=$((SECONDS - start))
  # Stop whatever this target left running before the next one.
  for p in "${PIDS[@]}"; do kill -KILL "$p" 2>/dev/null; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null; done
  PIDS=()
  if [ $rc -eq 0 ]; then
    passed=$((passed + 1))
    log "$target: PASS in ${took}s: $out"
    summary+=("PASS  $target  ${took}s")
  else
    failed=$((failed + 1))
    log "$target: FAIL in ${took}s"
    printf '%s\n' "$out" | sed 's/^/    /'
    summary+=("FAIL  $target  ${took}s")
  fi
done

echo
printf '  %s\n' "${summary[@]}"
echo "$passed passed, $failed failed"
[ $failed -eq 0 ]
