#!/usr/bin/env bash
# Builds every fuzz target once, then runs each for SECONDS (default 30).
# Prints one line per target; exits non-zero if any target crashed (the
# crashing input is in fuzz/artifacts/<target>/) or the build failed.
#
#   fuzz/run-all.sh            # 30 s per target
#   fuzz/run-all.sh 300        # a longer soak
#
# Needs a nightly toolchain and cargo-fuzz (cargo install cargo-fuzz --locked).
set -u -o pipefail

secs="${1:-30}"
case "$secs" in
    '' | *[!0-9]*) echo "usage: $0 [SECONDS]" >&2; exit 2 ;;
esac
cd "$(dirname "$0")" || exit 2

if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
    echo "cargo-fuzz for nightly not found: rustup toolchain install nightly && cargo install cargo-fuzz --locked" >&2
    exit 2
fi

logs=target/run-all-logs
mkdir -p "$logs"
# The same flags as `fuzz run` uses, so the runs below do not rebuild.
if ! cargo +nightly fuzz build >"$logs/build.log" 2>&1; then
    echo "BUILD FAILED (see fuzz/$logs/build.log)"
    tail -n 30 "$logs/build.log" >&2
    exit 2
fi

status=0
for target in $(cargo +nightly fuzz list); do
    log="$logs/$target.log"
    mkdir -p "corpus/$target"
    # -rss_limit_mb also caps any single allocation (malloc_limit_mb defaults
    # to it); -timeout turns a hang into a reported crash.
    if cargo +nightly fuzz run "$target" -- \
        -max_total_time="$secs" -rss_limit_mb=2048 -timeout=30 -print_final_stats=1 \
        >"$log" 2>&1; then
        runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
        rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -n 1)
        cov=$(grep -o 'cov: [0-9]*' "$log" | tail -n 1 | cut -d' ' -f2)
        corpus=$(find "corpus/$target" -type f | wc -l)
        printf 'ok     %-18s %6ss %10s runs %8s exec/s  cov %-6s corpus %s\n' \
            "$target" "$secs" "${runs:-?}" "${rate:-?}" "${cov:-?}" "$corpus"
    else
        artifact=$(sed -n 's/.*Test unit written to \([^ ]*\).*/\1/p' "$log" | tail -n 1)
        # The panic message is on the line after "panicked at <file:line>".
        reason=$(grep -m 1 -A 1 -E "panicked at|ERROR: (AddressSanitizer|libFuzzer)" "$log" |
            sed 's/^thread .* panicked at /at /' | tr '\n' ' ' | cut -c 1-240)
        printf 'CRASH  %-18s input %s  %s  (log: fuzz/%s)\n' \
            "$target" "${artifact:-?}" "${reason:-see log}" "$log"
        status=1
    fi
done
exit "$status"
