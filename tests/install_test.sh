#!/usr/bin/env bash
# cmake --install into a prefix under the build directory, then build examples/embed against it
# (find_package(klua): klua::klua and klua::klua_static; and pkg-config klua) and run it on the
# embedded cluster. With Debian's librdkafka-dev (2.0.2) installed, the shared build links that
# librdkafka too: klua must still run on its own 2.15 (libklua.so does not export librdkafka).
#   tests/install_test.sh BUILD_DIR       (from the source directory)
set -euo pipefail
B=$(cd "$1" && pwd)
SRC=$(pwd)
PREFIX=$B/install-test
WORK=$B/install-test-work
rm -rf "$PREFIX" "$WORK"
mkdir -p "$WORK"
fail() { echo "FAIL: $*" >&2; exit 1; }
export KLUA_BROKERS=

cmake --install "$B" --prefix "$PREFIX" >"$WORK/install.log"

# Only the public headers are installed, and they include nothing internal.
headers=$(cd "$PREFIX/include" && find . -type f | sort | tr '\n' ' ')
[ "$headers" = "./klua/log.hpp ./klua/module.hpp ./klua/runtime.hpp " ] || fail "installed headers: $headers"
! grep -nE '#include *[<"](host|bindings|librdkafka|lua|uv)' "$PREFIX"/include/klua/*.hpp \
  || fail "a public header includes an internal or third-party header"

# libklua.so: versioned SONAME, no RPATH/RUNPATH, librdkafka linked in but not exported.
so=$PREFIX/lib/libklua.so
dynamic=$(readelf -d "$so")
grep -q 'SONAME.*\[libklua\.so\.0\.1\]' <<<"$dynamic" || fail "libklua.so has no SONAME libklua.so.0.1"
! grep -qE 'RPATH|RUNPATH' <<<"$dynamic" || fail "libklua.so carries an RPATH/RUNPATH"
# (outputs are captured first: grep -q closing a pipe early fails the pipeline under pipefail)
symbols=$(nm -D --defined-only "$so")
exported=$(grep -c ' rd_' <<<"$symbols" || true)
[ "$exported" = 0 ] || fail "libklua.so exports $exported librdkafka symbols"
grep -q 'klua5embed7Runtime' <<<"$symbols" || fail "libklua.so does not export klua::embed::Runtime"
! grep -q rdkafka <<<"$(ldd "$so")" || fail "libklua.so needs a shared librdkafka"

# examples/embed against the installed package.
cmake -S "$SRC/examples/embed" -B "$WORK/cmake" -DCMAKE_PREFIX_PATH="$PREFIX" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  >"$WORK/configure.log" || { cat "$WORK/configure.log"; fail "configuring examples/embed"; }
cmake --build "$WORK/cmake" -j2 >"$WORK/build.log" 2>&1 || { tail -30 "$WORK/build.log"; fail "building examples/embed"; }

check_run() {  # check_run NAME OUTPUT
  grep -q "^klua's librdkafka 2\.15\." "$2" || { cat "$2"; fail "$1: klua does not run on its librdkafka 2.15"; }
  grep -q '^\[klua info\] .* INFO produced messages=4 topic=embed-orders$' "$2" \
    || { cat "$2"; fail "$1: klua.log's record did not reach the program's log sink"; }
  grep -q '^embed ok$' "$2" || { cat "$2"; fail "$1: did not end with 'embed ok'"; }
  [ "$(grep -c '^handled embed-orders' "$2")" = 4 ] || { cat "$2"; fail "$1: 4 messages were not handled"; }
  echo "$1: ok ($(grep "^klua's librdkafka" "$2"); $(grep "own librdkafka" "$2" || echo "no system librdkafka linked"))"
}

timeout 120 "$WORK/cmake/embed" 4 >"$WORK/embed.out" 2>&1 || { cat "$WORK/embed.out"; fail "embed exited $?"; }
check_run "embed (libklua.so)" "$WORK/embed.out"
grep -q "libklua.so.0.1 => $PREFIX/lib/" <<<"$(ldd "$WORK/cmake/embed")" || fail "embed does not load the installed libklua.so"
if dpkg-query -W -f='${Status}' librdkafka-dev 2>/dev/null | grep -q "install ok installed"; then
  # The program links Debian's librdkafka as well: it sees 2.0.x, klua sees its own.
  grep -q "^this program's own librdkafka 2\.0\." "$WORK/embed.out" \
    || { cat "$WORK/embed.out"; fail "embed did not link the system librdkafka 2.0 (librdkafka-dev is installed)"; }
  grep -q 'librdkafka.so.1 => /' <<<"$(ldd "$WORK/cmake/embed")" || fail "embed does not load the system librdkafka.so.1"
else
  echo "note: librdkafka-dev is not installed: the side-by-side check with Debian's librdkafka is skipped"
fi

timeout 120 "$WORK/cmake/embed_static" 4 >"$WORK/embed_static.out" 2>&1 \
  || { cat "$WORK/embed_static.out"; fail "embed_static exited $?"; }
check_run "embed_static (libklua.a)" "$WORK/embed_static.out"
! grep -qE 'libklua|librdkafka' <<<"$(ldd "$WORK/cmake/embed_static")" || fail "embed_static loads a shared klua or librdkafka"

# pkg-config klua: the same program compiled by hand against libklua.so.
export PKG_CONFIG_PATH=$PREFIX/lib/pkgconfig
pkg-config --exists klua || fail "pkg-config finds no klua in $PKG_CONFIG_PATH"
# shellcheck disable=SC2046
c++ -std=c++20 -O1 -o "$WORK/embed_pc" "$SRC/examples/embed/main.cpp" $(pkg-config --cflags --libs klua libuv) \
  -Wl,-rpath,"$PREFIX/lib" || fail "compiling with pkg-config klua"
timeout 120 "$WORK/embed_pc" 4 >"$WORK/embed_pc.out" 2>&1 || { cat "$WORK/embed_pc.out"; fail "embed_pc exited $?"; }
check_run "embed (pkg-config)" "$WORK/embed_pc.out"
echo "install test ok"
