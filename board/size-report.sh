#!/usr/bin/env bash
# Where the bytes of a router build go: builds TARGET unstripped (same flags
# as board/build.sh, own target dir target/cross/TARGET-nostrip) and prints
# the code+data size per crate and the largest symbols.
#
#   board/size-report.sh [TARGET] [TOP]      default mipsel-unknown-linux-musl, 40
#
# Symbol sizes come from llvm-nm (installed with Debian's rustc-web);
# sizes are before `strip`, which removes only the symbol tables.
set -euo pipefail
cd "$(dirname "$0")/.."
target=${1:-mipsel-unknown-linux-musl}
top=${2:-40}
EDGE_GW_BOARD_VARIANT=nostrip board/build.sh "$target" --no-install >&2
bin=target/cross/$target-nostrip/$target/release/edge-gw
nm=$(command -v llvm-nm || command -v llvm-nm-22 || true)
[ -n "$nm" ] || { echo "no llvm-nm: apt-get install llvm" >&2; exit 1; }

echo "== $target: $(stat -c %s "$bin") bytes unstripped, $(stat -c %s "target/cross/out/edge-gw-$target" 2>/dev/null || echo '?') stripped"
echo "== sections (bytes)"
"${nm%nm*}size" -A "$bin" 2>/dev/null | awk 'NR > 2 && $2 > 4096 { printf "  %-22s %9d\n", $1, $2 }' ||
  size -A "$bin" | awk 'NR > 2 && $2 > 4096 { printf "  %-22s %9d\n", $1, $2 }'

# "size type name" for every sized symbol, demangled.
syms=$(mktemp)
trap 'rm -f "$syms"' EXIT
"$nm" --print-size --size-sort --radix=d --demangle "$bin" |
  awk '{ size = $2 + 0; type = $3; $1 = $2 = $3 = ""; sub(/^ +/, ""); print size "\t" type "\t" $0 }' > "$syms"

echo "== per crate (first path segment of the demangled name; C and musl symbols as 'C')"
awk -F'\t' '
  {
    name = $3
    sub(/^<+/, "", name)            # <impl Trait for crate::Type>::f
    crate = name
    if (crate ~ /::/) { sub(/::.*/, "", crate) } else { crate = "C (musl, compiler-rt)" }
    sub(/ .*/, "", crate)
    sum[crate] += $1; total += $1
  }
  END {
    for (c in sum) printf "%9d  %5.1f%%  %s\n", sum[c], 100 * sum[c] / total, c
    printf "%9d  total of sized symbols\n", total > "/dev/stderr"
  }' "$syms" | sort -rn | head -25

echo "== largest $top symbols"
sort -t$'\t' -k1,1 -rn "$syms" | head -"$top" | awk -F'\t' '{ printf "%8d %s %.110s\n", $1, $2, $3 }'
