#!/usr/bin/env bash
# The .deb made by CPack: its Depends (from dpkg-shlibdeps) name the Debian libraries klua links
# and not librdkafka (linked in); extracted with dpkg-deb -x, its klua runs the quickstart on the
# embedded cluster, and neither the binary nor libklua.so reaches into the build tree.
#   tests/deb_test.sh BUILD_DIR       (from the source directory)
set -euo pipefail
B=$(cd "$1" && pwd)
SRC=$(pwd)
WORK=$B/deb-test
rm -rf "$WORK"
mkdir -p "$WORK"
fail() { echo "FAIL: $*" >&2; exit 1; }
command -v dpkg-shlibdeps >/dev/null || fail "dpkg-shlibdeps is missing (apt-get install dpkg-dev; tools/dev setup does)"

(cd "$WORK" && cpack -G DEB --config "$B/CPackConfig.cmake" -B "$WORK/out" >"$WORK/cpack.log" 2>&1) \
  || { tail -30 "$WORK/cpack.log"; fail "cpack -G DEB"; }
deb=$(ls "$WORK"/out/klua_*.deb)
depends=$(dpkg-deb -f "$deb" Depends)
echo "Depends: $depends"
# libluajit2-5.1-2: OpenResty's LuaJIT, which compiles next() right (host/lua_next.cpp), not Debian's libluajit-5.1-2.
for lib in libluajit2-5.1-2 libuv1 libssl3 libsasl2-2 libcurl4 libzstd1 liblz4-1 zlib1g libedit2 libfmt9 libprotobuf32; do
  [[ "$depends" == *"$lib"* ]] || fail "Depends lacks $lib"
done
[[ "$depends" != *librdkafka* ]] || fail "Depends names librdkafka (klua links its own statically)"

dpkg-deb -x "$deb" "$WORK/root"
klua=$WORK/root/usr/bin/klua
so=$(ls "$WORK"/root/usr/lib/libklua.so.0.1)
[ -x "$klua" ] || fail "no usr/bin/klua in the package"
for f in "$klua" "$so"; do
  ! grep -qE 'RPATH|RUNPATH' <<<"$(readelf -d "$f")" || fail "$f carries an RPATH/RUNPATH"
  out=$(ldd "$f")
  ! grep -q "not found" <<<"$out" || { echo "$out"; fail "$f: a library is not found"; }
  ! grep -qE "$B|$SRC|$HOME/\.cache" <<<"$out" || { echo "$out"; fail "$f: ldd shows a build path"; }
done
grep -q '^librdkafka 2\.15\.' <<<"$("$klua" version)" || fail "the packaged klua does not report librdkafka 2.15"

# From a directory outside the source tree: the library must come from the binary, not from ./scripts.
cp "$SRC/examples/quickstart.lua" "$WORK/quickstart.lua"
(cd "$WORK" && KLUA_BROKERS= timeout 120 "$klua" run quickstart.lua) >"$WORK/quickstart.out" 2>&1 \
  || { cat "$WORK/quickstart.out"; fail "the packaged klua failed the quickstart"; }
grep -q "ok: 3 events round-tripped" "$WORK/quickstart.out" || { cat "$WORK/quickstart.out"; fail "quickstart output"; }
echo "deb test ok: $(basename "$deb"), $(du -h "$deb" | cut -f1)"
