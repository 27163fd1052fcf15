#!/usr/bin/env bash
# End-to-end test of the master dashboard (src/master/http/dashboard.html) in
# headless Chromium: builds edge-gw, starts a real master and two real
# agents on loopback, drives the page with playwright-core
# (dashboard.test.mjs), then checks that the push typed into the page
# reached the agent's --on-push hook byte for byte.
#
# Usage: tests/dashboard/run.sh
# Environment:
#   EDGE_GW_BIN     use this binary instead of running `cargo build`
#   CHROMIUM        browser binary (default /usr/bin/chromium)
#   TEST_TIMEOUT    seconds allowed from starting the master to the end
#                   (default 120); installs and the build are bounded
#                   separately (BUILD_TIMEOUT, default 600)
#   KEEP_TMP=1      keep the temporary directory (logs, state) for debugging
# Installs what is missing: Debian `chromium` (apt-get, needs root) and the
# npm package playwright-core into tests/dashboard/node_modules. It never
# downloads browsers through playwright.
# The screenshots go to tests/dashboard/screenshot.png, screenshot-narrow.png
# and screenshot-fleet.png (5,000 agents; not tracked).
# The last line is "N passed, M failed"; the exit status is 0 only if all
# checks passed.

set -uo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
CHROMIUM=${CHROMIUM:-/usr/bin/chromium}
TEST_TIMEOUT=${TEST_TIMEOUT:-120}
BUILD_TIMEOUT=${BUILD_TIMEOUT:-600}

passed=0
failed=0
say() { printf '%s\n' "$*"; }
pass() { passed=$((passed + 1)); say "ok - $*"; }
fail() { failed=$((failed + 1)); say "not ok - $*"; }
finish() {
    say "$passed passed, $failed failed"
    [ "$failed" -eq 0 ] && [ "$passed" -gt 0 ]
    exit $?
}
die() { # a setup step failed: report it as a failure and stop
    fail "$*"
    finish
}

[ -f "$ROOT/Cargo.toml" ] || die "no Cargo.toml in $ROOT (run.sh must stay in tests/dashboard/)"

# ---- prerequisites (installed only if missing)
if [ ! -x "$CHROMIUM" ]; then
    say "# installing Debian chromium"
    SUDO=
    [ "$(id -u)" -eq 0 ] || SUDO=sudo
    export DEBIAN_FRONTEND=noninteractive
    timeout 600 $SUDO apt-get install -y chromium >/dev/null ||
        { timeout 300 $SUDO apt-get update >/dev/null && timeout 600 $SUDO apt-get install -y chromium >/dev/null; } ||
        die "cannot install chromium (apt-get install -y chromium, as root)"
fi
command -v node >/dev/null || die "node is not installed (Node 18 or later is needed)"
if [ ! -f "$HERE/node_modules/playwright-core/package.json" ]; then
    say "# installing playwright-core"
    (cd "$HERE" && timeout 300 npm install --no-audit --no-fund >/dev/null) ||
        die "npm install in $HERE failed"
fi
for tool in curl python3 setsid timeout; do
    command -v "$tool" >/dev/null || die "$tool is not installed"
done

# ---- build
if [ -n "${EDGE_GW_BIN:-}" ]; then
    BIN=$EDGE_GW_BIN
else
    say "# cargo build (may wait for the build lock)"
    (cd "$ROOT" && timeout "$BUILD_TIMEOUT" cargo build --quiet --bin edge-gw) ||
        die "cargo build failed or took over $BUILD_TIMEOUT s"
    target=${CARGO_TARGET_DIR:-target}
    case $target in /*) ;; *) target=$ROOT/$target ;; esac
    BIN=$target/debug/edge-gw
fi
[ -x "$BIN" ] || die "no binary at $BIN"

# ---- from here on everything is bounded by TEST_TIMEOUT
WORK=$(mktemp -d "${TMPDIR:-/tmp}/edge-gw-dash.XXXXXX")
MASTER_PID= AGENT_PID= EVIL_PID= GONE_PID= NODE_PID= WATCHDOG_PID=
alive() { local st; st=$(ps -o stat= -p "$1" 2>/dev/null) && [[ $st != Z* ]]; }
cleanup() {
    trap - EXIT INT TERM
    for pid in $AGENT_PID $EVIL_PID $GONE_PID $MASTER_PID; do kill -TERM "$pid" 2>/dev/null; done
    if [ -n "$NODE_PID" ]; then # playwright closes the browser on SIGTERM: give it a moment
        kill -TERM -- "-$NODE_PID" 2>/dev/null
        for _ in 1 2 3 4 5 6 7 8 9 10; do alive "$NODE_PID" || break; sleep 0.3; done
    fi
    sleep 0.2
    [ -n "$NODE_PID" ] && kill -KILL -- "-$NODE_PID" 2>/dev/null
    for pid in $AGENT_PID $EVIL_PID $GONE_PID $MASTER_PID; do kill -KILL "$pid" 2>/dev/null; done
    [ -n "$WATCHDOG_PID" ] && { pkill -P "$WATCHDOG_PID" sleep; kill "$WATCHDOG_PID"; } 2>/dev/null
    wait 2>/dev/null
    if [ "${KEEP_TMP:-0}" = 1 ]; then say "# kept $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'fail "interrupted"; finish' INT
trap 'fail "timed out after $TEST_TIMEOUT s (TEST_TIMEOUT)"; show_logs; count_node; finish' TERM
( sleep "$TEST_TIMEOUT" && kill -TERM $$ ) >/dev/null 2>&1 &
WATCHDOG_PID=$!

show_logs() {
    [ -n "$NODE_PID" ] && [ -s "$WORK/node.log" ] && { say "# --- browser test so far"; cat "$WORK/node.log"; }
    for f in master agent evil gone; do
        [ -s "$WORK/$f.log" ] && { say "# --- last lines of the $f log"; tail -n 15 "$WORK/$f.log" | sed 's/^/#   /'; }
    done
}
count_node() { # adds the browser test's results
    [ -f "$WORK/node.log" ] || return 0
    passed=$((passed + $(grep -c '^ok ' "$WORK/node.log")))
    failed=$((failed + $(grep -c '^not ok ' "$WORK/node.log")))
}
free_ports() { # prints two free loopback TCP ports
    python3 -c '
import socket
s = [socket.socket() for _ in range(2)]
for x in s: x.bind(("127.0.0.1", 0))
print(*(x.getsockname()[1] for x in s))'
}
wait_for() { # wait_for SECONDS DESCRIPTION COMMAND...: polls until COMMAND succeeds
    local end=$((SECONDS + $1)) what=$2
    shift 2
    until "$@" >/dev/null 2>&1; do
        [ $SECONDS -ge $end ] && return 1
        sleep 0.2
    done
}

# ---- master (retried with new ports if a port was taken meanwhile)
STATE=$WORK/master
for attempt in 1 2 3; do
    read -r AGENT_PORT HTTP_PORT < <(free_ports)
    "$BIN" --master --listen "127.0.0.1:$AGENT_PORT" --http "127.0.0.1:$HTTP_PORT" \
        --state-dir "$STATE" --heartbeat 1 >"$WORK/master.log" 2>&1 &
    MASTER_PID=$!
    if wait_for 10 "master" curl -sf --max-time 1 "http://127.0.0.1:$HTTP_PORT/healthz"; then break; fi
    kill "$MASTER_PID" 2>/dev/null; wait "$MASTER_PID" 2>/dev/null; MASTER_PID=
    [ $attempt = 3 ] && { show_logs; die "the master did not start (see its log above)"; }
done
TOKEN=$(cat "$STATE/api.token") || die "no $STATE/api.token"
[ -f "$STATE/fleet.key" ] || die "the master made no $STATE/fleet.key"
pass "master serves http://127.0.0.1:$HTTP_PORT/ (agents on port $AGENT_PORT)"

# ---- agents: dash-1 is the one under test; dash-2 has an HTML group name;
# dash-3 reports, then stops: a real offline agent for the problems view
# and the forget button
UUID=dash-1
EVIL_UUID=dash-2
GONE_UUID=dash-3
EVIL_GROUP='<img src=x onerror=window.__xss=1>&amp;"lab"'
PUSHED=$WORK/pushed
mkdir -p "$WORK/agent" "$WORK/evil"
"$BIN" --agent "127.0.0.1:$AGENT_PORT" --key-file "$STATE/fleet.key" --uuid "$UUID" --group lab \
    --interval 1 --state-dir "$WORK/agent" --on-push "cat > '$PUSHED'; echo hook got \$(wc -c < '$PUSHED') bytes" \
    >"$WORK/agent.log" 2>&1 &
AGENT_PID=$!
"$BIN" --agent "127.0.0.1:$AGENT_PORT" --key-file "$STATE/fleet.key" --uuid "$EVIL_UUID" --group "$EVIL_GROUP" \
    --interval 2 --state-dir "$WORK/evil" >"$WORK/evil.log" 2>&1 &
EVIL_PID=$!
mkdir -p "$WORK/gone"
"$BIN" --agent "127.0.0.1:$AGENT_PORT" --key-file "$STATE/fleet.key" --uuid "$GONE_UUID" --group gone \
    --interval 1 --state-dir "$WORK/gone" >"$WORK/gone.log" 2>&1 &
GONE_PID=$!
api_status() { curl -sf --max-time 1 -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$HTTP_PORT/api/status"; }
agents_online() { api_status | grep -q "\"online\":$1"; }
wait_for 15 "agents" agents_online 3 || { show_logs; die "the agents did not come online within 15 s"; }
# A custom metric for the detail panel, through the agent's local socket
"$BIN" report --state-dir "$WORK/agent" dash_test_metric=42 >"$WORK/report.log" 2>&1 ||
    { cat "$WORK/report.log"; die "edge-gw report failed"; }
kill -TERM "$GONE_PID"
wait "$GONE_PID" 2>/dev/null
GONE_PID=
wait_for 10 "dash-3 offline" agents_online 2 || { show_logs; die "$GONE_UUID did not go offline"; }
pass "agents $UUID and $EVIL_UUID are online, $GONE_UUID went offline"

# ---- the browser test
PUSH_TEXT="hello from the dashboard test $$-$RANDOM: <b>bold</b> & \"quotes\" ünïcode"
say "# browser test (playwright-core $(node -p "require('$HERE/node_modules/playwright-core/package.json').version" 2>/dev/null), $("$CHROMIUM" --version 2>/dev/null | head -n 1))"
BASE_URL="http://127.0.0.1:$HTTP_PORT" API_TOKEN=$TOKEN AGENT_UUID=$UUID EVIL_UUID=$EVIL_UUID GONE_UUID=$GONE_UUID \
    EVIL_GROUP=$EVIL_GROUP PUSH_TEXT=$PUSH_TEXT SCREENSHOT=$HERE/screenshot.png CHROMIUM=$CHROMIUM \
    TMPDIR=$WORK setsid node "$HERE/dashboard.test.mjs" >"$WORK/node.log" 2>&1 &
NODE_PID=$!
wait "$NODE_PID"
node_rc=$?
NODE_PID=
cat "$WORK/node.log"
count_node
if [ "$node_rc" -ne 0 ] && ! grep -q '^not ok ' "$WORK/node.log"; then
    fail "the browser test exited with status $node_rc"
fi

# ---- the push typed into the page must reach the agent's hook unchanged
if grep -q '^ok - push form' "$WORK/node.log"; then
    if wait_for 5 "hook" test -f "$PUSHED" && sleep 0.3 && [ "$(cat "$PUSHED"; echo x)" = "${PUSH_TEXT}x" ]; then
        pass "the agent's on-push hook got exactly the text typed into the page"
    else
        fail "the agent's on-push hook got $(cat "$PUSHED" 2>/dev/null | head -c 300 | od -c | head -n 5 || echo nothing), expected: $PUSH_TEXT"
    fi
else
    fail "no push to check: the push step failed"
fi
[ -f "$HERE/screenshot.png" ] && say "# screenshots: $HERE/screenshot.png, $HERE/screenshot-narrow.png, $HERE/screenshot-fleet.png"
[ "$failed" -eq 0 ] || show_logs
say "# took $SECONDS s"
finish
