#!/usr/bin/env bash
# Makes an OpenWrt .ipk of edge-gw from a prebuilt binary, without the
# OpenWrt SDK (the same layout as the SDK's ipkg-build: a gzipped tar of
# debian-binary, control.tar.gz and data.tar.gz).
#
#   board/openwrt/mkipk.sh TARGET [--arch OPKG_ARCH] [--bin FILE] [--out DIR]
#
# TARGET is a board/build.sh target; the binary defaults to
# target/cross/out/edge-gw-TARGET. --arch must be one that `opkg
# print-architecture` lists on the router; the default is the commonest
# OpenWrt architecture for the target:
#   mipsel-unknown-linux-musl       mipsel_24kc     (MT7621, MT7628/MT7688)
#   mips-unknown-linux-musl         mips_24kc       (ath79: QCA9531/9563, AR9344)
#   armv7-unknown-linux-musleabihf  arm_cortex-a7_neon-vfpv4 (ipq40xx)
#   aarch64-unknown-linux-musl      aarch64_cortex-a53 (MT7622, MT7981/7986, ipq807x)
#   x86_64-unknown-linux-musl       x86_64
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)

target=${1:-}
[ -n "$target" ] || { sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }
shift
arch= bin= out=$root/target/cross/out
while [ $# -gt 0 ]; do
  case $1 in
    --arch) arch=$2; shift 2 ;;
    --bin) bin=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
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
version=$(sed -n 's/^version = "\(.*\)"/\1/p' "$root/Cargo.toml" | head -1)-1

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
d=$tmp/data c=$tmp/control
install -d "$d/usr/bin" "$d/etc/init.d" "$d/etc/config" "$c"
install -d -m 0700 "$d/etc/edge-gw"
install -m 0755 "$bin" "$d/usr/bin/edge-gw"
install -m 0755 "$here/files/edge-gw.init" "$d/etc/init.d/edge-gw"
install -m 0644 "$here/files/edge-gw.config" "$d/etc/config/edge-gw"

cat > "$c/control" <<EOT
Package: edge-gw
Version: $version
License: MIT OR Apache-2.0
Section: net
Architecture: $arch
Installed-Size: $(du -sk "$d" | cut -f1)
Description: edge-gw monitoring agent (static binary, built for $target)
EOT
printf '/etc/config/edge-gw\n' > "$c/conffiles"
cat > "$c/postinst" <<'EOT'
#!/bin/sh
# On a running system (not an image build): enable and (re)start; the init
# script logs why it does not start while the master address is unset.
[ -n "$IPKG_INSTROOT" ] && exit 0
/etc/init.d/edge-gw enable
/etc/init.d/edge-gw restart
exit 0
EOT
cat > "$c/prerm" <<'EOT'
#!/bin/sh
[ -n "$IPKG_INSTROOT" ] && exit 0
/etc/init.d/edge-gw stop
/etc/init.d/edge-gw disable
exit 0
EOT
chmod 0755 "$c/postinst" "$c/prerm"

tar_opts=(--format=gnu --numeric-owner --owner=0 --group=0 --sort=name --mtime=@0)
(cd "$d" && tar "${tar_opts[@]}" -czf "$tmp/data.tar.gz" .)
(cd "$c" && tar "${tar_opts[@]}" -czf "$tmp/control.tar.gz" .)
echo "2.0" > "$tmp/debian-binary"
mkdir -p "$out"
ipk=$out/edge-gw_${version}_${arch}.ipk
(cd "$tmp" && tar "${tar_opts[@]}" -czf "$ipk" ./debian-binary ./data.tar.gz ./control.tar.gz)
echo "$ipk"
