#!/usr/bin/env bash
# Where the bytes of a router build go: sections, code+data per crate and the
# largest symbols, cargo-bloat style, from the unstripped binary that
# board/build.sh leaves in its target dir (it strips a copy).
#
#   board/size-report.sh [TARGET] [TOP] [--no-build]
#                 default mipsel-unknown-linux-musl, 40; EDGE_GW_BOARD_VARIANT
#                 selects a variant build as in board/build.sh
#
# Runs board/build.sh TARGET first (quick when it is up to date) unless
# --no-build. Symbol sizes come from llvm-nm (Debian's llvm); a symbol
# is attributed to the crate of the first path segment of its demangled
# name (so generic code is counted where it is defined, e.g. a
# Vec<edge_gw::T> method under alloc), names without one to C (musl,
# compiler-rt, zig's libunwind). The "by part" table groups the same
# symbols by what they are for (board/size-groups.awk).
set -euo pipefail
cd "$(dirname "$0")/.."
args=()
build=1
for a in "$@"; do
  case $a in --no-build) build=0 ;; *) args+=("$a") ;; esac
done
target=${args[0]:-mipsel-unknown-linux-musl}
top=${args[1]:-40}
variant=${EDGE_GW_BOARD_VARIANT:-}
suffix=${variant:+-${variant//,/-}}
[ $build = 0 ] || board/build.sh "$target" --no-install >&2 || [ -n "$variant" ]
bin=target/cross/$target$suffix/$target/release/edge-gw
stripped=target/cross/out/edge-gw-$target$suffix
[ -f "$bin" ] || { echo "no unstripped build at $bin" >&2; exit 1; }
nm=$(command -v llvm-nm || ls /usr/bin/llvm-nm-* 2>/dev/null | head -1 || true)
[ -n "$nm" ] || { echo "no llvm-nm: apt-get install llvm" >&2; exit 1; }
llvm_size=${nm/nm/size}

echo "== $target${variant:+ ($variant)}: $(stat -c %s "$bin") bytes unstripped, $(stat -c %s "$stripped" 2>/dev/null || echo '?') stripped"
echo "== sections over 4 KiB (bytes; .symtab/.strtab go with strip, .pdr with build.sh's objcopy)"
"$llvm_size" -A "$bin" | awk 'NR > 2 && $2 > 4096 { printf "  %-22s %9d\n", $1, $2 }'

# "size type name" for every sized symbol, demangled.
syms=$(mktemp)
trap 'rm -f "$syms"' EXIT
"$nm" --print-size --size-sort --radix=d --demangle "$bin" |
  awk '!seen[$1 " " $2]++ { size = $2 + 0; type = $3; $1 = $2 = $3 = ""; sub(/^ +/, ""); print size "\t" type "\t" $0 }' > "$syms"   # aliases (same address) once

echo "== per crate (first path segment of the demangled name; C and musl symbols as 'C')"
awk -F'\t' '
  $2 ~ /^[bB]$/ { next }            # .bss: takes no room in the file
  {
    name = $3
    if (name ~ /^[a-z_]+\*? +[a-zA-Z_]+::/) sub(/^[^ ]+ +/, "", name)   # C++: return type first
    sub(/^[<&*]+/, "", name)        # <impl Trait for crate::Type>::f, <&T as ...>
    sub(/^(mut |const )/, "", name)
    crate = name
    if (crate ~ /::/) { sub(/::.*/, "", crate) } else { crate = "C" }
    sub(/ .*/, "", crate)
    sub(/>.*/, "", crate)
    if (crate ~ /^(str|bool|char|u8|u16|u32|u64|u128|usize|i8|i16|i32|i64|i128|isize|f32|f64|\[.*|\(.*|dyn)$/) crate = "core"
    if (crate == "C") crate = "C (musl, zig libc, compiler-rt)"
    sum[crate] += $1; total += $1
  }
  END {
    for (c in sum) printf "%9d  %5.1f%%  %s\n", sum[c], 100 * sum[c] / total, c
  }' "$syms" | sort -rn | head -25
awk -F'\t' '$2 !~ /^[bB]$/ { t += $1 } END { printf "%9d  total of sized symbols in the file (.bss left out; the rest: string literals and constants without a symbol, padding, ELF tables)\n", t }' "$syms"

echo "== by part (board/size-groups.awk: each symbol once, in the first group that matches; the README's table)"
awk -f board/size-groups.awk "$syms"

echo "== largest $top symbols"
sort -t$'\t' -k1,1 -rn "$syms" | head -"$top" | awk -F'\t' '{ printf "%8d %s %.110s\n", $1, $2, $3 }'
