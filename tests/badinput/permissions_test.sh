#!/usr/bin/env bash
# Issue 17: what klua's tools keep on disk is the user's alone. tools/kafka-broker's state directory
# (addresses, the server config with its SASL users, the log) is created 700 with files 600, and
# the cache root (${XDG_CACHE_HOME:-~/.cache}/klua: jars, librdkafka, the venv) is made 700, also
# when an older run left it 755. Runs `stop` and `fetch` with a fake cached jar: no broker, no
# download. Usage: permissions_test.sh SCRATCH_DIR
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
S=${1:?scratch dir}/permissions
rm -rf "$S"
mkdir -p "$S"
fail() { echo "FAIL: $*"; exit 1; }
mode() { stat -c %a "$1"; }

export KLUA_BROKER_STATE=$S/state XDG_CACHE_HOME=$S/cache KLUA_KAFKA_VERSION=0.0.0-test
umask 022  # what a login shell usually has: the script must not depend on it
mkdir -p "$S/cache/klua/kafka-0.0.0-test/libs"
touch "$S/cache/klua/kafka-0.0.0-test/libs/kafka_2.13-0.0.0-test.jar"
chmod 755 "$S/cache/klua"

"$ROOT/tools/kafka-broker" stop 2>/dev/null
[[ $(mode "$S/state") == 700 ]] || fail "state dir is $(mode "$S/state"), expected 700"
[[ $(mode "$S/state/.lock") == 600 ]] || fail "state lock is $(mode "$S/state/.lock"), expected 600"
chmod 755 "$S/state"  # one made by an older tools/kafka-broker
"$ROOT/tools/kafka-broker" stop 2>/dev/null
[[ $(mode "$S/state") == 700 ]] || fail "an old 755 state dir stays $(mode "$S/state")"

"$ROOT/tools/kafka-broker" fetch >/dev/null
[[ $(mode "$S/cache/klua") == 700 ]] || fail "cache root is $(mode "$S/cache/klua"), expected 700"
rm -rf "$S"
echo "permissions ok"
