#!/bin/sh
# Installs edge-gw and its systemd units on a systemd host.
#
#   board/systemd/install.sh master|agent|both BINARY
#
# BINARY: the built edge-gw (target/release/edge-gw, or a cross build such as
# target/x86_64-unknown-linux-musl/release/edge-gw). It goes to
# /usr/bin/edge-gw; the units to /etc/systemd/system/ (master:
# edge-gw-master.service and the template edge-gw-master@.service; agent:
# edge-gw-agent.service, and /etc/default/edge-gw-agent if there is none).
# Then `systemctl daemon-reload`. Nothing is enabled or started: the script
# prints what to do next.
#
# DESTDIR=DIR installs under DIR instead (for packages and tests) and skips
# daemon-reload. Run as root otherwise. Re-running it upgrades the binary
# and units and keeps /etc/default/edge-gw-agent and every key and state.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
usage() {
    echo "usage: $0 master|agent|both BINARY  (DESTDIR=DIR to install under DIR)" >&2
    exit 2
}
[ $# -eq 2 ] || usage
role=$1
bin=$2
case "$role" in master | agent | both) ;; *) usage ;; esac
[ -f "$bin" ] && [ -x "$bin" ] || {
    echo "$0: $bin is not an executable file (build it: cargo build --release)" >&2
    exit 1
}
# A binary for another CPU would fail only at start, as "Exec format error".
"$bin" --version >/dev/null 2>&1 || {
    echo "$0: $bin --version failed: is it built for this machine?" >&2
    exit 1
}

root=${DESTDIR:-}
units="$root/etc/systemd/system"
install -d -m 0755 "$root/usr/bin" "$units"
install -m 0755 "$bin" "$root/usr/bin/edge-gw"
echo "installed $root/usr/bin/edge-gw ($("$root/usr/bin/edge-gw" --version | head -n 1))"

if [ "$role" != agent ]; then
    install -m 0644 "$here/edge-gw-master.service" "$here/edge-gw-master@.service" "$units/"
    echo "installed $units/edge-gw-master.service, edge-gw-master@.service"
fi
if [ "$role" != master ]; then
    install -m 0644 "$here/edge-gw-agent.service" "$units/"
    echo "installed $units/edge-gw-agent.service"
    install -d -m 0755 "$root/etc/default"
    # The key lives here, root-only; the unit hands the service a copy.
    install -d -m 0700 "$root/etc/edge-gw"
    if [ ! -e "$root/etc/default/edge-gw-agent" ]; then
        cat >"$root/etc/default/edge-gw-agent" <<'EOF'
# edge-gw agent settings (see /etc/systemd/system/edge-gw-agent.service).
# The master's agent address, HOST:PORT (required):
EDGE_GW_MASTER=
# More flags, e.g. --group lab --interval 10 --on-push /usr/local/libexec/on-push
EDGE_GW_AGENT_ARGS=
EOF
        chmod 0644 "$root/etc/default/edge-gw-agent"
        echo "wrote $root/etc/default/edge-gw-agent: set EDGE_GW_MASTER in it"
    fi
fi

if [ -n "$root" ]; then
    echo "DESTDIR set: not running systemctl daemon-reload"
elif [ -d /run/systemd/system ]; then
    systemctl daemon-reload
    echo "systemctl daemon-reload: done"
else
    echo "systemd is not running here: run systemctl daemon-reload on the target"
fi

echo "next:"
if [ "$role" != agent ]; then
    echo "  systemctl enable --now edge-gw-master    # or edge-gw-master@NAME with /etc/edge-gw/master-NAME.toml"
fi
if [ "$role" != master ]; then
    echo "  install -m 0600 agent.key /etc/edge-gw/agent.key   # from edge-gw keygen on the master"
    echo "  edit /etc/default/edge-gw-agent, then: systemctl enable --now edge-gw-agent"
fi
