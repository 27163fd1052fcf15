# shellcheck shell=bash
# Sourced by mkipk.sh and mkapk.sh (bash): parses their common arguments and
# lays out the package's files in $data, the same tree the SDK's
# Package/edge-gw/install makes (Makefile, Makefile.prebuilt).
#
# Sets: here root target arch bin out pkg_version pkg_release data tmp
# and the metadata shared by both formats (pkg_license, pkg_maintainer,
# pkg_url, pkg_description, pkg_userid).
# (They are read by the scripts that source this file.)
# shellcheck disable=SC2034

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)

# The calling script's header comment.
usage() { sed -n '2,/^[^#]/s/^# \{0,1\}//p' "$0"; }

stage_parse() {
  target=${1:-}
  [ -n "$target" ] || { usage; exit 2; }
  shift
  arch='' bin='' out=$root/target/cross/out
  while [ $# -gt 0 ]; do
    case $1 in
      --arch|--bin|--out)
        [ $# -ge 2 ] || { echo "$1 needs a value" >&2; exit 2; }
        case $1 in --arch) arch=$2 ;; --bin) bin=$2 ;; --out) out=$2 ;; esac
        shift 2 ;;
      *) echo "unknown option $1" >&2; exit 2 ;;
    esac
  done
  if [ -z "$arch" ]; then
    case $target in
      mipsel-unknown-linux-musl) arch=mipsel_24kc ;;
      mips-unknown-linux-musl) arch=mips_24kc ;;
      armv7-unknown-linux-musleabihf) arch=arm_cortex-a7_neon-vfpv4 ;;
      aarch64-unknown-linux-musl) arch=aarch64_cortex-a53 ;;
      x86_64-unknown-linux-musl) arch=x86_64 ;;
      *) echo "unknown target $target: give --arch" >&2; exit 2 ;;
    esac
  fi
  bin=${bin:-$root/target/cross/out/edge-gw-$target}
  [ -f "$bin" ] || { echo "no binary $bin: run board/build.sh $target" >&2; exit 1; }
  pkg_version=$(sed -n 's/^version = "\(.*\)"/\1/p' "$root/Cargo.toml" | head -1)
  [ -n "$pkg_version" ] || { echo "no version in $root/Cargo.toml" >&2; exit 1; }
  # PKG_RELEASE of the Makefiles: the packaging's own revision.
  pkg_release=$(sed -n 's/^PKG_RELEASE:=//p' "$here/Makefile")
  [ -n "$pkg_release" ] || { echo "no PKG_RELEASE in $here/Makefile" >&2; exit 1; }
  pkg_license=$(sed -n 's/^PKG_LICENSE:=//p' "$here/Makefile")
  pkg_maintainer=$(sed -n 's/^PKG_MAINTAINER:=//p' "$here/Makefile")
  pkg_url=${EDGE_GW_URL:-}
  pkg_description="edge-gw monitoring agent (static binary, built for $target)"
  # USERID of the Makefiles: user:group, created by add_group_and_user.
  pkg_userid=edge-gw:edge-gw
}

# Lays out the installed files in $data (a fresh temporary directory, $tmp,
# removed on exit).
stage_data() {
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  data=$tmp/data
  install -d "$data/usr/bin" "$data/etc/init.d" "$data/etc/config" "$data/lib/upgrade/keep.d"
  install -d -m 0700 "$data/etc/edge-gw"
  install -m 0755 "$bin" "$data/usr/bin/edge-gw"
  install -m 0755 "$here/files/edge-gw.init" "$data/etc/init.d/edge-gw"
  install -m 0644 "$here/files/edge-gw.config" "$data/etc/config/edge-gw"
  install -m 0644 "$here/files/edge-gw.upgrade" "$data/lib/upgrade/keep.d/edge-gw"
}

# The package's conffiles (Package/edge-gw/conffiles of the Makefiles).
conffiles() { printf '/etc/config/edge-gw\n'; }
