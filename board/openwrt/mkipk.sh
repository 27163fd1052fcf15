#!/usr/bin/env bash
# Makes an OpenWrt .ipk (opkg: OpenWrt 24.10 and older) of edge-gw from a
# prebuilt binary, without the OpenWrt SDK: the same layout as the SDK's
# ipkg-build (a gzipped tar of debian-binary, control.tar.gz and
# data.tar.gz) and the same contents as the SDK package (Makefile): binary,
# procd init script, UCI defaults, /lib/upgrade/keep.d/edge-gw, the
# edge-gw user (Require-User) and the SDK's standard postinst/prerm.
# For OpenWrt 25.x (apk) see mkapk.sh.
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
# Prints the path of the .ipk. EDGE_GW_URL sets the URL field.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=stage.sh
. "$(dirname "$0")/stage.sh"
stage_parse "$@"
stage_data
version=$pkg_version-$pkg_release

c=$tmp/control
install -d "$c"
{
  printf 'Package: edge-gw\nVersion: %s\n' "$version"
  printf 'License: %s\nLicenseFiles: LICENSE-MIT LICENSE-APACHE\n' "$pkg_license"
  printf 'Section: net\nRequire-User: %s\n' "$pkg_userid"
  [ -z "$pkg_url" ] || printf 'URL: %s\n' "$pkg_url"
  printf 'Maintainer: %s\nArchitecture: %s\n' "$pkg_maintainer" "$arch"
  printf 'Installed-Size: %s\nDescription: %s\n' "$(du -sk "$data" | cut -f1)" "$pkg_description"
} > "$c/control"
conffiles > "$c/conffiles"
# The scripts the SDK writes for every package (include/package-pack.mk):
# default_postinst creates the Require-User user (add_group_and_user:
# group_add_next, user_add), enables and starts the init script; the init
# script logs why it does not start while the master address is unset.
# default_prerm stops and disables it.
cat > "$c/postinst" <<'EOT'
#!/bin/sh
[ "${IPKG_NO_SCRIPT}" = "1" ] && exit 0
[ -s ${IPKG_INSTROOT}/lib/functions.sh ] || exit 0
. ${IPKG_INSTROOT}/lib/functions.sh
default_postinst $0 $@
EOT
cat > "$c/prerm" <<'EOT'
#!/bin/sh
[ -s ${IPKG_INSTROOT}/lib/functions.sh ] || exit 0
. ${IPKG_INSTROOT}/lib/functions.sh
default_prerm $0 $@
EOT
chmod 0755 "$c/postinst" "$c/prerm"

tar_opts=(--format=gnu --numeric-owner --owner=0 --group=0 --sort=name --mtime=@0)
(cd "$data" && tar "${tar_opts[@]}" -czf "$tmp/data.tar.gz" .)
(cd "$c" && tar "${tar_opts[@]}" -czf "$tmp/control.tar.gz" .)
echo "2.0" > "$tmp/debian-binary"
mkdir -p "$out"
ipk=$out/edge-gw_${version}_${arch}.ipk
(cd "$tmp" && tar "${tar_opts[@]}" -czf "$ipk" ./debian-binary ./data.tar.gz ./control.tar.gz)
echo "$ipk"
