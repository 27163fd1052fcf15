#!/usr/bin/env bash
# Makes an OpenWrt .apk (apk-tools v3 package: OpenWrt 25.x) of edge-gw from
# a prebuilt binary, without the rest of the OpenWrt SDK: the same files,
# /lib/apk/packages/edge-gw.* metadata and scripts as the SDK's
# include/package-pack.mk makes for Makefile's package, packed by
# `apk mkpkg`. For opkg (OpenWrt 24.10 and older) see mkipk.sh.
#
#   board/openwrt/mkapk.sh TARGET [--arch APK_ARCH] [--bin FILE] [--out DIR]
#
# TARGET, --arch, --bin and --out as for mkipk.sh (OpenWrt's architecture
# names are the same for apk: `apk --print-arch` on the router).
#
# Needs apk-tools 3 (`apk mkpkg`): APK=/path/to/apk, else `apk` on PATH. The
# OpenWrt 25 SDK has it as staging_dir/host/bin/apk; Debian 12 has no
# apk-tools package (and 2.x would make the old v2 format, which OpenWrt's
# apk does not take); apk-tools builds from source with meson (README.md).
# File owners are recorded as root: run as root or under fakeroot (used by
# itself when found). Prints the path of the .apk. EDGE_GW_URL sets the url.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=stage.sh
. "$(dirname "$0")/stage.sh"
stage_parse "$@"

APK=${APK:-apk}
apk_version=$("$APK" --version 2>/dev/null) || {
  echo "no apk-tools: set APK=/path/to/apk (apk-tools 3; the OpenWrt 25 SDK's staging_dir/host/bin/apk)" >&2
  exit 1
}
case $apk_version in
  "apk-tools 3."*) ;;
  *) echo "$APK is '$apk_version': apk mkpkg (apk-tools 3) is needed for OpenWrt's v3 packages" >&2; exit 1 ;;
esac
fakeroot=
if [ "$(id -u)" != 0 ]; then
  command -v fakeroot > /dev/null ||
    { echo "not root and no fakeroot: the package's files would be owned by $(id -un)" >&2; exit 1; }
  fakeroot=fakeroot
fi

stage_data
# OpenWrt's apk versions: PKG_VERSION-rPKG_RELEASE (rules.mk, CONFIG_USE_APK).
version=$pkg_version-r$pkg_release
meta=$data/lib/apk/packages
scripts=$tmp/scripts
install -d "$meta" "$scripts"

# As include/package-pack.mk: the users to create (.rusers), the file list
# (.list, made before the conffiles metadata), the conffiles and their
# checksums as shipped (.conffiles, .conffiles_static: sysupgrade and
# `apk audit` find changed ones by them).
echo "$pkg_userid" > "$meta/edge-gw.rusers"
(cd "$data" && find . \( -type f -o -type l \) -printf '/%P\n' | sort) > "$tmp/list"
mv "$tmp/list" "$meta/edge-gw.list"
conffiles > "$meta/edge-gw.conffiles"
while read -r f; do
  printf '%s %s\n' "$f" "$(sha256sum "$data$f" | cut -d' ' -f1)"
done < "$meta/edge-gw.conffiles" > "$meta/edge-gw.conffiles_static"

# The scripts package-pack.mk writes for a package with no scripts of its
# own: add_group_and_user creates edge-gw (group_add_next, user_add);
# default_postinst enables and starts the init script (only starts it on
# an upgrade); default_prerm stops it (and disables it unless upgrading).
cat > "$scripts/post-install" <<'EOT'
#!/bin/sh
[ "${IPKG_NO_SCRIPT}" = "1" ] && exit 0
[ -s ${IPKG_INSTROOT}/lib/functions.sh ] || exit 0
. ${IPKG_INSTROOT}/lib/functions.sh
export root="${IPKG_INSTROOT}"
export pkgname="edge-gw"
add_group_and_user
default_postinst
EOT
{ printf '#!/bin/sh\nexport PKG_UPGRADE=1\n'; sed '/^#!/d' "$scripts/post-install"; } > "$scripts/post-upgrade"
cat > "$scripts/pre-deinstall" <<'EOT'
#!/bin/sh
[ -s ${IPKG_INSTROOT}/lib/functions.sh ] || exit 0
. ${IPKG_INSTROOT}/lib/functions.sh
export root="${IPKG_INSTROOT}"
export pkgname="edge-gw"
default_prerm
EOT
chmod 0755 "$scripts"/*

mkdir -p "$out"
apk=$out/edge-gw-$version.apk
$fakeroot "$APK" mkpkg \
  --info "name:edge-gw" \
  --info "version:$version" \
  --info "description:$pkg_description" \
  --info "arch:$arch" \
  --info "license:$pkg_license" \
  --info "origin:edge-gw" \
  --info "url:$pkg_url" \
  --info "maintainer:$pkg_maintainer" \
  --script "post-install:$scripts/post-install" \
  --script "post-upgrade:$scripts/post-upgrade" \
  --script "pre-deinstall:$scripts/pre-deinstall" \
  --files "$data" \
  --output "$apk"
echo "$apk"
