#!/usr/bin/env bash
# The big-endian MIPS timer fix, applied at build time (nothing vendored).
#
#   board/patch-rustix.sh [DIR]          DIR default: target/rustix-patched
#
# Takes the rustix version that Cargo.lock pins, unpacks its .crate from
# cargo's registry cache (`cargo fetch --locked` first if it is not there),
# checks it against Cargo.lock's checksum, applies
# board/patches/rustix-*-musl32-be-timespec.patch with no fuzz, and prints the
# patched crate's directory (DIR/rustix-VERSION, relative if DIR is) on
# stdout. It fails loudly if the patch does not apply to that version: port
# the patch, or drop it if the new rustix has the fix
# (board/patches/README.md). An up-to-date patched copy is kept as it is (so
# cargo does not rebuild rustix every time).
#
# Use the result for 32-bit big-endian musl targets only (today
# mips-unknown-linux-musl; board/build.sh does this itself):
#
#   dir=$(board/patch-rustix.sh)
#   cargo build --config "patch.crates-io.rustix.path=\"$dir\"" --target mips-unknown-linux-musl ...
#   CROSS_CONFIG=cross.toml cross +nightly build --config "patch.crates-io.rustix.path=\"$dir\"" ...
#
# The [patch] makes cargo rewrite Cargo.lock (rustix without source and
# checksum); board/build.sh resolves against a copy of it, others should not
# commit that change.
#
# Environment: CARGO (default: cargo), CARGO_HOME (default: ~/.cargo).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
DIR=${1:-target/rustix-patched}
CARGO=${CARGO:-cargo}
REGISTRY=${CARGO_HOME:-$HOME/.cargo}/registry

die() { echo "board/patch-rustix.sh: $*" >&2; exit 1; }

shopt -s nullglob
patches=("$ROOT"/board/patches/rustix-*-musl32-be-timespec.patch)
shopt -u nullglob
[ ${#patches[@]} = 1 ] || die "expected exactly one board/patches/rustix-*-musl32-be-timespec.patch, found ${#patches[@]}"
PATCH=${patches[0]}
patch_for=$(basename "$PATCH" | sed 's/^rustix-\(.*\)-musl32-be-timespec\.patch$/\1/')

# rustix's version and checksum in Cargo.lock (the registry one: rustix 1.x).
read -r version checksum < <(awk '
  /^\[\[package\]\]/ { if (n == "rustix" && s ~ /^registry/ && v ~ /^1\./) print v, c; n = v = s = c = "" }
  /^name = /     { n = $3; gsub(/"/, "", n) }
  /^version = /  { v = $3; gsub(/"/, "", v) }
  /^source = /   { s = $3; gsub(/"/, "", s) }
  /^checksum = / { c = $3; gsub(/"/, "", c) }
  END { if (n == "rustix" && s ~ /^registry/ && v ~ /^1\./) print v, c }' "$ROOT/Cargo.lock") ||
  die "no registry rustix 1.x in Cargo.lock (is a [patch] committed there?)"
[ -n "${checksum:-}" ] || die "Cargo.lock has rustix $version without a checksum"
[ "$version" = "$patch_for" ] ||
  echo "board/patch-rustix.sh: note: Cargo.lock pins rustix $version, the patch was made for $patch_for; trying it" >&2

find_crate() {
  local f
  for f in "$REGISTRY"/cache/*/rustix-"$version".crate; do
    [ -f "$f" ] && [ "$(sha256sum "$f" | cut -d' ' -f1)" = "$checksum" ] && { echo "$f"; return 0; }
  done
  return 1
}
crate=$(find_crate) || {
  echo "board/patch-rustix.sh: rustix $version not in $REGISTRY/cache: cargo fetch --locked" >&2
  (cd "$ROOT" && "$CARGO" fetch --locked >&2) || die "cargo fetch failed"
  crate=$(find_crate) || die "rustix-$version.crate with checksum $checksum not found under $REGISTRY/cache"
}

case $DIR in /*) abs=$DIR ;; *) abs=$ROOT/$DIR ;; esac
dest=$abs/rustix-$version
stamp="$checksum $(sha256sum "$PATCH" | cut -d' ' -f1)"
if [ "$(cat "$dest/.edge-gw-patched" 2>/dev/null)" != "$stamp" ]; then
  rm -rf "$dest" "$dest.tmp"
  mkdir -p "$dest.tmp"
  tar -xzf "$crate" -C "$dest.tmp"
  [ -f "$dest.tmp/rustix-$version/Cargo.toml" ] || die "unexpected layout in $crate"
  if ! out=$(patch -d "$dest.tmp/rustix-$version" -p1 --forward --batch --fuzz=0 \
      --no-backup-if-mismatch -r - < "$PATCH" 2>&1); then
    printf '%s\n' "$out" >&2
    rm -rf "$dest.tmp"
    die "PATCH DOES NOT APPLY: $(basename "$PATCH") on rustix $version. Port it, or drop it if
rustix $version fixes 32-bit big-endian musl timespecs (board/patches/README.md)."
  fi
  mv "$dest.tmp/rustix-$version" "$dest"
  rmdir "$dest.tmp"
  echo "$stamp" > "$dest/.edge-gw-patched"
  echo "board/patch-rustix.sh: rustix $version + $(basename "$PATCH") in $dest" >&2
fi
case $DIR in /*) echo "$dest" ;; *) echo "$DIR/rustix-$version" ;; esac
