#!/usr/bin/env bash
# Checks of the OpenWrt packaging that run without an OpenWrt SDK:
#
#   board/openwrt/check.sh
#
# - the version, release and user of Makefile, Makefile.prebuilt, Cargo.toml
#   and stage.sh agree, and both Makefiles install every file the scripts do;
# - the init script parses (sh -n) and shellcheck finds nothing in it or in
#   the scripts here (skipped, and said so, if shellcheck is not installed;
#   EDGE_GW_CHECK_STRICT=1 makes that a failure);
# - mkipk.sh makes an .ipk from a stand-in binary (random bytes: the
#   packaging never looks inside it) with the expected members, files,
#   modes, owners, control fields, conffiles, keep.d list and scripts;
# - with apk-tools 3 (APK=/path/to/apk or `apk` on PATH; skipped and said so
#   otherwise, a failure under EDGE_GW_CHECK_STRICT=1), mkapk.sh makes an
#   .apk that `apk adbdump` reads back and `apk add --root` installs into an
#   empty root (scripts off: they need OpenWrt's /lib/functions.sh), with
#   the same files as the .ipk plus apk's own metadata.
#
# Not checked here (needs the SDK): the source build itself, the SDK's
# package lint, and the postinst/prerm scripts on a router.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
strict=${EDGE_GW_CHECK_STRICT:-0}
failed=0
pass() { echo "ok:   $*"; }
fail() { echo "FAIL: $*"; failed=1; }
skip() {
  if [ "$strict" = 1 ]; then fail "$* (EDGE_GW_CHECK_STRICT=1)"; else echo "skip: $*"; fi
}
expect_eq() { # what got want
  if [ "$2" = "$3" ]; then pass "$1"; else fail "$1: got '$2', want '$3'"; fi
}

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# --- metadata agrees ---------------------------------------------------------
cargo_version=$(sed -n 's/^version = "\(.*\)"/\1/p' "$root/Cargo.toml" | head -1)
for mk in Makefile Makefile.prebuilt; do
  expect_eq "$mk PKG_VERSION is Cargo.toml's" \
    "$(sed -n 's/^PKG_VERSION:=//p' "$here/$mk")" "$cargo_version"
  expect_eq "$mk USERID" "$(sed -n 's/^ *USERID:=//p' "$here/$mk")" edge-gw:edge-gw
  for f in /usr/bin/edge-gw /etc/init.d/edge-gw /etc/config/edge-gw \
      /lib/upgrade/keep.d/edge-gw /etc/edge-gw; do
    if grep -q "\$(1)$f\( \|$\)" "$here/$mk"; then :; else fail "$mk does not install $f"; fi
  done
done
expect_eq "PKG_RELEASE agrees" \
  "$(sed -n 's/^PKG_RELEASE:=//p' "$here/Makefile.prebuilt")" \
  "$(sed -n 's/^PKG_RELEASE:=//p' "$here/Makefile")"
grep -q '^ *pkg_userid=edge-gw:edge-gw$' "$here/stage.sh" ||
  fail "stage.sh's pkg_userid is not the Makefiles' USERID"
for f in LICENSE-MIT LICENSE-APACHE; do
  [ -s "$root/$f" ] || fail "PKG_LICENSE_FILES names $f, missing at the repository root"
done

# --- shell -------------------------------------------------------------------
if sh -n "$here/files/edge-gw.init"; then pass "sh -n edge-gw.init"; else fail "sh -n edge-gw.init"; fi
if command -v shellcheck > /dev/null; then
  # The init script names its dialect (dash: POSIX plus `local`, as ash).
  if shellcheck "$here/files/edge-gw.init" &&
      (cd "$here" && shellcheck -x mkipk.sh mkapk.sh stage.sh check.sh); then
    pass "shellcheck: edge-gw.init, mkipk.sh, mkapk.sh, stage.sh, check.sh"
  else
    fail "shellcheck"
  fi
else
  skip "shellcheck is not installed (apt-get install shellcheck)"
fi

# --- .ipk --------------------------------------------------------------------
head -c 65536 /dev/urandom > "$tmp/edge-gw-standin"
expected_files='./etc/config/edge-gw 644
./etc/edge-gw/ 700
./etc/init.d/edge-gw 755
./lib/upgrade/keep.d/edge-gw 644
./usr/bin/edge-gw 755'
if ipk=$("$here/mkipk.sh" mipsel-unknown-linux-musl --bin "$tmp/edge-gw-standin" --out "$tmp/out"); then
  expect_eq "ipk name" "$(basename "$ipk")" "edge-gw_${cargo_version}-1_mipsel_24kc.ipk"
  mkdir "$tmp/ipk"
  tar -xzf "$ipk" -C "$tmp/ipk"
  expect_eq "ipk members" "$(tar -tzf "$ipk" | tr '\n' ' ')" "./debian-binary ./data.tar.gz ./control.tar.gz "
  # Files and directories that are not plain ./x/ parents, with their modes.
  got=$(tar -tvzf "$tmp/ipk/data.tar.gz" | awk '
    { m = $1; p = $6; o = $2 }
    o != "0/0" { print "owner " o " " p }
    m ~ /^d/ && m != "drwxr-xr-x" { print p, m }
    m !~ /^d/ { print p, m }' |
    sed -e 's/-rw-r--r--$/644/' -e 's/-rwxr-xr-x$/755/' -e 's/drwx------$/700/' | sort)
  expect_eq "ipk files, modes and owners" "$got" "$expected_files"
  if cmp -s "$tmp/edge-gw-standin" <(tar -xzOf "$tmp/ipk/data.tar.gz" ./usr/bin/edge-gw); then
    pass "ipk carries the binary"
  else
    fail "ipk's /usr/bin/edge-gw is not the binary given"
  fi
  control=$(tar -xzOf "$tmp/ipk/control.tar.gz" ./control)
  for field in "Package: edge-gw" "Version: ${cargo_version}-1" "Architecture: mipsel_24kc" \
      "License: MIT OR Apache-2.0" "Require-User: edge-gw:edge-gw" "Section: net"; do
    if grep -qxF "$field" <<< "$control"; then pass "ipk control: $field"; else fail "ipk control lacks '$field'"; fi
  done
  if grep -q '^Maintainer: .* <.*@.*>$' <<< "$control"; then
    pass "ipk control: Maintainer"
  else
    fail "ipk control: no 'Maintainer: Name <mail>'"
  fi
  expect_eq "ipk conffiles" "$(tar -xzOf "$tmp/ipk/control.tar.gz" ./conffiles)" /etc/config/edge-gw
  # shellcheck disable=SC2016 # the scripts' own text, not expanded here
  if grep -qx 'default_postinst $0 $@' <(tar -xzOf "$tmp/ipk/control.tar.gz" ./postinst) &&
      grep -qx 'default_prerm $0 $@' <(tar -xzOf "$tmp/ipk/control.tar.gz" ./prerm); then
    pass "ipk postinst/prerm are the SDK's (default_postinst/default_prerm)"
  else
    fail "ipk postinst/prerm"
  fi
  keep=$(tar -xzOf "$tmp/ipk/data.tar.gz" ./lib/upgrade/keep.d/edge-gw | sed -e '/^#/d' -e '/^$/d')
  expect_eq "keep.d/edge-gw" "$(tr '\n' ' ' <<< "$keep")" "/etc/config/edge-gw /etc/edge-gw/ "
  # The key file and the master's state the init script uses live under it.
  for path in "$(sed -n "s/^[[:space:]]*option key_file '\(.*\)'/\1/p" "$here/files/edge-gw.config")" \
      "$(sed -n "s/^[[:space:]]*option master_state_dir '\(.*\)'/\1/p" "$here/files/edge-gw.config")"; do
    case $path in /etc/edge-gw/*) pass "kept across sysupgrade: $path" ;;
      *) fail "$path (edge-gw.config) is not under a keep.d path" ;; esac
  done
else
  fail "mkipk.sh"
fi

# --- .apk --------------------------------------------------------------------
APK=${APK:-apk}
if apk_version=$("$APK" --version 2>/dev/null) && [[ $apk_version == "apk-tools 3."* ]]; then
  if apk=$(APK=$APK "$here/mkapk.sh" mipsel-unknown-linux-musl --bin "$tmp/edge-gw-standin" --out "$tmp/out"); then
    expect_eq "apk name" "$(basename "$apk")" "edge-gw-${cargo_version}-r1.apk"
    dump=$("$APK" adbdump "$apk")
    for field in "name: edge-gw" "version: ${cargo_version}-r1" "arch: mipsel_24kc" \
        "license: MIT OR Apache-2.0"; do
      if grep -qxF "  $field" <<< "$dump"; then pass "apk info: $field"; else fail "apk info lacks '$field'"; fi
    done
    for script in post-install post-upgrade pre-deinstall; do
      if grep -q "^  $script: " <<< "$dump"; then pass "apk script: $script"; else fail "apk has no $script script"; fi
    done
    if "$APK" add --root "$tmp/root" --initdb --allow-untrusted --no-scripts --no-network \
        --arch mipsel_24kc --quiet "$apk"; then
      pass "apk add --root installs it"
      got=$(cd "$tmp/root" && find ./etc/config/edge-gw ./etc/edge-gw ./etc/init.d/edge-gw \
        ./lib/upgrade/keep.d/edge-gw ./usr/bin/edge-gw -printf '%p%Y %m %u\n' |
        sed -e 's/d \([0-9]*\) root$/\/ \1/' -e 's/f \([0-9]*\) root$/ \1/' | sort)
      expect_eq "apk installs the ipk's files, modes, owners" "$got" "$expected_files"
      expect_eq "apk .rusers" "$(cat "$tmp/root/lib/apk/packages/edge-gw.rusers")" edge-gw:edge-gw
      expect_eq "apk .conffiles" "$(cat "$tmp/root/lib/apk/packages/edge-gw.conffiles")" /etc/config/edge-gw
      if grep -qx "/etc/config/edge-gw $(sha256sum "$here/files/edge-gw.config" | cut -d' ' -f1)" \
          "$tmp/root/lib/apk/packages/edge-gw.conffiles_static"; then
        pass "apk .conffiles_static"
      else
        fail "apk .conffiles_static"
      fi
      if grep -qx /usr/bin/edge-gw "$tmp/root/lib/apk/packages/edge-gw.list"; then
        pass "apk .list"
      else
        fail "apk .list lacks /usr/bin/edge-gw"
      fi
    else
      fail "apk add --root"
    fi
  else
    fail "mkapk.sh"
  fi
else
  skip "no apk-tools 3 ($APK): the .apk was not built (APK=/path/to/apk)"
fi

if [ "$failed" = 0 ]; then echo "all OpenWrt packaging checks passed"; else echo "some checks FAILED"; fi
exit "$failed"
