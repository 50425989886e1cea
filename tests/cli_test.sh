#!/usr/bin/env bash
# CLI behaviour: exit codes, error messages, arguments, signals. Usage: cli_test.sh path/to/klua
set -u
KLUA=$(realpath "${1:?usage: cli_test.sh KLUA}")
export KLUA_BROKERS=
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
export XDG_CONFIG_HOME="$tmp/no-config"  # the user's own profiles must not change the results
pass=0 fail=0

check() {  # check NAME CONDITION-EXIT-STATUS
  local name=$1; shift
  if "$@"; then pass=$((pass + 1)); echo "ok   $name"; else fail=$((fail + 1)); echo "FAIL $name"; fi
}
run() {  # run CMD...: sets $rc, $out, $err
  "$@" >"$tmp/out" 2>"$tmp/err"; rc=$?
  out=$(cat "$tmp/out"); err=$(cat "$tmp/err")
}
has() { grep -qF -- "$2" <<<"$1"; }

run "$KLUA" version
check "version names librdkafka" eval '[ $rc = 0 ] && has "$out" "librdkafka 2." && has "$out" "LuaJIT"'
# The build klua ships: librdkafka 2.15 or later, with the codecs and SASL mechanisms the README promises.
version_has_features() {
  grep -qE "^librdkafka (2\.(1[5-9]|[2-9][0-9])|[3-9])\." <<<"$out" || return 1
  local f
  for f in zstd lz4 ssl sasl_scram sasl_plain sasl_oauthbearer sasl_gssapi oidc; do
    grep -qE "[(,]$f[,)]" <<<"$out" || return 1
  done
}
check "version: librdkafka >= 2.15 with zstd, lz4, ssl, SCRAM, OAUTHBEARER, GSSAPI" version_has_features

run "$KLUA" --no-such-flag
check "unknown flag exits 2 with one line pointing at --help" eval '[ $rc = 2 ] && [ "$err" = "klua: unknown option --no-such-flag (see klua --help)" ]'

run "$KLUA" run
check "run without a file exits 2" eval '[ $rc = 2 ]'

run "$KLUA" run "$tmp/missing.lua"
check "missing script exits 2 naming it" eval '[ $rc = 2 ] && has "$err" "missing.lua"'

printf 'local x = 1\nx = = 2\n' >"$tmp/syntax.lua"
run "$KLUA" run "$tmp/syntax.lua"
check "syntax error exits 1 with file:line" eval '[ $rc = 1 ] && has "$err" "syntax.lua:2:"'

printf 'local function f()\n  error("boom")\nend\nf()\n' >"$tmp/boom.lua"
run "$KLUA" "$tmp/boom.lua"
check "runtime error exits 1 with message and traceback" eval '[ $rc = 1 ] && has "$err" "boom.lua:2: boom" && has "$err" "stack traceback"'

printf 'klua.spawn(function() error("in a task") end)\nklua.sleep(5000)\nprint("not reached")\n' >"$tmp/task.lua"
run "$KLUA" "$tmp/task.lua"
check "an error in an unjoined task ends the script" eval '[ $rc = 1 ] && has "$err" "in a task" && ! has "$out" "not reached"'

run "$KLUA" -e 'print(arg[0], arg[1], arg[2], ...)' a b
check "-e passes args in arg and ..." eval '[ $rc = 0 ] && [ "$out" = "$(printf "%s\t%s\t%s\t%s\t%s" -e a b a b)" ]'

printf 'print(#arg, arg[1], arg[2])\n' >"$tmp/args.lua"
run "$KLUA" run "$tmp/args.lua" x "y z"
check "run passes args" eval '[ "$out" = "$(printf "2\tx\ty z")" ]'

run "$KLUA" -e 'error(klua.errors.new{ name = klua.errors.UNKNOWN_TOPIC_OR_PART, kafka = true, message = "gone" })'
check "an uncaught klua.errors.new{kafka=true} exits 3" eval '[ $rc = 3 ] && has "$err" "UNKNOWN_TOPIC_OR_PART: gone"'

run "$KLUA" -e 'klua.exit(7)'
check "klua.exit sets the exit code" eval '[ $rc = 7 ]'

run "$KLUA" -e 'os.exit(6)'
check "os.exit works like klua.exit" eval '[ $rc = 6 ]'

run "$KLUA" -e 'print(1)'
check "no Kafka handle, no embedded cluster" eval '[ $rc = 0 ] && [ -z "$err" ]'

out=$(echo 'print(40 + 2)' | "$KLUA" 2>/dev/null)
check "a script on stdin runs" eval '[ "$out" = 42 ]'

run "$KLUA" -X no.such.thing=1 -e 'klua.producer() print("not reached")'
check "-X bad property exits 2 before anything runs, naming it and its source" eval '[ $rc = 2 ] && [ -z "$out" ] && has "$err" "no.such.thing" && has "$err" "-X:"'

run "$KLUA" -X novalue -e ''
check "-X without = is a usage error" eval '[ $rc = 2 ]'

printf '# comment\nclient.id=fromfile\nbogus line\n' >"$tmp/bad.properties"
run "$KLUA" -F "$tmp/bad.properties" -e ''
check "-F names file:line of a bad line" eval '[ $rc = 2 ] && has "$err" "bad.properties:3"'

printf 'client.id = from-file\n' >"$tmp/good.properties"
run "$KLUA" -F "$tmp/good.properties" -b 127.0.0.1:9 -X linger.ms=7 -e 'local c = klua.config(); print(c["client.id"], c["bootstrap.servers"], c["linger.ms"])'
check "-F, -b and -X layer into the configuration" eval '[ "$out" = "$(printf "from-file\t127.0.0.1:9\t7")" ]'

KLUA_BROKERS=10.0.0.1:9092 run "$KLUA" -b 127.0.0.1:9 -e 'print(klua.config()["bootstrap.servers"])'
check "-b beats KLUA_BROKERS" eval '[ "$out" = 127.0.0.1:9 ]'

cat >"$tmp/kafkaerr.lua" <<'LUA'
klua.embedded.create_topic("one-partition", 1)
local p = klua.producer()
local r, err = p:produce{ topic = "one-partition", partition = 5, value = "x" }
error(err)
LUA
run "$KLUA" "$tmp/kafkaerr.lua"
check "an uncaught Kafka error exits 3" eval '[ $rc = 3 ] && has "$err" "UNKNOWN_PARTITION"'

cat >"$tmp/fail_test.lua" <<'LUA'
test("passes", function() assert_eq(1, 1) end)
test("fails", function() assert_eq({ a = 1 }, { a = 2 }) end)
LUA
run "$KLUA" test "$tmp/fail_test.lua"
check "klua test reports failures and exits 1" eval '[ $rc = 1 ] && has "$out" "1 passed, 1 failed" && has "$out" "fail_test.lua:2"'

# SIGINT: queued messages are flushed before exit 130.
cat >"$tmp/sigint.lua" <<'LUA'
klua.embedded.create_topic("sig", 4)
local delivered = 0
local p = klua.producer{ ["linger.ms"] = 60000, on_delivery = function(_, err)
  if not err then delivered = delivered + 1 end
  if delivered == 500 then print("delivered 500") io.stdout:flush() end
end }
for i = 1, 500 do p:send{ topic = "sig", value = "m" .. i } end
print("queued") io.stdout:flush()
while true do klua.sleep(1000) end
LUA
"$KLUA" "$tmp/sigint.lua" >"$tmp/sig.out" 2>"$tmp/sig.err" &
pid=$!
for _ in $(seq 100); do grep -q queued "$tmp/sig.out" 2>/dev/null && break; sleep 0.1; done
kill -INT $pid; wait $pid; rc=$?
check "SIGINT flushes producers and exits 130" eval '[ $rc = 130 ] && grep -q "delivered 500" "$tmp/sig.out"'

sed 's/queued/queued/' "$tmp/sigint.lua" >"$tmp/sigterm.lua"
# Its own output file: reusing sig.out let the wait below see the SIGINT run's "queued" before the
# new process truncated the file, and SIGTERM then killed klua before it had signal handlers.
"$KLUA" "$tmp/sigterm.lua" >"$tmp/sigterm.out" 2>"$tmp/sigterm.err" &
pid=$!
for _ in $(seq 100); do grep -q queued "$tmp/sigterm.out" 2>/dev/null && break; sleep 0.1; done
kill -TERM $pid; wait $pid; rc=$?
check "SIGTERM flushes producers and exits 143" eval '[ $rc = 143 ] && grep -q "delivered 500" "$tmp/sigterm.out"'

# A consumer poll loop ends on SIGINT (the cancelled poll raises KLUA_CANCELLED).
cat >"$tmp/pollloop.lua" <<'LUA'
local c = klua.consumer{ group = "g", topics = { "loop" } }
print("polling") io.stdout:flush()
while true do c:poll() end
LUA
"$KLUA" "$tmp/pollloop.lua" >"$tmp/poll.out" 2>"$tmp/poll.err" &
pid=$!
for _ in $(seq 100); do grep -q polling "$tmp/poll.out" 2>/dev/null && break; sleep 0.1; done
kill -INT $pid; wait $pid; rc=$?
check "SIGINT ends a while-true poll loop with exit 130" eval '[ $rc = 130 ]'

# A shielded task is not cancelled by SIGINT: it finishes its wait, then klua exits 130; a plain
# task waiting at the same moment is cancelled.
cat >"$tmp/shield.lua" <<'LUA'
klua.spawn_shielded(function() print("shielded waits") io.stdout:flush(); klua.sleep(700); print("shielded done") end)
klua.spawn(function() klua.sleep(5000); print("plain done") end)
klua.sleep(5000)
print("main done")
LUA
"$KLUA" "$tmp/shield.lua" >"$tmp/shield.out" 2>"$tmp/shield.err" &
pid=$!
for _ in $(seq 100); do grep -q "shielded waits" "$tmp/shield.out" 2>/dev/null && break; sleep 0.1; done
kill -INT $pid; wait $pid; rc=$?
check "SIGINT spares a shielded task, cancels the others, exits 130" eval '[ $rc = 130 ] && grep -q "shielded done" "$tmp/shield.out" && ! grep -q "plain done" "$tmp/shield.out" && ! grep -q "main done" "$tmp/shield.out"'

# The REPL on a pipe runs like a script: no banner or prompt, values print, the first error ends it.
out=$(printf '=1 + 1\nfor i = 1, 2 do\nprint("i" .. i)\nend\n{ b = 2, a = 1 }\n' | "$KLUA" repl 2>"$tmp/err"); rc=$?
check "repl on a pipe prints values without prompts" eval '[ $rc = 0 ] && [ "$out" = "$(printf "2\ni1\ni2\n{ a = 1, b = 2 }")" ]'
out=$(printf 'x = = 1\nprint("not reached")\n' | "$KLUA" repl 2>"$tmp/err"); rc=$?
check "repl on a pipe stops at the first error with exit 1" eval '[ $rc = 1 ] && has "$(cat "$tmp/err")" "unexpected symbol" && [ -z "$out" ]'
out=$(printf ':connect h1:9092\n=klua.config()["bootstrap.servers"]\n:help p:produce\n' | "$KLUA" repl 2>"$tmp/err"); rc=$?
check "repl :connect sets the brokers of new clients; :help reads docs/" eval '[ $rc = 0 ] && has "$out" "new clients connect to h1:9092" && has "$out" "$(printf "\nh1:9092\n")" && has "$out" "yields until the delivery report"'
run "$KLUA" config
check "config without show is a usage error" eval '[ $rc = 2 ] && has "$err" "klua config show"'
run "$KLUA" completion zsh
check "completion for an unknown shell is a usage error" eval '[ $rc = 2 ] && has "$err" "klua completion bash"'
out=$(printf 'for i = 1, 2 do\n' | "$KLUA" repl 2>"$tmp/err"); rc=$?
check "repl on a pipe reports an unfinished chunk" eval '[ $rc = 1 ] && has "$(cat "$tmp/err")" "<eof>"'

# The REPL: errors located in the chunk, error tables printed as values, background task errors
# printed without ending the session.
out=$(printf 'error("x")\n' | "$KLUA" repl 2>"$tmp/err"); rc=$?
check "repl: error() is located at stdin:1" eval '[ $rc = 1 ] && [ "$(cat "$tmp/err")" = "stdin:1: x" ]'
out=$(printf 'error({ code = 1 })\n' | "$KLUA" repl 2>"$tmp/err"); rc=$?
check "repl: an error table prints through klua.pretty" eval '[ $rc = 1 ] && [ "$(cat "$tmp/err")" = "{ code = 1 }" ]'
out=$(printf 'error(klua.errors.new{ name = "X_NAME", message = "text" })\n' | "$KLUA" repl 2>"$tmp/err"); rc=$?
check "repl: a klua error prints as its text" eval '[ $rc = 1 ] && has "$(cat "$tmp/err")" "X_NAME: text" && ! has "$(cat "$tmp/err")" "table:"'
out=$(printf 'klua.spawn(function() error("bg-boom") end)\nklua.sleep(50)\nprint("after")\n' | "$KLUA" repl 2>"$tmp/err"); rc=$?
check "repl on a pipe: a background task's error prints with the task and the session goes on" eval '[ $rc = 0 ] && has "$out" after && has "$(cat "$tmp/err")" "error in background task" && has "$(cat "$tmp/err")" "stdin:1: bg-boom"'
run "$KLUA" repl extra
check "repl refuses an argument" eval '[ $rc = 2 ] && has "$err" "unexpected argument '"'"'extra'"'"'"'

# Global options go before or after the command; after run FILE, -e CODE or FILE they are the script's.
out=$(echo '=klua.config()["bootstrap.servers"]' | "$KLUA" repl -b h1:9092 2>"$tmp/err"); rc=$?
check "repl -b ADDR uses ADDR (not arg)" eval '[ $rc = 0 ] && [ "$out" = h1:9092 ]'
run "$KLUA" config show -b after-host:1 -X linger.ms=8
check "-b and -X after the command" eval '[ $rc = 0 ] && has "$out" after-host:1 && has "$out" "linger.ms"'
run "$KLUA" topics -b 127.0.0.1:1 --jsn
check "topics -b ADDR is taken; the command's own bad option is named, with the nearest" eval '[ $rc = 2 ] && [ "$err" = "klua: unknown option --jsn (did you mean --json?) (see klua topics --help)" ]'
run "$KLUA" run "$tmp/args.lua" -b x --embedded
check "after run FILE, options are the script's" eval '[ $rc = 0 ] && [ "$out" = "$(printf "3\t-b\tx")" ]'
run "$KLUA" -e 'print(klua.config()["bootstrap.servers"], ...)' -b x
check "after -e CODE, options are the script's" eval '[ $rc = 0 ] && [ "$out" = "$(printf "nil\t-b\tx")" ]'
run "$KLUA" "$tmp/args.lua" -X a=b
check "after FILE, options are the script's" eval '[ $rc = 0 ] && [ "$out" = "$(printf "2\t-X\ta=b")" ]'
out=$(echo v | "$KLUA" --embedded produce p-topic -p 0 --json 2>"$tmp/err"); rc=$?
check "after produce, -p is its partition, not a profile" eval '[ $rc = 0 ] && has "$out" "\"partition\":0"'
run "$KLUA" --embedded topics -- -b
check "after --, arguments are the command's positionals" eval '[ $rc = 2 ] && has "$err" "unexpected argument '"'"'-b'"'"'"'
run "$KLUA" consume t -p 0 --profile staging
check "--profile after the command" eval '[ $rc = 2 ] && has "$err" "profile"'

# Say where the data goes: a one-liner needs a broker named or --embedded.
out=$(echo hi | "$KLUA" produce orders 2>"$tmp/err"); rc=$?
check "produce with no broker refuses (exit 2), saying how to name one and --embedded" eval '[ $rc = 2 ] && [ -z "$out" ] && [ $(wc -l <"$tmp/err") = 1 ] && has "$(cat "$tmp/err")" "-b HOST:PORT" && has "$(cat "$tmp/err")" KLUA_BROKERS && has "$(cat "$tmp/err")" profile && has "$(cat "$tmp/err")" --embedded && ! has "$(cat "$tmp/err")" delivered'
refused=""
printf 'return { topics = { { name = "t1", partitions = 1 } } }\n' >"$tmp/state.lua"
for c in "topics" "groups" "lag g" "consume t -e" "provision $tmp/state.lua" "replay a b" "topic list" "topic describe t" \
         "group list" "group describe g" "offsets t" "metadata"; do
  run timeout 20 "$KLUA" $c
  { [ $rc = 2 ] && has "$err" "none is configured"; } || refused="$refused [$c: $rc]"
done
check "every cluster one-liner refuses to run with no broker${refused:+ (not:$refused)}" eval '[ -z "$refused" ]'
run "$KLUA" topics --help
check "--help needs no broker" eval '[ $rc = 0 ] && has "$out" "usage: klua topics"'
run "$KLUA" lag
check "a usage error comes before the missing broker" eval '[ $rc = 2 ] && has "$err" "lag needs a GROUP"'

run "$KLUA" --embedded topics --json
check "--embedded runs a one-liner on the embedded cluster, saying so" eval '[ $rc = 0 ] && has "$err" "embedded mock cluster"'
run "$KLUA" groups --embedded
check "--embedded after the command" eval '! has "$err" "none is configured"'
run "$KLUA" -b 127.0.0.1:1 --embedded topics
check "--embedded with -b is a usage error" eval '[ $rc = 2 ] && has "$err" "--embedded and -b"'
KLUA_BROKERS=127.0.0.1:1 run "$KLUA" --embedded -e 'print(klua.config()["bootstrap.servers"])'
check "--embedded sets KLUA_BROKERS aside" eval '[ $rc = 0 ] && [ "$out" = nil ]'
KLUA_BROKERS=127.0.0.1:1 run "$KLUA" produce t </dev/null
check "KLUA_BROKERS names a broker for the one-liners" eval '[ $rc = 0 ] && has "$err" "0 message(s) delivered" && ! has "$err" "none is configured"'
mkdir -p "$tmp/brokerprof/klua"
printf 'return { profiles = { default = { brokers = "127.0.0.1:1" } } }\n' >"$tmp/brokerprof/klua/config.lua"
XDG_CONFIG_HOME="$tmp/brokerprof" run "$KLUA" produce t </dev/null
check "a profile names a broker for the one-liners" eval '[ $rc = 0 ] && has "$err" "0 message(s) delivered" && ! has "$err" "none is configured"'
XDG_CONFIG_HOME="$tmp/brokerprof" run "$KLUA" --embedded -e 'print(klua.config()["bootstrap.servers"])'
check "--embedded sets the profile's brokers aside" eval '[ $rc = 0 ] && [ "$out" = nil ]'
run "$KLUA" -e 'klua.producer()'
check "a script keeps the embedded default and says so" eval '[ $rc = 0 ] && has "$err" "using the embedded mock cluster"'

# Extra arguments are refused by every command.
extras=""
for c in "topics create orders" "groups x" "produce t x" "consume t x" "provision f x" "replay a b c" "config show x" "completion bash x" "version x" "repl x" \
         "topic list x" "group list x" "offsets t x"; do
  run "$KLUA" --embedded $c
  { [ $rc = 2 ] && [ -z "$out" ]; } || extras="$extras [$c: $rc]"
done
check "extra arguments exit 2${extras:+ (not:$extras)}" eval '[ -z "$extras" ]'
run "$KLUA" --embedded topics create orders
check "topics create orders names the unexpected argument" eval '[ $rc = 2 ] && [ -z "$out" ] && [ "$err" = "klua: unexpected argument '"'"'create'"'"' to topics (see klua topics --help)" ]'

# Errors that are one line, with the nearest valid word.
run "$KLUA" topcis
check "a mistyped command: one line with the nearest" eval '[ $rc = 2 ] && [ "$err" = "klua: unknown command '"'"'topcis'"'"' (did you mean '"'"'topics'"'"'?)" ]'
run "$KLUA" zzzzqqq
check "an unknown command without a near one points at --help" eval '[ $rc = 2 ] && [ "$(wc -l <<<"$err")" = 1 ] && has "$err" "unknown command '"'"'zzzzqqq'"'"'"'
(cd "$tmp" && printf 'print("file runs")\n' >topcis && "$KLUA" topcis >"$tmp/out" 2>&1); rc=$?
check "a file of that name still runs as a script" eval '[ $rc = 0 ] && [ "$(cat "$tmp/out")" = "file runs" ]'
run "$KLUA" "$tmp/nope.lua"
check "a missing script: one line, no usage" eval '[ $rc = 2 ] && [ "$(wc -l <<<"$err")" = 1 ] && has "$err" "cannot read" && ! has "$err" "usage:"'
run "$KLUA" -X list
check "-X list: one line, expected key=value, no usage" eval '[ $rc = 2 ] && [ "$(wc -l <<<"$err")" = 1 ] && has "$err" "expected key=value" && ! has "$err" "usage:"'
run "$KLUA" -X lingerms=5 topics
check "-X lingerms=5 topics: one line naming the property, -X and linger.ms; exit 2" eval '[ $rc = 2 ] && [ "$(wc -l <<<"$err")" = 1 ] && has "$err" lingerms && has "$err" "-X" && has "$err" "'"'"'linger.ms'"'"'" && ! has "$err" traceback'
run "$KLUA" -X linger.ms=soon --embedded topics
check "-X with a bad value: one line naming it" eval '[ $rc = 2 ] && [ "$(wc -l <<<"$err")" = 1 ] && has "$err" "linger.ms"'
printf 'client.idd=x\n' >"$tmp/typo.properties"
run "$KLUA" -F "$tmp/typo.properties" -e 'print(1)'
check "-F with an unknown property names file:line and the nearest" eval '[ $rc = 2 ] && has "$err" "typo.properties:1" && has "$err" "client.id"'
mkdir -p "$tmp/badprop/klua"
printf 'return { profiles = { x = { ["linger.mss"] = 5 } } }\n' >"$tmp/badprop/klua/config.lua"
XDG_CONFIG_HOME="$tmp/badprop" run "$KLUA" --profile x --embedded topics
check "a bad profile property in a one-liner: one line, no traceback, no build path, exit 2" eval '[ $rc = 2 ] && has "$err" "linger.mss" && ! has "$err" traceback && ! has "$err" "scripts/klua" && ! has "$err" "$PWD/build"'
mods=$(cd "$(dirname "$0")/.." && find scripts -name '*.lua' | sed 's|^scripts/||; s|\.lua$||; s|/|.|g' | tr '\n' ' ')
run "$KLUA" -e 'for _, m in ipairs(arg) do local f = package.loaders[2](m)
  local src = type(f) == "function" and debug.getinfo(f, "S").source or "(not bundled)"
  if src:match("^@/") or not src:match("^@") then print(m, src) end end
  local src = debug.getinfo(package.loaders[2]("klua.docs"), "S").source
  if src:match("/work/") or src:match("^@/") then print("klua.docs", src) end' $mods klua.docs
check "bundled chunks are named by relative paths, never a path of the build machine${out:+ ($out)}" eval '[ $rc = 0 ] && [ -z "$out" ]'
cat >"$tmp/cmdfault.lua" <<'LUA'
package.preload.fault = function() return { main = function() local x = nil; return x.y end } end
package.preload.misuse = function() return { main = function() klua.producer{ colour = "red" } end } end
require("klua.cli.common").run(arg[1], arg[1], false, false)
LUA
run "$KLUA" "$tmp/cmdfault.lua" fault
check "a fault of a command itself keeps its location and traceback (exit 1)" eval '[ $rc = 1 ] && has "$err" "internal error: $tmp/cmdfault.lua:1: attempt to index" && has "$err" "stack traceback"'
run "$KLUA" "$tmp/cmdfault.lua" misuse
check "a bad argument inside a command is one line, exit 2" eval '[ $rc = 2 ] && [ "$(wc -l <<<"$err")" = 1 ] && has "$err" "colour" && ! has "$err" traceback'
run "$KLUA" test --bogus x
check "klua test's usage error is one line too" eval '[ $rc = 2 ] && [ "$err" = "klua: unknown option --bogus (see klua test --help)" ]'
run "$KLUA" --embedded consume t --from bogus
check "a bad option value: one line pointing at the command's --help" eval '[ $rc = 2 ] && [ "$(wc -l <<<"$err")" = 1 ] && has "$err" "see klua consume --help"'

# Profiles from $XDG_CONFIG_HOME/klua/config.lua; secrets from env vars and files, never printed.
mkdir -p "$tmp/cfg/klua"
printf 'file-secret-value\n' >"$tmp/secret"
cat >"$tmp/cfg/klua/config.lua" <<LUA
return { profiles = {
  default = { brokers = "default-host:9092" },
  prod = { brokers = "prod-host:9093", ["security.protocol"] = "SASL_SSL", ["sasl.username"] = "svc",
           ["sasl.password"] = { env = "KLUA_TEST_PW" }, ["ssl.key.password"] = { file = "$tmp/secret" },
           ["linger.ms"] = 5 },
} }
LUA
export XDG_CONFIG_HOME="$tmp/cfg"
KLUA_BROKERS=env-host:1 run "$KLUA" -e 'print(klua.config()["bootstrap.servers"])'
check "the default profile is used, above KLUA_BROKERS" eval '[ "$out" = default-host:9092 ]'
KLUA_TEST_PW=pw-from-env KLUA_PROFILE=default run "$KLUA" --profile prod -e 'local c = klua.config(); print(c["bootstrap.servers"], c["sasl.password"], c["ssl.key.password"])'
check "--profile beats KLUA_PROFILE; secrets come from env and file" eval '[ "$out" = "$(printf "prod-host:9093\tpw-from-env\tfile-secret-value")" ]'
KLUA_TEST_PW=pw-from-env KLUA_PROFILE=prod run "$KLUA" -b cli-host:1 -X linger.ms=9 config show
check "config show: -b and -X over the profile, sources named, secrets redacted" eval '[ $rc = 0 ] && has "$out" "cli-host:1" && has "$out" "env KLUA_TEST_PW" && has "$out" "over profile prod" && ! has "$out" pw-from-env && ! has "$out" file-secret-value && has "$out" "********"'
KLUA_TEST_PW=pw-from-env run "$KLUA" --profile=prod config show --json
check "config show --json redacts too" eval '[ $rc = 0 ] && has "$out" "\"redacted\":true" && ! has "$out" pw-from-env && ! has "$out" file-secret-value'
# The schema registry's keys (issue 20): klua's own, layered like the brokers, credentials secret.
printf 'return { profiles = { sr = { ["schema.registry.url"] = "http://profile-sr:8081",\n  ["schema.registry.basic.auth.user.info"] = "alice:sr-pw-in-profile" } } }\n' >"$tmp/cfg/klua/config.lua"
KLUA_SCHEMA_REGISTRY=http://env-sr:1 run "$KLUA" --profile sr -e 'print(klua.config()["schema.registry.url"])'
check "schema.registry.url: the profile beats KLUA_SCHEMA_REGISTRY" eval '[ "$out" = http://profile-sr:8081 ]'
KLUA_SCHEMA_REGISTRY=http://env-sr:1 run "$KLUA" --profile sr --schema-registry http://cli-sr:2 -e 'print(klua.config()["schema.registry.url"])'
check "--schema-registry beats the profile" eval '[ "$out" = http://cli-sr:2 ]'
KLUA_SCHEMA_REGISTRY=http://env-sr:1 run "$KLUA" -e 'print(klua.config()["schema.registry.url"])'
check "KLUA_SCHEMA_REGISTRY names the registry when nothing else does" eval '[ "$out" = http://env-sr:1 ]'
run "$KLUA" --profile sr -X schema.registry.bearer.auth.token=sr-token-value --schema-registry http://bob:sr-url-pw@cli-sr:2 config show
check "config show masks the registry's credentials and its URL's user information" eval '[ $rc = 0 ] && has "$out" "schema.registry.url" && has "$out" "http://***@cli-sr:2" && ! has "$out" sr-pw-in-profile && ! has "$out" sr-token-value && ! has "$out" sr-url-pw'
run "$KLUA" --profile sr -e 'local p = klua.producer(); assert(p:produce{ topic = "sr", value = "v" }); p:close(); print("sent")'
check "a client takes the registry keys and leaves them out of librdkafka" eval '[ $rc = 0 ] && [ "$out" = sent ]'
run "$KLUA" -X schema.registry.basic.auth.user.info=no-colon-secret -e 'print(1)'
check "a bad registry user.info exits 2 without the value" eval '[ $rc = 2 ] && has "$err" "user:password" && ! has "$err" no-colon-secret'
run "$KLUA" --schema-registry sr-without-scheme:8081 -e 'print(1)'
check "--schema-registry without http:// exits 2" eval '[ $rc = 2 ] && has "$err" "--schema-registry: bad value for '"'"'schema.registry.url'"'"'"'
KLUA_SCHEMA_REGISTRY=http://env-sr:1 run "$KLUA" --schema-registry= -e 'print(1)'
check "--schema-registry= needs a URL" eval '[ $rc = 2 ] && has "$err" "--schema-registry needs a URL"'
printf 'return { profiles = {\n  default = { brokers = "default-host:9092" },\n  prod = { brokers = "prod-host:9093", ["security.protocol"] = "SASL_SSL", ["sasl.username"] = "svc",\n           ["sasl.password"] = { env = "KLUA_TEST_PW" }, ["ssl.key.password"] = { file = "%s" },\n           ["linger.ms"] = 5 },\n} }\n' "$tmp/secret" >"$tmp/cfg/klua/config.lua"
run "$KLUA" --profile staging -e 'print(1)'
check "an unknown profile exits 2 naming it and the profiles" eval '[ $rc = 2 ] && has "$err" "unknown profile '"'"'staging'"'"'" && has "$err" "default, prod"'
run "$KLUA" --profile prod -e 'print(1)'
check "an unset secret env var exits 2 naming it" eval '[ $rc = 2 ] && has "$err" "KLUA_TEST_PW is not set" && has "$err" "sasl.password"'
printf 'return { profiles = { x = { colour = "red" } } }\n' >"$tmp/cfg/klua/config.lua"
run "$KLUA" --profile x -e 'print(1)'
check "an unknown profile key is named" eval '[ $rc = 2 ] && has "$err" "unknown key '"'"'colour'"'"'"'
printf 'return { profiles = { x = { brokers = "h:1", ["linger.msx"] = 5 } } }\n' >"$tmp/cfg/klua/config.lua"
run "$KLUA" --profile x -e 'print(1)'
check "a profile's unknown property exits 2 naming the profile and the nearest property" eval '[ $rc = 2 ] && has "$err" "linger.msx" && has "$err" "profile x" && has "$err" "did you mean '"'"'linger.ms'"'"'"'
printf 'return {\n profiles = { x = { brokers = os.getenv("HOME") } } }\n' >"$tmp/cfg/klua/config.lua"
run "$KLUA" -e 'print(1)'
check "the config file runs without libraries (data only)" eval '[ $rc = 2 ] && has "$err" "config.lua:2:"'
printf 'while true do end\n' >"$tmp/cfg/klua/config.lua"
run "$KLUA" -e 'print(1)'
check "an endless config file fails instead of hanging" eval '[ $rc = 2 ] && has "$err" "runs too long"'
run "$KLUA" version
check "version does not read the config file" eval '[ $rc = 0 ]'
rm -rf "$tmp/cfg"
run "$KLUA" --profile prod -e 'print(1)'
check "a profile without a config file exits 2" eval '[ $rc = 2 ] && has "$err" "no config file"'
run "$KLUA" config show
check "config show without brokers names the embedded cluster" eval '[ $rc = 0 ] && has "$out" "embedded mock cluster"'
export XDG_CONFIG_HOME="$tmp/no-config"

# The admin one-liners' usage errors: exit 2 with one line naming the mistake, before any cluster is asked.
usage_case() {  # usage_case NAME EXPECTED-TEXT ARGS...
  local name=$1 text=$2; shift 2
  run "$KLUA" "$@"
  check "usage: $name" eval '[ $rc = 2 ] && has "$(head -1 <<<"$err")" "klua: $text" && [ -z "$out" ]'
}
usage_case "topic without a subcommand" "topic needs a subcommand: list, describe, create, delete, alter" topic
usage_case "topic with an unknown subcommand, the nearest named" "unknown subcommand 'lst' of klua topic (did you mean 'list'?)" topic lst
usage_case "group with an unknown subcommand" "unknown subcommand 'frob' of klua group (expected: list, describe, delete, reset)" group frob
usage_case "topics with an extra argument" "unexpected argument 'create' to topics" topics create orders
usage_case "topic describe without a topic" "topic describe needs a TOPIC" topic describe
usage_case "topic create --partitions 0" "--partitions must be a whole number from 1 to 2147483647, got '0'" topic create t --partitions 0
usage_case "topic create --config without =" "--config retention: expected key=value" topic create t --config retention
usage_case "topic alter with nothing to change" "topic alter changes nothing" topic alter t
usage_case "topic alter with two topics" "unexpected argument 'u' to topic alter" topic alter t u --partitions 3
usage_case "group without a subcommand" "group needs a subcommand: list, describe, delete, reset" group
usage_case "groups with an extra argument" "unexpected argument 'x' to groups" groups x
usage_case "group reset without topics" "group reset needs --topic T or --all-topics" group reset g --to-earliest
usage_case "group reset with both selections" "give --topic or --all-topics, not both" group reset g --topic t --all-topics --to-earliest
usage_case "group reset without a target" "group reset needs a target: --to-earliest" group reset g --all-topics
usage_case "group reset with two targets" "give one target, not --to-earliest and --to-latest" group reset g --all-topics --to-earliest --to-latest
usage_case "group reset --to-datetime soon" "--to-datetime soon: expected a time" group reset g --all-topics --to-datetime soon
usage_case "group reset --by-duration 1y" "--by-duration 1y: expected a duration" group reset g --all-topics --by-duration 1y
usage_case "group reset --to-offset -1" "--to-offset must be a whole number from 0 to" group reset g --all-topics --to-offset -1
usage_case "group reset --shift-by x" "--shift-by must be a whole number, got 'x'" group reset g --all-topics --shift-by x
usage_case "offsets without a topic" "offsets needs a TOPIC" offsets
usage_case "offsets --time yesterday-ish" "--time sometime: expected a time" offsets t --time sometime
usage_case "metadata with an unknown option" "unknown option --brokerz" metadata --brokerz
run "$KLUA" group reset --help
check "group reset --help prints the usage, exit 0" eval '[ $rc = 0 ] && has "$out" "--by-duration D"'

# consume's and produce's usage errors: exit 2 naming the mistake, before any connection.
run "$KLUA" -b 127.0.0.1:1 consume t -f '%k %y'
check "consume -f with an unknown token exits 2 naming it" eval '[ $rc = 2 ] && has "$err" "klua: -f %k %y: unknown token %y"'
run "$KLUA" -b 127.0.0.1:1 consume t -f 'x%'
check "consume -f with a lone % exits 2" eval '[ $rc = 2 ] && has "$err" "lone %"'
run "$KLUA" -b 127.0.0.1:1 consume t --filter 'value =='
check "consume --filter with a syntax error exits 2 naming the expression" eval '[ $rc = 2 ] && has "$err" "klua: --filter value ==: "'
run "$KLUA" -b 127.0.0.1:1 consume t --json -f '%s'
check "consume --json with -f exits 2" eval '[ $rc = 2 ] && has "$err" "exclusive"'
run "$KLUA" -b 127.0.0.1:1 consume t --json --json-binary hex
check "consume --json-binary other than auto|base64 exits 2" eval '[ $rc = 2 ] && has "$err" "--json-binary must be auto or base64"'
run "$KLUA" -b 127.0.0.1:1 produce t -K ''
check "produce with an empty key separator exits 2" eval '[ $rc = 2 ] && has "$err" "must not be empty"'

# consume writes each message at once on a terminal (and with -u), else buffers: the test it uses.
if command -v script >/dev/null; then
  tty_out=$(script -qec "$KLUA -e 'print(klua._stdout.isatty())'" /dev/null | tr -d '\r')
  check "klua._stdout.isatty(): true on a terminal, false to a pipe" eval '[ "$tty_out" = true ] && [ "$("$KLUA" -e "print(klua._stdout.isatty())" | cat)" = false ]'
fi

# What the embedded mock cluster cannot serve is a cluster's refusal (exit 3), said plainly.
run "$KLUA" --embedded group list
check "group list on the embedded cluster exits 3 saying the mock does not serve it" eval '[ $rc = 3 ] && has "$err" "KLUA_EMBEDDED_UNSUPPORTED: list_groups is not supported by the embedded mock cluster"'

# bash completion: subcommands, options, file names; and no drift from the commands' --help.
"$KLUA" completion bash >"$tmp/klua.bash"
mkdir -p "$tmp/empty"
comp() {  # comp WORDS...: the completions for the last word (in an empty directory: no file names)
  cd "$tmp/empty" && bash -c 'source "$1"; shift; COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); _klua; printf "%s\n" "${COMPREPLY[@]}"' _ "$tmp/klua.bash" "$@"
  cd - >/dev/null
}
check "completion: subcommands" eval '[ "$(comp klua to)" = "$(printf "topic\ntopics")" ] && has "$(comp klua c)" consume && has "$(comp klua c)" config'
check "completion: a command's options" eval '[ "$(comp klua topics --j)" = --json ] && has "$(comp klua consume t --f)" --from'
check "completion: options after global options" eval '[ "$(comp klua -b h:1 -X a=b lag g --max)" = --max-lag ]'
check "completion: file names for run and -F" eval '[ "$(comp klua run "$tmp/sy")" = "$tmp/syntax.lua" ] && [ "$(comp klua -F "$tmp/good.p")" = "$tmp/good.properties" ]'
check "completion: global options after a command, and their values are not completed" eval '[ "$(comp klua topics --emb)" = --embedded ] && has "$(comp klua consume t --pro)" --profile && [ -z "$(comp klua topics -b "")" ] && [ "$(comp klua lag g -F "$tmp/good.p")" = "$tmp/good.properties" ]'
check "completion: words of config and completion" eval '[ "$(comp klua config "")" = show ] && [ "$(comp klua completion b)" = bash ]'
check "completion: subcommands of topic and group, and their options" eval '[ "$(comp klua topic d)" = "$(printf "describe\ndelete")" ] && [ "$(comp klua group r)" = reset ] && [ "$(comp klua group reset g --by)" = --by-duration ]'
check "completion: --value-format and --key-format complete to the formats, --value-schema to files" eval '[ "$(comp klua consume t --value-format a)" = avro ] && [ "$(comp klua produce t --key-format json)" = "$(printf "json\njson-schema")" ] && [ "$(comp klua produce t --value-schema "$tmp/good.p")" = "$tmp/good.properties" ] && [ -z "$(comp klua produce t --value-message "")" ]'
drift=""
for c in $(grep -ohE '^### klua [a-z]+' docs/cli.md | cut -d" " -f3 | sort -u); do
  [ -z "$(comp klua "$c")" ] && drift="$drift command:$c"
  listed=" $(comp klua "$c" - | tr '\n' ' ') $(comp klua - | tr '\n' ' ') "
  for o in $("$KLUA" "$c" --help 2>/dev/null | grep -oE -- '(^|[][ ,|(])--?[a-zA-Z][-a-zA-Z]*' | grep -oE -- '--?[a-zA-Z][-a-zA-Z]*' | sort -u); do
    [[ $listed == *" $o "* ]] || drift="$drift $c:$o"
  done
done
check "completion lists every documented command (docs/cli.md) and every option of their --help${drift:+ (missing:$drift)}" eval '[ -z "$drift" ]'

echo "$pass passed, $fail failed"
[ "$fail" = 0 ]
