#!/usr/bin/env bash
# Router builds of edge-gw: agent only, static musl, size-optimised.
#
#   board/build.sh TARGET...|all [--update-sizes] [--no-install] [--probe]
#
# Targets: mipsel-unknown-linux-musl mips-unknown-linux-musl
#          armv7-unknown-linux-musleabihf aarch64-unknown-linux-musl
#          x86_64-unknown-linux-musl             ("all" = these five)
#
# On a fresh Debian 12 machine (as root) it installs what it needs:
#   apt: rustc-web cargo-web rust-web-src (1.96: /usr/bin/rustc, /usr/bin/cargo
#        and the std source that -Zbuild-std compiles), qemu-user-static, file,
#        binutils, python3-venv, and llvm if no llvm-objcopy is there (to drop
#        MIPS's .pdr section). Never `dpkg --add-architecture`: nothing here
#        needs a foreign-architecture package.
#   pip: ziglang + cargo-zigbuild in a venv this script owns (the musl C
#        runtime and the linker for every target).
# Then, per target, with /usr/bin's cargo/rustc (not rustup's), RUSTC_BOOTSTRAP=1
# and -Zbuild-std=std,panic_abort, it builds
#   cargo zigbuild --release --no-default-features --features agent
# with the flags of board/cargo-config.toml, into its own target dir,
# target/cross/TARGET, so the host build is never touched. For
# mips-unknown-linux-musl only, the locked rustix is unpacked from cargo's
# registry cache and patched (board/patch-rustix.sh: the big-endian timespec
# fix, board/patches/README.md) and the build gets a `--config` [patch] for
# it. The repo's Cargo.lock is never written: the build resolves against a
# copy of it (cargo's resolver.lockfile-path).
#
# Output: target/cross/out/edge-gw-TARGET ($EDGE_GW_BOARD_OUT), checked with
# `file` to be statically linked, and a size table. The build fails if a
# binary is more than 10% larger than its figure in board/sizes.txt;
# --update-sizes writes the new figures there instead.
#
# --probe also builds board/timer-probe (same flags, same rustix) and runs it
# under qemu-user: it checks rustix's timespec layout on the target (timerfd
# with a sub-second value, a 2040 absolute timer, nanosleep, async-io Timer).
#
# Environment:
#   EDGE_GW_BOARD_HOME   tools and caches (venv, zig cache, lockfiles);
#                        default target/cross
#   EDGE_GW_BOARD_OUT    where the binaries go; default target/cross/out
#   EDGE_GW_BOARD_VARIANT  comma-separated variants; a variant builds into
#                        target/cross/TARGET-VARIANT and out/edge-gw-TARGET-VARIANT
#                        and skips the size check:
#                          panic-messages     the debugging build: panics print their
#                                             message and location (no immediate-abort,
#                                             locations and Debug output kept)
#                          base               none of the size flags below (SMALL_RUSTFLAGS):
#                                             the build as it was before them
#                          immediate-abort    -Cpanic=immediate-abort  } each adds one
#                          location-none      -Zlocation-detail=none   } size flag, for
#                          fmt-debug-none     -Zfmt-debug=none         } measuring one
#                          fmt-debug-shallow  -Zfmt-debug=shallow      } at a time
#                          no-uwtables        -Cforce-unwind-tables=no } after "base"
#                          opt-s, opt-z, opt-2, ...  another opt-level
#                          std-backtrace      std with its default features
#                                             (backtrace printing, unwinding)
#                          no-libc-shim       musl's own pthread_setname_np
#                                             (board/libc-shim/)
#                        The unstripped binary stays in target/cross/TARGET*/TARGET/
#                        release/edge-gw for board/size-report.sh.
#   EDGE_GW_BOARD_JOBS   cargo -j; default: all cores
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

ALL_TARGETS=(mipsel-unknown-linux-musl mips-unknown-linux-musl
  armv7-unknown-linux-musleabihf aarch64-unknown-linux-musl x86_64-unknown-linux-musl)
# Targets built with the patched rustix (32-bit big-endian musl on rustix's
# libc backend: board/patches/README.md). The others use it as locked.
RUSTIX_PATCH_TARGETS=" mips-unknown-linux-musl "
HOME_DIR=${EDGE_GW_BOARD_HOME:-$ROOT/target/cross}
OUT=${EDGE_GW_BOARD_OUT:-$ROOT/target/cross/out}
SIZES=$ROOT/board/sizes.txt
CONFIG=$ROOT/board/cargo-config.toml
VARIANT=${EDGE_GW_BOARD_VARIANT:-}
# std is built without its default "backtrace" and "panic-unwind" features:
# a stripped binary cannot symbolize a backtrace anyway, and panic=abort
# never unwinds. Panic messages are kept. optimize_for_size picks std's
# smaller algorithm variants.
STD_FEATURES=optimize_for_size
# The size flags of the default router build (measured one by one in
# board/README.md, "Sizes"). They apply to std too (-Zbuild-std).
#   -Cpanic=immediate-abort  a panic is a bare trap (SIGILL/SIGTRAP, procd
#                            logs the crash and respawns): no message, no
#                            location, no formatting machinery behind it
#   -Zlocation-detail=none   no file:line:col strings for #[track_caller]
#   -Zfmt-debug=shallow      #[derive(Debug)] prints only the type or variant
#                            name; hand-written Debug (strings: the agent's
#                            two `{:?}` messages) and Display are untouched
#                            ("none" would print those two as empty)
#   -Cforce-unwind-tables=no no .eh_frame for Rust code: nothing unwinds
# EDGE_GW_BOARD_VARIANT=panic-messages builds without the first three, for
# debugging (PANIC_RUSTFLAGS).
SMALL_RUSTFLAGS=(-Zunstable-options -Cpanic=immediate-abort -Zlocation-detail=none
  -Zfmt-debug=shallow -Cforce-unwind-tables=no)
PANIC_RUSTFLAGS=(-Zunstable-options -Cpanic=immediate-abort -Zlocation-detail=none -Zfmt-debug=shallow)
# Linked into every router build ahead of libc.a, so musl's own is not
# pulled in: a pthread_setname_np without snprintf (board/libc-shim/, why
# there). zig cc compiles the .c itself, with the target's own flags.
# EDGE_GW_BOARD_VARIANT=no-libc-shim leaves it out.
LIBC_SHIM_RUSTFLAGS=(-Clink-arg=$ROOT/board/libc-shim/pthread_setname_np.c)
ZIGLANG_VERSION=${EDGE_GW_ZIGLANG_VERSION:-0.17.1}
ZIGBUILD_VERSION=${EDGE_GW_ZIGBUILD_VERSION:-0.24.0}
# Growth allowed over board/sizes.txt, in percent.
SIZE_SLACK=10

usage() {
  sed -n '2,60p' "$0" | sed 's/^# \{0,1\}//'
  exit 2
}

targets=()
update_sizes=0
install=1
probe=0
for a in "$@"; do
  case $a in
    all) targets+=("${ALL_TARGETS[@]}") ;;
    --update-sizes) update_sizes=1 ;;
    --no-install) install=0 ;;
    --probe) probe=1 ;;
    -h|--help) usage ;;
    -*) echo "unknown option $a" >&2; usage ;;
    *)
      known=0
      for t in "${ALL_TARGETS[@]}"; do [ "$t" = "$a" ] && known=1; done
      [ $known = 1 ] || { echo "unknown target $a (known: ${ALL_TARGETS[*]})" >&2; exit 2; }
      targets+=("$a")
      ;;
  esac
done
[ ${#targets[@]} -gt 0 ] || usage

t_start=$SECONDS
say() { printf '\n=== [board %4ds] %s\n' "$((SECONDS - t_start))" "$*"; }

# --- 1. Debian packages ----------------------------------------------------
APT_PKGS=(rustc-web cargo-web rust-web-src qemu-user-static file binutils python3-venv
  ca-certificates patch)
find_objcopy() { # llvm-objcopy of any version handles every target
  command -v llvm-objcopy || command -v llvm-objcopy-22 || command -v llvm-objcopy-14 || true
}
if [ $install = 1 ]; then
  missing=()
  for p in "${APT_PKGS[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [ -n "$(find_objcopy)" ] || missing+=(llvm)
  if [ ${#missing[@]} -gt 0 ]; then
    say "apt-get install ${missing[*]}"
    [ "$(id -u)" = 0 ] || { echo "installing packages needs root (or install them: ${missing[*]})" >&2; exit 1; }
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    apt-get install -y -q --no-install-recommends "${missing[@]}"
  fi
fi
OBJCOPY=$(find_objcopy)
[ -n "$OBJCOPY" ] || { echo "no llvm-objcopy: apt-get install llvm" >&2; exit 1; }
for f in /usr/bin/cargo /usr/bin/rustc /usr/lib/rustlib/src/rust/library/Cargo.lock; do
  [ -e "$f" ] || { echo "missing $f: install rustc-web cargo-web rust-web-src" >&2; exit 1; }
done

# --- 2. zig and cargo-zigbuild in our own venv ---------------------------
VENV=$HOME_DIR/venv
if [ ! -x "$VENV/bin/cargo-zigbuild" ] || [ ! -x "$VENV/bin/python" ] ||
   ! "$VENV/bin/python" -c 'import ziglang' 2>/dev/null; then
  [ $install = 1 ] || { echo "no zig venv at $VENV (run without --no-install)" >&2; exit 1; }
  say "pip install ziglang==$ZIGLANG_VERSION cargo-zigbuild==$ZIGBUILD_VERSION into $VENV"
  rm -rf "$VENV"
  mkdir -p "$HOME_DIR"
  /usr/bin/python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check \
    "ziglang==$ZIGLANG_VERSION" "cargo-zigbuild==$ZIGBUILD_VERSION"
fi
ZIG=$("$VENV/bin/python" -c 'import ziglang, os; print(os.path.join(os.path.dirname(ziglang.__file__), "zig"))')
[ -x "$ZIG" ] || { echo "zig not found in $VENV" >&2; exit 1; }

# --- 3. the build environment ---------------------------------------------
# Debian's toolchain first (it has no rustup proxy, so no toolchain file or
# RUSTUP_TOOLCHAIN can swap it), then the venv (cargo-zigbuild).
export PATH=/usr/bin:$VENV/bin:$PATH
export RUSTC_BOOTSTRAP=1                 # -Zbuild-std, -Zlockfile-path on a stable toolchain
export CARGO_ZIGBUILD_ZIG_PATH=$ZIG
export ZIG_GLOBAL_CACHE_DIR=$HOME_DIR/zig-cache
export CARGO_TERM_COLOR=${CARGO_TERM_COLOR:-never}
export CARGO_INCREMENTAL=0
# Anything that would override or leak into board/cargo-config.toml's flags.
unset RUSTFLAGS CARGO_ENCODED_RUSTFLAGS CARGO_BUILD_RUSTFLAGS CARGO_TARGET_DIR \
  CARGO_BUILD_TARGET RUSTC RUSTC_WRAPPER RUSTC_WORKSPACE_WRAPPER RUSTUP_TOOLCHAIN \
  CARGO_PROFILE_RELEASE_OPT_LEVEL 2>/dev/null || true
mkdir -p "$ZIG_GLOBAL_CACHE_DIR" "$OUT"
RUSTC_VERSION=$(rustc --version)
echo "toolchain: $RUSTC_VERSION; $(cargo --version); zig $("$ZIG" version); $(cargo-zigbuild --version 2>/dev/null || echo cargo-zigbuild)"

recorded_size() { # TARGET -> bytes recorded in board/sizes.txt, or empty
  if [ -f "$SIZES" ]; then awk -v t="$1" '$1 == t { v = $2 } END { if (v != "") print v }' "$SIZES"; fi
}

qemu_for() {
  case $1 in
    mipsel-*) echo qemu-mipsel-static ;;
    mips-*) echo qemu-mips-static ;;
    armv7-*) echo qemu-arm-static ;;
    aarch64-*) echo qemu-aarch64-static ;;
    *) echo "" ;;   # x86_64: runs natively
  esac
}

declare -A SIZE TIME PROBE
failed=0
# The config entries that go into TARGET's build (its rustflags and [env]).
config_of() {
  python3 -c 'import json, sys, tomllib
c = tomllib.load(open(sys.argv[1], "rb"))
print(json.dumps([c.get("target", {}).get(sys.argv[2]), c.get("env")], sort_keys=True))' "$CONFIG" "$1"
}

for target in "${targets[@]}"; do
  suffix=
  # Stripped below with llvm-objcopy, so that the unstripped binary stays
  # for board/size-report.sh without a second build.
  extra_args=(--config profile.release.strip=false)
  std_features=$STD_FEATURES
  rustflags=("${SMALL_RUSTFLAGS[@]}")
  shim=1
  if [ -n "$VARIANT" ]; then
    suffix=-${VARIANT//,/-}
    IFS=, read -r -a vs <<< "$VARIANT"
    for v in "${vs[@]}"; do
      case $v in
        opt-[0-3]) extra_args+=(--config "profile.release.opt-level=${v#opt-}") ;;
        opt-[sz]) extra_args+=(--config "profile.release.opt-level=\"${v#opt-}\"") ;;
        base) rustflags=() ;;
        panic-messages)
          keep=()
          for f in "${rustflags[@]}"; do
            [[ " ${PANIC_RUSTFLAGS[*]} " == *" $f "* ]] || keep+=("$f")
          done
          rustflags=("${keep[@]}") ;;
        immediate-abort) rustflags+=(-Zunstable-options -Cpanic=immediate-abort) ;;
        location-none) rustflags+=(-Zlocation-detail=none) ;;
        fmt-debug-none) rustflags+=(-Zfmt-debug=none) ;;
        fmt-debug-shallow) rustflags+=(-Zfmt-debug=shallow) ;;
        no-uwtables) rustflags+=(-Cforce-unwind-tables=no) ;;
        std-backtrace) std_features=backtrace,panic-unwind ;;
        no-libc-shim) shim=0 ;;
        *) echo "unknown variant $v" >&2; exit 2 ;;
      esac
    done
  fi
  [ $shim = 0 ] || rustflags+=("${LIBC_SHIM_RUSTFLAGS[@]}")
  if [ ${#rustflags[@]} -gt 0 ]; then
    # Added to board/cargo-config.toml's rustflags for this target (cargo
    # joins the arrays).
    extra_args+=(--config "target.$target.rustflags=$(python3 -c 'import json, sys; print(json.dumps(sys.argv[1:]))' "${rustflags[@]}")")
  fi
  tdir=$HOME_DIR/$target$suffix
  if [[ $RUSTIX_PATCH_TARGETS == *" $target "* ]]; then
    # Fails loudly (and so does this script) if the patch no longer applies.
    rustix_dir=$(CARGO=cargo "$ROOT/board/patch-rustix.sh" "$HOME_DIR/rustix-patched")
    extra_args+=(--config "patch.crates-io.rustix.path=\"$rustix_dir\"")
  fi
  # A target dir per target and flag set: the libc crates' build scripts do
  # not re-run when their environment changes, so any change of this
  # target's flags or of the toolchain starts from a clean directory.
  stamp=$( { config_of "$target"; echo "$RUSTC_VERSION ${extra_args[*]} $std_features"; } | sha256sum | cut -c1-16)
  if [ -d "$tdir" ] && [ "$(cat "$tdir/.board-stamp" 2>/dev/null)" != "$stamp" ]; then
    say "$target: flags or toolchain changed: cleaning $tdir"
    rm -rf "$tdir"
  fi
  mkdir -p "$tdir"
  echo "$stamp" > "$tdir/.board-stamp"
  # Resolve against a copy of the repo's lockfile: the rustix [patch] (mips)
  # would otherwise rewrite Cargo.lock for everyone, and a build never should.
  cp "$ROOT/Cargo.lock" "$tdir/Cargo.lock"

  say "$target: cargo zigbuild"
  t0=$SECONDS
  jobs=()
  [ -n "${EDGE_GW_BOARD_JOBS:-}" ] && jobs=(-j "$EDGE_GW_BOARD_JOBS")
  if ! cargo zigbuild --config "$CONFIG" \
      -Zlockfile-path --config "resolver.lockfile-path=\"$tdir/Cargo.lock\"" \
      "${extra_args[@]}" \
      -Zbuild-std=std,panic_abort -Zbuild-std-features="$std_features" \
      --target "$target" --release --no-default-features --features agent \
      --target-dir "$tdir" "${jobs[@]}"; then
    echo "BUILD FAILED: $target" >&2
    failed=1
    continue
  fi
  TIME[$target]=$((SECONDS - t0))
  bin=$tdir/$target/release/edge-gw
  dest=$OUT/edge-gw-$target$suffix
  # --strip-all: the symbol tables (the profile's strip=true, done here so
  # the unstripped binary stays). `.pdr` (MIPS procedure descriptors, ~110
  # KiB) is debugger metadata that the linker keeps even with --strip-all;
  # OpenWrt's own strip removes it too. Nothing loads it. `.comment` is the
  # toolchain's version strings.
  "$OBJCOPY" --strip-all --remove-section=.pdr --remove-section=.comment "$bin" "$dest.tmp"
  chmod 0755 "$dest.tmp" && mv "$dest.tmp" "$dest"
  desc=$(file -b "$dest")
  echo "$dest: $desc"
  case $desc in
    *"statically linked"*) ;;
    *) echo "NOT STATICALLY LINKED: $target: $desc" >&2; failed=1 ;;
  esac
  SIZE[$target]=$(stat -c %s "$dest")

  if [ $probe = 1 ]; then
    say "$target: timer probe"
    mkdir -p "$tdir/probe-lock"
    cp "$ROOT/Cargo.lock" "$tdir/probe-lock/Cargo.lock"
    if cargo zigbuild --config "$CONFIG" --manifest-path "$ROOT/board/timer-probe/Cargo.toml" \
        -Zlockfile-path --config "resolver.lockfile-path=\"$tdir/probe-lock/Cargo.lock\"" \
        "${extra_args[@]}" -Zbuild-std=std,panic_abort -Zbuild-std-features="$std_features" \
        --target "$target" --release --target-dir "$tdir" "${jobs[@]}"; then
      "$OBJCOPY" --strip-all "$tdir/$target/release/edge-gw-timer-probe" "$OUT/timer-probe-$target$suffix"
      q=$(qemu_for "$target")
      if timeout 60 $q "$OUT/timer-probe-$target$suffix"; then
        PROBE[$target]=ok
      else
        PROBE[$target]=FAILED; failed=1
      fi
    else
      PROBE[$target]="build failed"; failed=1
    fi
  fi
done

# --- 4. sizes ----------------------------------------------------------------
say "sizes (agent only${VARIANT:+, variant $VARIANT})"
printf '%-34s %10s %9s %10s %7s %6s\n' target bytes KiB recorded change build
for target in "${targets[@]}"; do
  [ -n "${SIZE[$target]:-}" ] || { printf '%-34s %10s\n' "$target" "(failed)"; continue; }
  s=${SIZE[$target]}
  r=$(recorded_size "$target")
  change=-
  if [ -n "$r" ] && [ "$r" -gt 0 ]; then
    change=$(awk -v s="$s" -v r="$r" 'BEGIN { printf "%+.1f%%", (s - r) * 100 / r }')
  fi
  printf '%-34s %10d %9.1f %10s %7s %5ss\n' "$target" "$s" "$(awk -v s="$s" 'BEGIN{print s/1024}')" \
    "${r:--}" "$change" "${TIME[$target]}"
  if [ -z "$VARIANT" ] && [ $update_sizes = 0 ] && [ -n "$r" ] &&
     [ "$s" -gt $((r + r * SIZE_SLACK / 100)) ]; then
    echo "SIZE BUDGET EXCEEDED: $target is $s bytes, more than ${SIZE_SLACK}% over the recorded $r (board/sizes.txt)" >&2
    failed=1
  fi
done

if [ $update_sizes = 1 ] && [ -z "$VARIANT" ]; then
  tmp=$(mktemp)
  {
    echo "# Stripped sizes in bytes of the agent-only static router builds (board/build.sh)."
    echo "# board/build.sh fails when a build is more than ${SIZE_SLACK}% larger than its line here."
    echo "# Update with: board/build.sh all --update-sizes   (toolchain: $RUSTC_VERSION)"
    for t in "${ALL_TARGETS[@]}"; do
      if [ -n "${SIZE[$t]:-}" ]; then echo "$t ${SIZE[$t]}"
      else r=$(recorded_size "$t"); [ -n "$r" ] && echo "$t $r"; fi
    done
  } > "$tmp"
  mv "$tmp" "$SIZES"
  echo "wrote $SIZES"
fi

if [ $probe = 1 ]; then
  for target in "${targets[@]}"; do echo "timer probe $target: ${PROBE[$target]:-not run}"; done
fi

say "done"
exit $failed
