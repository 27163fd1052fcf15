#!/bin/sh
# edge-gw --on-push hook that runs only whitelisted commands.
#
# A push's body is a command NAME (one line, e.g. "uptime"); this hook runs
# the command the device owner listed for that name, and nothing else.
# The pushed text is never given to a shell, never word-split into
# arguments, never used in a path: the master (or whoever holds its API
# token) can choose *which* of the listed commands runs, not *what* runs.
#
# Install:  edge-gw --agent HOST:PORT --on-push /etc/edge-gw/on-push-whitelist.sh
# Use:      edge-gw push --to router-7 --wait 30s uptime
#
# For a push that wants a result (EDGE_GW_PUSH_WANTS_RESULT=1) the hook's
# exit status and stdout (stderr after a marker line) are the answer the
# operator reads. Exit 75 (EX_TEMPFAIL) means "not now, send it again
# later"; every other status is an answer. For a push that wants no
# result, exit 0 means delivered and anything else means "send it again".
#
# Keep the list short, read-only where you can, and owned by root
# (chmod 755, not writable by the agent's user).

set -u

# Read the name: the first line of the body, at most 64 bytes.
name=$(head -c 64 | head -n 1)

case "$name" in
    uptime)        exec uptime ;;
    syslog)        exec logread -l 50 ;;                 # OpenWrt: last 50 lines
    upgradable)    exec opkg list-upgradable ;;
    wifi-status)   exec ubus call network.wireless status ;;
    disk)          exec df -h ;;
    *)
        echo "not whitelisted: $name" >&2
        # An answer, not a retry: sending it again would not help.
        exit 64 # EX_USAGE
        ;;
esac
