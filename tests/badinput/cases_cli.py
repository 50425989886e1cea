# The command line: global options, properties (-X, -F, profiles), each one-liner's options, and the
# TIME / DURATION / number arguments, each option crossed with each kind of bad value.
import re

CASES = []


def case(group, name, argv, exit, pattern, **kw):
    CASES.append(dict(group=group, name=name, argv=argv, exit=exit, pattern=pattern, **kw))


E = ["--embedded"]  # the one-liners' cluster, so that their argument checks are what fails

# ---------------------------------------------------------------------------------- global
case("cli", "unknown option", ["--brokrs", "x"], 2, r"unknown option --brokrs \(did you mean --brokers\?\)")
case("cli", "unknown short option", ["-Q", "topics"], 2, r"unknown option -Q")
case("cli", "-b without value", ["-b"], 2, r"-b needs a broker list")
case("cli", "--brokers without value", ["--brokers"], 2, r"--brokers needs a broker list")
case("cli", "-b empty", ["-b", "", "topics"], 2, r"-b needs a broker list")
case("cli", "-b empty after the command", ["topics", "-b", ""], 2, r"-b needs a broker list")
case("cli", "--brokers= empty", ["--brokers=", "-e", "print(1)"], 2, r"--brokers= needs a broker list")
case("cli", "-X bootstrap.servers empty", ["-X", "bootstrap.servers=", "topics"], 2, r"bootstrap\.servers")
case("cli", "-b only commas", ["-b", ",", "topics"], 2, r"bootstrap|broker")
case("cli", "-X without value", ["-X"], 2, r"-X needs key=value")
case("cli", "-X without =", ["-X", "linger.ms", "topics"], 2, r"-X linger\.ms: expected key=value")
case("cli", "-X empty key", ["-X", "=5", "topics"], 2, r"-X =5: expected key=value")
case("cli", "-X unknown property", ["-X", "lingerms=5", "topics"], 2,
     r"-X: unknown librdkafka property 'lingerms' \(did you mean 'linger\.ms'\?\)")
case("cli", "-F without value", ["-F"], 2, r"-F needs a file")
case("cli", "-F missing file", ["-F", "nope.properties", "-e", "print(1)"], 2, r"-F nope\.properties: cannot open")
case("cli", "-F a directory", ["-F", "adir", "-e", "print('ran')"], 2, r"-F adir: .*directory", files={"adir": None})
case("cli", "-F line without =", ["-F", "p.properties", "-e", "print(1)"], 2, r"p\.properties:2: expected key=value",
     files={"p.properties": "# c\nlinger.ms 5\n"})
case("cli", "-F unknown property", ["-F", "p.properties", "-e", "print(1)"], 2,
     r"-F p\.properties:1: unknown librdkafka property 'lingr\.ms' \(did you mean 'linger\.ms'\?\)",
     files={"p.properties": "lingr.ms=5\n"})
case("cli", "-F bad value", ["-F", "p.properties", "-e", "print(1)"], 2,
     r"-F p\.properties:1: bad value for 'acks'", files={"p.properties": "acks=maybe\n"})
case("cli", "-F an endless device", ["-F", "/dev/zero", "-e", "print(1)"], 2, r"-F /dev/zero: larger than 1 MiB")
case("cli", "-F empty key", ["-F", "p.properties", "-e", "print(1)"], 2, r"p\.properties:1: .*(key|property)",
     files={"p.properties": "=5\n"})
case("cli", "-d without value", ["-d"], 2, r"-d needs debug contexts")
case("cli", "-d bad context", ["-d", "nonsense", "-e", "print(1)"], 2, r"'debug'.*nonsense|debug.*nonsense")
case("cli", "-p without value", ["-p"], 2, r"-p needs a profile name")
case("cli", "--log-format unknown", ["--log-format", "xml", "-e", "print(1)"], 2,
     r"--log-format must be text or json, got 'xml'")
case("cli", "--log-format= empty", ["--log-format=", "-e", "print(1)"], 2, r"--log-format needs text or json")
case("cli", "--log-level without value", ["--log-level"], 2, r"--log-level needs debug, info, warn or error")
case("cli", "--log-level unknown after the command", ["topics", "--log-level", "trace"], 2,
     r"--log-level must be debug, info, warn or error, got 'trace'")
case("cli", "KLUA_LOG_FORMAT unknown", ["-e", "print(1)"], 2, r"KLUA_LOG_FORMAT must be text or json, got 'yaml'",
     env={"KLUA_LOG_FORMAT": "yaml"})
case("cli", "--profile= empty", ["--profile=", "topics"], 2, r"--profile= needs a profile name")
case("cli", "profile unknown, no file", ["--profile", "prod", "-e", "print(1)"], 2,
     r"profile prod \(--profile\): no config file at")
case("cli", "--embedded with -b", ["--embedded", "-b", "h:1", "topics"], 2, r"--embedded and -b both say where")
case("cli", "--embedded with -X brokers", ["--embedded", "-X", "bootstrap.servers=h:1", "topics"], 2,
     r"--embedded and -X bootstrap\.servers both")
case("cli", "unknown command", ["topcis"], 2, r"unknown command 'topcis' \(did you mean 'topics'\?\)")
case("cli", "unknown command far", ["zzzzzz"], 2, r"unknown command 'zzzzzz' \(klua --help lists the commands\)")
case("cli", "run without FILE", ["run"], 2, r"run needs a FILE")
case("cli", "run missing file", ["run", "nope.lua"], 2, r"cannot read nope\.lua: No such file")
case("cli", "script path missing", ["./nope.lua"], 2, r"cannot read \./nope\.lua")
case("cli", "run a directory", ["run", "adir"], 2, r"adir.*(directory|cannot read)", files={"adir": None})
case("cli", "-e without code", ["-e"], 2, r"-e needs a chunk of Lua code")
case("cli", "-e syntax error", ["-e", "x = = 1"], 1, r"\(command line\):1: unexpected symbol near '='")
case("cli", "test without PATH", ["test"], 2, r"test needs at least one PATH")
case("cli", "test missing PATH", ["test", "nope_test.lua"], 1, r"no test files at nope_test\.lua")
case("cli", "test bad option", ["test", "--filtr", "x", "a_test.lua"], 2, r"--filtr")
case("cli", "test --timeout not a number", ["test", "--timeout", "abc", "a_test.lua"], 2, r"--timeout",
     files={"a_test.lua": "test('x', function() end)\n"})
case("cli", "version extra", ["version", "x"], 2, r"unexpected argument 'x'")
case("cli", "help unknown name", ["help", "nosuchthing"], 1, r"nosuchthing")
case("cli", "completion zsh", ["completion", "zsh"], 2, r"zsh")
case("cli", "completion none", ["completion"], 2, r"bash")
case("cli", "config without show", ["config"], 2, r"expected: klua config show")
case("cli", "config other", ["config", "dump"], 2, r"expected: klua config show")
case("cli", "config show extra", ["config", "show", "x"], 2, r"expected: klua config show")
case("cli", "config show bad option", ["config", "show", "--jsn"], 2, r"unknown option --jsn \(did you mean --json\?\)")

for v, why in [("-1", "negative"), ("abc", "word"), ("nan", "nan"), ("", "empty"), ("1e999", "inf")]:
    case("cli", f"klua.unreachable.timeout.ms {why}", ["-X", f"klua.unreachable.timeout.ms={v}", "-e", "print(1)"], 2,
         r"bad value for 'klua\.unreachable\.timeout\.ms'")
case("cli", "unknown klua property", ["-X", "klua.nope=1", "-e", "print(1)"], 2, r"unknown klua property 'klua\.nope'")

# librdkafka properties with bad values, from -X (each names the property and the source)
for prop, v in [("linger.ms", "abc"), ("linger.ms", "-1"), ("linger.ms", "1e12"), ("acks", "maybe"),
                ("compression.codec", "zip"), ("enable.idempotence", "yes please"), ("message.max.bytes", "0"),
                ("security.protocol", "tls"), ("auto.offset.reset", "first"),
                ("isolation.level", "none"), ("session.timeout.ms", "x"), ("batch.size", "-5"),
                ("group.protocol", "modern")]:
    case("cli", f"-X {prop}={v}", ["-X", f"{prop}={v}", "-e", "print(1)"], 2, r"-X: bad value for '" + prop.replace(".", r"\.") + "'")

# -------------------------------------------------------------------------------- profiles
PROFILE_CASES = [
    ("not a table", "return 5", r"must return a table"),
    ("syntax error", "return {", r"config file: .*expected"),
    ("unknown top key", "return { profile = {} }", r"unknown key 'profile' \(expected profiles\)"),
    ("profiles not a table", "return { profiles = 1 }", r"'profiles' must be a table"),
    ("profile not a table", "return { profiles = { default = 1 } }", r"profile 'default' must be a table"),
    ("undotted key", "return { profiles = { default = { lingerms = 5 } } }", r"unknown key 'lingerms'"),
    ("number key", "return { profiles = { default = { 5 } } }", r"keys must be strings"),
    ("function value", "return { profiles = { default = { ['linger.ms'] = function() end } } }", r"'linger\.ms': value must be"),
    ("secret env unset", "return { profiles = { default = { ['sasl.password'] = { env = 'KLUA_NO_SUCH_VAR' } } } }",
     r"environment variable KLUA_NO_SUCH_VAR is not set"),
    ("secret file missing", "return { profiles = { default = { ['sasl.password'] = { file = '/nonexistent/x' } } } }",
     r"cannot read /nonexistent/x"),
    ("secret file a directory", "return { profiles = { default = { ['sasl.password'] = { file = '/' } } } }",
     r"'sasl\.password': / is a directory, not a secret file"),
    ("secret file endless", "return { profiles = { default = { ['sasl.password'] = { file = '/dev/zero' } } } }",
     r"/dev/zero is larger than 1 MiB, not a secret"),
    ("secret table both", "return { profiles = { default = { ['sasl.password'] = { env = 'A', file = 'b' } } } }",
     r"must be \{ env = \"NAME\" \} or \{ file"),
    ("secret table empty", "return { profiles = { default = { ['sasl.password'] = {} } } }", r"must be \{ env ="),
    ("endless loop", "while true do end", r"runs too long"),
    ("uses a library", "return { profiles = { default = { brokers = os.getenv('X') } } }", r"os"),
    ("unknown property", "return { profiles = { default = { ['lingr.ms'] = 5 } } }",
     r"unknown librdkafka property 'lingr\.ms' \(did you mean 'linger\.ms'\?\)"),
    ("bad property value", "return { profiles = { default = { ['compression.codec'] = 'zip' } } }",
     r"bad value for 'compression\.codec'"),
]
for name, text, pat in PROFILE_CASES:
    case("profiles", name, ["-e", "print(1)"], 2, pat, config=text)
case("profiles", "unknown profile lists", ["--profile", "prdo", "-e", "print(1)"], 2,
     r"unknown profile 'prdo' \(--profile\); .* has: default, prod",
     config="return { profiles = { default = {}, prod = {} } }")
case("profiles", "KLUA_PROFILE unknown", ["-e", "print(1)"], 2, r"unknown profile 'nope' \(KLUA_PROFILE\)",
     config="return { profiles = { default = {} } }", env={"KLUA_PROFILE": "nope"})

# ---------------------------------------------------------------------- commands need a cluster
for argv in (["topics"], ["groups"], ["lag", "g"], ["produce", "t"], ["consume", "t"], ["topic", "list"],
             ["group", "list"], ["offsets", "t"], ["metadata"], ["replay", "a", "b"]):
    case("cli", "no cluster: " + " ".join(argv), argv, 2, r"talks to a Kafka cluster and none is configured")
case("cli", "no cluster: provision", ["provision", "s.lua"], 2, r"talks to a Kafka cluster and none is configured",
     files={"s.lua": "return { topics = { { name = 'x' } } }"})

# ------------------------------------------------------------------ each command's own options
CMDS = {
    "topics": ["topics"], "groups": ["groups"], "lag": ["lag", "g"], "produce": ["produce", "t"],
    "consume": ["consume", "t"], "offsets": ["offsets", "t"], "metadata": ["metadata"],
    "replay": ["replay", "a", "b"], "topic list": ["topic", "list"], "group list": ["group", "list"],
    "provision": ["provision", "s.lua"], "topic describe": ["topic", "describe", "t"],
}
for name, argv in CMDS.items():
    case("cli", f"{name}: unknown option", E + argv + ["--bogus-option"], 2, r"unknown option --bogus-option")
    case("cli", f"{name}: json typo", E + argv + ["--jsno"], 2, r"unknown option --jsno \(did you mean --json\?\)")
for argv, pat in [(["lag"], r"lag needs a GROUP"), (["produce"], r"produce needs exactly one TOPIC"),
                  (["produce", "a", "b"], r"produce needs exactly one TOPIC"),
                  (["consume"], r"consume needs exactly one TOPIC"), (["consume", "a", "b"], r"consume needs exactly one TOPIC"),
                  (["offsets"], r"offsets needs a TOPIC"), (["replay", "a"], r"replay needs SOURCE and TARGET"),
                  (["replay", "a", "b", "c"], r"replay needs SOURCE and TARGET"),
                  (["provision"], r"provision needs exactly one FILE"), (["provision", "a", "b"], r"provision needs exactly one FILE"),
                  (["topics", "create", "x"], r"unexpected argument 'create' to topics"),
                  (["groups", "x"], r"unexpected argument 'x' to groups"),
                  (["topic"], r"topic"), (["topic", "frob"], r"frob"), (["group"], r"group"), (["group", "frob"], r"frob"),
                  (["topic", "create"], r"TOPIC"), (["topic", "delete"], r"TOPIC"), (["topic", "describe"], r"TOPIC"),
                  (["topic", "alter", "t"], r"nothing to change|--partitions|--config"),
                  (["topic", "create", "t", "--config", "retention.ms"], r"--config.*(=|k=v)"),
                  (["topic", "alter", "t", "--config", "x"], r"--config.*(=|k=v)"),
                  (["group", "describe"], r"GROUP"), (["group", "delete"], r"GROUP"), (["group", "reset"], r"GROUP"),
                  (["group", "reset", "g", "--to-earliest"], r"--topic|--all-topics"),
                  (["group", "reset", "g", "--all-topics"], r"--to-earliest|TARGET|target"),
                  (["group", "reset", "g", "--all-topics", "--to-earliest", "--to-latest"], r"(one|two|TARGET|target)"),
                  (["group", "reset", "g", "--topic", "t:x", "--to-earliest"], r"t:x"),
                  (["group", "reset", "g", "--topic", "t:1,,2", "--to-earliest"], r"t:1,,2"),
                  (["group", "reset", "g", "--topic", "t", "--all-topics", "--to-earliest"], r"--topic.*--all-topics|--all-topics.*--topic"),
                  (["produce", "t", "-H", "novalue"], r"-H expects name=value, got novalue"),
                  (["produce", "t", "-H", "=v"], r"-H expects name=value"),
                  (["produce", "t", "-k", ""], r"--key-separator must not be empty"),
                  (["produce", "t", "-k"], r"-k needs a value|--key-separator needs a value"),
                  (["consume", "t", "-f", "%z"], r"%z"), (["consume", "t", "-f", "%"], r"-f|--format|%"),
                  (["consume", "t", "-f", "x", "--json"], r"-f.*--json|--json.*-f|--format"),
                  (["consume", "t", "--json-binary", "hex"], r"--json-binary.*hex|hex.*--json-binary"),
                  (["consume", "t", "--filter", "value =="], r"--filter"),
                  (["consume", "t", "--filter", "x = 1"], r"--filter"),
                  (["consume", "t", "-p", "0", "-g", "grp"], r"-p and -g"),
                  (["consume", "t", "--from"], r"--from needs a value"),
                  (["consume", "t", "--from", "start"], r"--from start"),
                  (["replay", "a", "b", "--since", "2h", "--from", "beginning"], r"--since and --from"),
                  (["replay", "a", "b", "--group"], r"--group needs a value"),
                  (["provision", "s.lua", "--apply", "--check"], r"--apply.*--check|--check.*--apply"),
                  ]:
    files = {"s.lua": "return { topics = { { name = 'x' } } }"} if "provision" in argv else None
    case("cli", "usage: " + " ".join(argv), E + argv, 2, pat, files=files)
# --value-format / --key-format (issue 20): the format, its schema options, and no registry configured
# (a registry that is never reached: 127.0.0.1:9 refuses; what is checked comes before any request).
NOREG = {"KLUA_SCHEMA_REGISTRY": ""}
SOMEREG = {"KLUA_SCHEMA_REGISTRY": "http://127.0.0.1:9/apis/ccompat/v7"}
AVSC = '{"type":"record","name":"R","fields":[{"name":"id","type":"string"}]}'
for argv, pat, kw in [
        (["consume", "t", "--value-format", "xml"], r"--value-format must be one of string, json, avro, protobuf, "
                                                    r"json-schema, got 'xml'", {}),
        (["consume", "t", "--key-format", "avr"], r"--key-format must be one of .*got 'avr'", {}),
        (["produce", "t", "--value-format", "xml"], r"--value-format must be one of .*got 'xml'", {}),
        (["produce", "t", "--value-schema", "s.avsc"], r"--value-schema needs --value-format avro, protobuf or json-schema",
         {}),
        (["produce", "t", "--value-format", "json", "--value-schema-id", "3"], r"--value-schema-id needs --value-format", {}),
        (["produce", "t", "--value-format", "avro", "--value-message", "M"], r"--value-message needs --value-format protobuf",
         {}),
        (["produce", "t", "--key-format", "json"], r"--key-format needs -k SEP", {}),
        (["produce", "t", "--value-format", "avro", "--value-schema", "s.avsc", "--value-schema-id", "1"],
         r"--value-schema and --value-schema-id are exclusive", {}),
        (["consume", "t", "--value-format", "avro"], r"--value-format avro needs a schema registry: --schema-registry URL",
         {"env": NOREG}),
        (["produce", "t", "--value-format", "protobuf"], r"--value-format protobuf needs a schema registry",
         {"env": NOREG}),
        (["produce", "t", "--value-format", "avro", "--value-schema", "nope.avsc"], r"--value-schema nope\.avsc: No such file",
         {"env": SOMEREG}),
        (["produce", "t", "--value-format", "avro", "--value-schema", "bad.avsc"], r"--value-schema bad\.avsc: .*KLUA_SCHEMA",
         {"env": SOMEREG, "files": {"bad.avsc": '{"type":"record","name":"R","fields":[{"name":"id"}]}'}}),
        ]:
    case("serde-cli", "usage: " + " ".join(argv), E + argv, 2, pat, **kw)
case("serde-cli", "produce --value-format json: a line that is not JSON", E + ["produce", "t", "--value-format", "json"],
     1, r"klua: line 2: value: KLUA_JSON.*\n(.|\n)*1 line\(s\) not sent", stdin='{"a":1}\n{"a":\n[]\n')
case("provision", "cli: missing file", E + ["provision", "nope.lua"], 1, r"nope\.lua")
case("provision", "cli: syntax error", E + ["provision", "s.lua"], 1, r"s\.lua:1:", files={"s.lua": "return {"})
case("provision", "cli: not a table", E + ["provision", "s.lua"], 1, r"s\.lua", files={"s.lua": "return 5"})
case("provision", "cli: bad json", E + ["provision", "s.json"], 1, r"s\.json.*(offset|byte|position)",
     files={"s.json": "{\"topics\": [}"})
case("provision", "cli: partitions 0", E + ["provision", "s.lua"], 2, r"s\.lua: topic 'x': 'partitions' must be",
     files={"s.lua": "return { topics = { { name = 'x', partitions = 0 } } }"})

# ---------------------------------------------------- numbers: every numeric option x bad values
# (kinds: "fraction" where a whole number is needed, "huge" (1e10) where an int32 is (partitions))
NUMERIC = [
    ("consume -p", ["consume", "t", "-p"], "--partition", "fraction huge"),
    ("consume -n", ["consume", "t", "-n"], "--count", "fraction"),
    ("produce -p", ["produce", "t", "-p"], "--partition", "fraction huge"),
    ("offsets -p", ["offsets", "t", "-p"], "--partition", "fraction huge"),
    ("replay -p", ["replay", "a", "b", "-p"], "--partition", "fraction huge"),
    ("replay --rate", ["replay", "a", "b", "--rate"], "--rate", ""),
    ("replay --batch", ["replay", "a", "b", "--batch"], "--batch", "fraction huge"),
    ("lag --max-lag", ["lag", "g", "--max-lag"], "--max-lag", "fraction"),
    ("group reset --to-offset", ["group", "reset", "g", "--all-topics", "--to-offset"], "--to-offset", "fraction"),
    ("topic create --partitions", ["topic", "create", "t", "--partitions"], "--partitions", "fraction huge"),
    ("topic create --replication-factor", ["topic", "create", "t", "--replication-factor"], "--replication-factor",
     "fraction huge"),
    ("topic alter --partitions", ["topic", "alter", "t", "--partitions"], "--partitions", "fraction huge"),
]
BAD_NUMBERS = [("word", "abc"), ("negative", "-1"), ("fraction", "1.5"), ("huge", "1e10"), ("inf", "1e999"),
               ("hex", "0x10"), ("empty", ""), ("trailing junk", "3x")]
for name, argv, opt, kinds in NUMERIC:
    for why, v in BAD_NUMBERS:
        if why in ("fraction", "huge") and why not in kinds:
            continue
        case("numbers", f"{name} {why}", E + argv + [v], 2, opt + r"[ =].*(must|expected|whole|number)")
for why, v in [("word", "abc"), ("fraction", "1.5"), ("inf", "1e999"), ("empty", "")]:
    case("numbers", f"group reset --shift-by {why}", E + ["group", "reset", "g", "--all-topics", "--shift-by", v], 2,
         r"--shift-by[ =].*(must|expected|whole|number)")
for name, argv, opt in [("topic create --partitions 0", ["topic", "create", "t", "--partitions", "0"], "--partitions"),
                        ("replay --rate 0", ["replay", "a", "b", "--rate", "0"], "--rate"),
                        ("replay --batch 0", ["replay", "a", "b", "--batch", "0"], "--batch"),
                        ("topic create --replication-factor 0", ["topic", "create", "t", "--replication-factor", "0"], "--replication-factor")]:
    case("numbers", name, E + argv, 2, opt + r"[ =].*(must|expected|whole|number)")

# ------------------------------------------------------ TIME / DURATION options x bad values
TIME_OPTS = [("consume --from", ["consume", "t", "--from"], "--from"), ("offsets --time", ["offsets", "t", "--time"], "--time"),
             ("replay --from", ["replay", "a", "b", "--from"], "--from"), ("replay --to", ["replay", "a", "b", "--to"], "--to"),
             ("group reset --to-datetime", ["group", "reset", "g", "--all-topics", "--to-datetime"], "--to-datetime")]
BAD_TIMES = [("month 13", "2024-13-45T99:00:00Z"), ("day 45", "2024-01-45"), ("feb 30", "2024-02-30"),
             ("feb 29 non-leap", "2023-02-29T00:00:00Z"), ("hour 24", "2024-01-01T24:00:00Z"),
             ("minute 60", "2024-01-01T10:60:00Z"), ("offset +25", "2024-01-01T10:00:00+25:00"),
             ("short date", "2024-1-1"), ("word", "yesterday"), ("time only", "12:00"), ("double sign", "--2h"),
             ("bad unit", "2x"), ("month 0", "2024-00-10")]
for name, argv, opt in TIME_OPTS:
    for why, v in BAD_TIMES:
        case("timespec", f"{name} {why}", E + argv + [v], 2, opt + " " + re.escape(v) + r": expected a time")
DUR_OPTS = [("replay --since", ["replay", "a", "b", "--since"], "--since"),
            ("group reset --by-duration", ["group", "reset", "g", "--all-topics", "--by-duration"], "--by-duration")]
for name, argv, opt in DUR_OPTS:
    for why, v in [("word", "abc"), ("years", "1y"), ("P alone", "P"), ("PT alone", "PT"), ("months", "P1M"),
                   ("two dots", "1.5.5h"), ("empty", ""), ("unit first", "h1")]:
        case("timespec", f"{name} {why}", E + argv + [v], 2, opt + r".*expected a duration")

# properties librdkafka takes at rd_kafka_conf_set and refuses only when the client is made
case("cli", "-X partition.assignment.strategy=random", ["-X", "partition.assignment.strategy=random", "-e",
     "klua.consumer{group='g'}"], 1, r"klua\.consumer: cannot create the client: Unsupported partition\.assignment\.strategy: random")
case("cli", "-X sasl.mechanism=NOPE", ["-X", "security.protocol=sasl_plaintext", "-X", "sasl.mechanism=NOPE", "-e",
     "klua.producer()"], 1, r"klua\.producer: cannot create the client: .*NOPE")
