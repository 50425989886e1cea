# The Lua API: each module's options and arguments crossed with bad values. A programmer error
# raises KLUA_INVALID_ARGUMENT "bad argument #N to 'FN' (DETAIL naming the option)" (exit 1); a
# runtime failure returns nil, err, which the snippets hand to assert (exit 1 with its message, or
# 3 when it carries a Kafka code).
import re

CASES = []


def case(group, name, lua, exit, pattern, **kw):
    CASES.append(dict(group=group, name=name, lua=lua, exit=exit, pattern=pattern, **kw))


def bad_arg(fn, detail, n=r"\d+"):
    return r"bad argument #" + n + " to '" + re.escape(fn) + r"' \(.*" + detail


NAN, INF = "0/0", "1/0"

# ------------------------------------------------------------------------------ klua (core)
for v, why in [(NAN, "nan"), ("1.5", "fraction"), ("256", "too big"), ("-1", "negative"), ("'x'", "word"), ("{}", "table")]:
    case("klua", f"klua.exit {why}", f"klua.exit({v})", 1, bad_arg("klua.exit", "exit code must be a whole number"))
case("klua", "os.exit nan", "os.exit(0/0)", 1, bad_arg("klua.exit", "exit code must be"))
for v, why in [(NAN, "nan"), ("-1", "negative"), ("'x'", "word"), (INF, "inf")]:
    if why != "inf":  # (klua.sleep(math.huge) sleeps until cancelled)
        case("klua", f"klua.sleep {why}", f"klua.sleep({v})", 1, r"klua\.sleep")
case("klua", "spawn a number", "klua.spawn(1)", 1, bad_arg("klua.spawn", "function"))
case("klua", "set_config empty key", "klua.set_config('', 1)", 1, bad_arg("klua.set_config", "must not be empty"))
case("klua", "set_config table value", "klua.set_config('a.b', {})", 1, bad_arg("klua.set_config", "value must be"))
case("klua", "set_config number key", "klua.set_config(1, 2)", 1, r"klua\.set_config")
case("klua", "log.info a number", "klua.log.info(1)", 1, bad_arg("klua.log.info", "message must be a string, got number", "1"))
case("klua", "log.debug a table below the threshold", "klua.log.debug({})", 1,
     bad_arg("klua.log.debug", "message must be a string, got table", "1"))
case("klua", "log.warn fields a string", "klua.log.warn('m', 'f')", 1,
     bad_arg("klua.log.warn", "fields must be a table, got string", "2"))
case("klua", "log.error a numbered field", "klua.log.error('m', { 'x' })", 1,
     bad_arg("klua.log.error", "field names must be strings, got number", "2"))
case("klua", "log.set_level unknown", "klua.log.set_level('trace')", 1,
     bad_arg("klua.log.set_level", 'level must be "debug", "info", "warn" or "error", got "trace"', "1"))
case("klua", "uuid version 9", "klua.uuid(9)", 1, r"klua\.uuid")
case("klua", "random_bytes -1", "klua.random_bytes(-1)", 1, r"klua\.random_bytes")
case("klua", "random_bytes nan", "klua.random_bytes(0/0)", 1, r"klua\.random_bytes")
case("klua", "base64 decode junk", "assert(klua.base64.decode('@@@'))", 1, r"base64|invalid")
case("klua", "base64 encode table", "klua.base64.encode({})", 1, r"klua\.base64\.encode")
case("klua", "task join timeout -1", "klua.spawn(function() end):join{timeout_ms=-1}", 1, r"join.*timeout_ms")
case("klua", "errors.new not a table", "klua.errors.new(5)", 1, r"bad argument #1 to 'new' \(table expected, got number\)")
case("klua", "embedded create_topic 0 partitions", "klua.embedded.create_topic('t', 0)", 1, r"partitions|create_topic")
case("klua", "embedded create_topic 1e10 partitions", "klua.embedded.create_topic('t', 1e10)", 1,
     r"bad argument #2 to 'create_topic' \(partitions must be a whole number from 1 to 100000\)")
case("klua", "error object whose tostring raises", "error(setmetatable({}, {__tostring = function() error('inner') end}))",
     1, r"klua: ")
case("klua", "require unknown module", "require('klua.nope')", 1, r"module 'klua\.nope' not found")

# ------------------------------------------------------------------------------ timespec (library)
for s in ["2024-13-45T99:00:00Z", "2024-02-30", "2023-02-29", "2024-04-31", "2024-01-01T10:00:00+19:00",
          "2024-01-01T10:00:00+05:77", "yesterday", "", "--1h", "+-1h"]:
    case("timespec", f"time('{s}')", f"assert(klua.timespec.time('{s}'))", 1, r"expected a time")
for s in ["abc", "1y", "P", "PT", "P1M", "", "h1", "1.5.5h"]:
    case("timespec", f"duration('{s}')", f"assert(klua.timespec.duration('{s}'))", 1, r"expected a duration")
for v, why in [(NAN, "nan"), (INF, "inf"), ("-1/0", "-inf")]:
    case("timespec", f"time({why})", f"assert(klua.timespec.time({v}))", 1, r"expected a time")
    case("timespec", f"duration({why})", f"assert(klua.timespec.duration({v}))", 1, r"expected a duration")
case("timespec", "time(table)", "assert(klua.timespec.time({}))", 1, r"expected a time")

# ------------------------------------------------------------------------------ json
for text, why in [("{", "unclosed object"), ("[1,]", "trailing comma"), ("{\"a\" 1}", "missing colon"), ("nul", "bad literal"),
                  ("\"\\x\"", "bad escape"), ("1 2", "trailing text"), ("", "empty"), ("\"abc", "unclosed string"),
                  ("[" * 2000 + "]" * 2000, "too deep"), ("01", "leading zero"), ("NaN", "nan literal"),
                  ("{\"a\":1,}", "object trailing comma"), ("\"\\ud800\"", "lone surrogate")]:
    case("json", f"decode {why}", f"local v, e = klua.json.decode({text!r}); assert(v == nil, 'accepted'); error(e, 0)", 1,
         r"(offset|byte|position|at|depth)", pending=None)
for v, why in [(NAN, "nan"), (INF, "inf"), ("print", "function"), ("coroutine.create(print)", "thread"),
               ("(function() local t = {} t.t = t return t end)()", "cycle"), ("{[{}] = 1}", "table key")]:
    case("json", f"encode {why}", f"assert(klua.json.encode({v}))", 1, r"klua\.json\.encode|encode|cannot|cycle|mixed|NaN|nan|inf|function|thread|key")
case("json", "decode a number", "klua.json.decode(5)", 1, r"bad argument #1 to 'decode' \(string expected, got number\)")
case("json", "encode bad option", "klua.json.encode(1, {bogus = true})", 1, r"bogus")

# ------------------------------------------------------------------------------ producer
PRODUCER_OPTS = [("brokers", "1"), ("on_error", "'x'"), ("on_log", "1"), ("on_stats", "true"), ("on_delivery", "{}"),
                 ("timeout_ms", "'x'"), ("timeout_ms", "-1"), ("timeout_ms", NAN)]
for opt, v in PRODUCER_OPTS:
    case("producer", f"option {opt}={v}", f"klua.producer{{ {opt} = {v} }}", 1, bad_arg("klua.producer", opt))
case("producer", "unknown option", "klua.producer{ lingerms = 5 }", 1, bad_arg("klua.producer", "unknown option 'lingerms'"))
case("producer", "unknown property", "klua.producer{ ['lingr.ms'] = 5 }", 1, r"lingr\.ms")
case("producer", "bad property value", "klua.producer{ ['linger.ms'] = 'soon' }", 1,
     r"klua\.producer: bad configuration property \"linger\.ms\" \(from the script's table\): Invalid value")
case("producer", "property a table", "klua.producer{ ['linger.ms'] = {} }", 1, r"linger\.ms.*must be a string, number or boolean")
case("producer", "not a table", "klua.producer(5)", 1, bad_arg("klua.producer", "table"))
SEND = [("no topic", "{ value = 'v' }", "topic"), ("topic a number", "{ topic = 1, value = 'v' }", "topic"),
        ("empty topic", "{ topic = '', value = 'v' }", "topic"),
        ("value a table", "{ topic = 't', value = {} }", "value"), ("key a table", "{ topic = 't', key = {} }", "key"),
        ("headers a string", "{ topic = 't', headers = 'h' }", "headers"),
        ("header not a pair", "{ topic = 't', headers = { 'h' } }", "header"),
        ("header name a number", "{ topic = 't', headers = { { 1, 'v' } } }", "header"),
        ("partition a word", "{ topic = 't', partition = 'x' }", "partition"),
        ("partition fraction", "{ topic = 't', partition = 1.5 }", "partition"),
        ("partition -3", "{ topic = 't', partition = -3 }", "partition"),
        ("partition 1e10", "{ topic = 't', partition = 1e10 }", "partition"),
        ("partition nan", "{ topic = 't', partition = 0/0 }", "partition"),
        ("timestamp a word", "{ topic = 't', timestamp = 'x' }", "timestamp"),
        ("timestamp nan", "{ topic = 't', timestamp = 0/0 }", "timestamp"),
        ("unknown field", "{ topic = 't', vlaue = 'v' }", "vlaue"),
        ("not a table", "'t'", "table")]
for method in ("send", "produce"):
    for why, msg, detail in SEND:
        case("producer", f"p:{method} {why}", f"local p = klua.producer(); p:{method}({msg})", 1,
             bad_arg("p:" + method, detail))
case("producer", "header name with NUL", "local p = klua.producer(); p:send{ topic = 't', headers = { { 'a\\0b', 'v' } } }",
     1, r"header")
case("producer", "produce_batch not a list", "klua.producer():produce_batch('x')", 1, bad_arg("p:produce_batch", "list|table"))
case("producer", "produce_batch bad item", "klua.producer():produce_batch{ { value = 'v' } }", 1, r"p:produce_batch.*topic")
for v, why in [("-1", "negative"), (NAN, "nan"), ("'x'", "word")]:
    case("producer", f"flush timeout {why}", f"klua.producer():flush{{ timeout_ms = {v} }}", 1, bad_arg("p:flush", "timeout_ms"))
case("producer", "flush unknown option", "klua.producer():flush{ timout_ms = 5 }", 1, bad_arg("p:flush", "timout_ms"))
case("producer", "send after close", "local p = klua.producer(); p:close(); p:send{ topic = 't', value = 'v' }", 1, r"closed")
case("producer", "begin without transactional.id", "local p = klua.producer(); assert(p:begin())", 3, r"transactional\.id")
case("producer", "unknown topic", "local p = klua.producer{['message.timeout.ms'] = 2000}; "
     "assert(p:produce{ topic = 'nope', partition = 7, value = 'v' })", 3, r"nope|UNKNOWN|partition")

# ------------------------------------------------------------------------------ consumer
CONSUMER_OPTS = [("group", "{}"), ("topics", "5"), ("topics", "{ 1 }"), ("on_assign", "'x'"), ("on_revoke", "1"),
                 ("on_lost", "{}"), ("on_error", "true"), ("brokers", "{}")]
for opt, v in CONSUMER_OPTS:
    case("consumer", f"option {opt}={v}", f"klua.consumer{{ group = 'g', {opt} = {v} }}" if opt != "group" else
         f"klua.consumer{{ group = {v} }}", 1, bad_arg("klua.consumer", opt))
case("consumer", "unknown option", "klua.consumer{ group = 'g', topcis = { 't' } }", 1, bad_arg("klua.consumer", "topcis"))
case("consumer", "group and group.id", "klua.consumer{ group = 'g', ['group.id'] = 'h' }", 1, r"group.*group\.id")
case("consumer", "invalid regex names it", "local c = klua.consumer{ group = 'g', topics = { '^[' } }; c:poll{ timeout_ms = 2000 }",
     1, bad_arg("klua.consumer", r"\^\[.*invalid regular expression"))
C = "local c = klua.consumer{ group = 'g' }; "
case("consumer", "c:subscribe invalid regex names it", C + "c:subscribe{ 't', '^(a' }", 1,
     bad_arg("c:subscribe", r"\^\(a.*invalid regular expression"))
POLL = [("timeout_ms -1", "{ timeout_ms = -1 }"), ("timeout_ms nan", "{ timeout_ms = 0/0 }"),
        ("timeout_ms word", "{ timeout_ms = 'x' }"), ("unknown option", "{ timout_ms = 5 }"), ("not a table", "'x'")]
for why, arg in POLL:
    case("consumer", f"c:poll {why}", C + f"c:poll({arg})", 1, bad_arg("c:poll", "timeout_ms|timout_ms|table"))
case("consumer", "poll_batch max 0", C + "c:poll_batch(0)", 1, bad_arg("c:poll_batch", "max"))
case("consumer", "poll_batch max nan", C + "c:poll_batch(0/0)", 1, bad_arg("c:poll_batch", "max"))
case("consumer", "poll_batch max word", C + "c:poll_batch('x')", 1, bad_arg("c:poll_batch", "max|number"))
ASSIGN = [("not a list", "'t'"), ("item not a table", "{ 't' }"), ("no topic", "{ { partition = 0 } }"),
          ("no partition", "{ { topic = 't' } }"), ("partition -3", "{ { topic = 't', partition = -3 } }"),
          ("partition 1e10", "{ { topic = 't', partition = 1e10 } }"), ("partition 1.5", "{ { topic = 't', partition = 1.5 } }"),
          ("offset word", "{ { topic = 't', partition = 0, offset = 'first' } }"),
          ("offset nan", "{ { topic = 't', partition = 0, offset = 0/0 } }")]
for why, arg in ASSIGN:
    pend = None
    case("consumer", f"c:assign {why}", C + f"c:assign({arg})", 1, bad_arg("c:assign", "topic|partition|offset|list|table"),
         pending=pend)
for why, args in [("no partition", "'t'"), ("partition -3", "'t', -3, 0"), ("offset word", "'t', 0, 'first'"),
                  ("offset nan", "'t', 0, 0/0"), ("topic number", "1, 0, 0")]:
    pend = None
    case("consumer", f"c:seek {why}", C + f"c:seek({args})", 1, bad_arg("c:seek", "topic|partition|offset|number|string"),
         pending=pend)
for why, arg in [("not a message", "5"), ("no offset", "{ topic = 't', partition = 0 }"),
                 ("offset -5", "{ topic = 't', partition = 0, offset = -5 }"),
                 ("offset end", "{ topic = 't', partition = 0, offset = 'end' }"),
                 ("list item without offset", "{ { topic = 't', partition = 0, offset = 3 }, { topic = 't', partition = 1 } }")]:
    case("consumer", f"c:store {why}", C + f"c:store({arg})", 1, bad_arg("c:store", "offset|message|table"))
case("consumer", "subscribe a number", C + "c:subscribe(5)", 1, bad_arg("c:subscribe", "topic|list|table|string"))
case("consumer", "watermarks no partition", C + "c:watermarks('t')", 1, bad_arg("c:watermarks", "number expected, got no value", "3"))
case("consumer", "watermarks partition -1", C + "c:watermarks('t', -1)", 1, bad_arg("c:watermarks", "partition"))
case("consumer", "commit bad what", C + "c:commit(5)", 1, bad_arg("c:commit", "message|partition|table"))
case("consumer", "offsets_for_times bad", C + "c:offsets_for_times('t')", 1, bad_arg("c:offsets_for_times", "list|table|partition"))
case("consumer", "messages unknown option", C + "for m in c:messages{ untill_end = true } do end", 1,
     bad_arg("c:messages", "untill_end"))
case("consumer", "poll after close", C + "c:close(); c:poll{ timeout_ms = 10 }", 1, r"closed")
case("consumer", "poll without subscription", "local c = klua.consumer{ group = 'g' }; local m, e = c:poll{ timeout_ms = 100 };"
     " assert(m == nil); print('ok nil')", 0, r"ok nil")

# ------------------------------------------------------------------------------ admin
A = "local a = klua.admin(); "
case("admin", "unknown option", "klua.admin{ timout_ms = 5 }", 1, bad_arg("klua.admin", "timout_ms"))
case("admin", "timeout_ms -1", A + "a:list_topics{ timeout_ms = -1 }", 1, bad_arg("admin:list_topics", "timeout_ms"))
case("admin", "timeout_ms nan", A + "a:list_topics{ timeout_ms = 0/0 }", 1, bad_arg("admin:list_topics", "timeout_ms"))
case("admin", "list_topics unknown option", A + "a:list_topics{ intrnal = true }", 1, bad_arg("admin:list_topics", "intrnal"))
CREATE = [("not a list", "'t'"), ("no name", "{ { partitions = 1 } }"), ("name a number", "{ { name = 5 } }"),
          ("partitions 0", "{ { name = 't', partitions = 0 } }"), ("partitions -1", "{ { name = 't', partitions = -1 } }"),
          ("partitions 1.5", "{ { name = 't', partitions = 1.5 } }"), ("partitions 1e10", "{ { name = 't', partitions = 1e10 } }"),
          ("partitions nan", "{ { name = 't', partitions = 0/0 } }"),
          ("replication_factor 0", "{ { name = 't', replication_factor = 0 } }"),
          ("configs a list", "{ { name = 't', configs = { 'x' } } }"),
          ("unknown field", "{ { name = 't', partitons = 2 } }")]
CREATE[0] = ("not a list", "5")
for why, arg in CREATE:
    pend = None
    case("admin", f"create_topics {why}", A + f"a:create_topics({arg})", 1,
         bad_arg("admin:create_topics", "name|partitions|replication_factor|configs|partitons|list|table"), pending=pend)
for method, arg in [("delete_topics", "5"), ("describe_topics", "5"), ("delete_groups", "5"), ("describe_groups", "5"),
                    ("create_partitions", "'t'"), ("delete_records", "'t'"), ("list_offsets", "5"),
                    ("describe_configs", "5"), ("alter_configs", "'t'"), ("create_acls", "'x'"), ("delete_acls", "5")]:
    case("admin", f"{method} not a list", A + f"a:{method}({arg})", 1, bad_arg("admin:" + method, "list|table|string"))
case("admin", "list_group_offsets no group", A + "a:list_group_offsets()", 1, bad_arg("admin:list_group_offsets", "group"))
case("admin", "reset_group_offsets bad target", A + "a:reset_group_offsets('g', {'t'}, 'middle')", 1,
     bad_arg("admin:reset_group_offsets", "'to' must be \"earliest\"", "4"))
case("admin", "reset_group_offsets bad duration", A + "a:reset_group_offsets('g', {'t'}, { duration = 'soon' })", 1,
     r"soon|duration")
case("admin", "reset_group_offsets timestamp nan", A + "a:reset_group_offsets('g', {'t'}, { timestamp = 0/0 })", 1,
     r"timestamp")
case("admin", "create_partitions count 0", A + "a:create_partitions{ { topic = 't', count = 0 } }", 1,
     r"admin:create_partitions.*(count|total|partitions)")
case("admin", "alter_scram no password", A + "a:alter_user_scram_credentials{ { user = 'u', mechanism = 'SCRAM-SHA-256' } }",
     1, r"password")
case("admin", "acl bad operation", A + "a:create_acls{ { resource_type = 'topic', name = 't', principal = 'User:x', "
     "host = '*', operation = 'eat', permission = 'allow' } }", 1, r"eat")
case("admin", "unknown topic describe", A + "local r = assert(a:describe_topics{ 'nope' }); error(r[1].error)", 3,
     r"UNKNOWN_TOPIC_OR_PART.*nope|nope.*UNKNOWN_TOPIC")

# ------------------------------------------------------------------------------ lag
case("lag", "group a number", "klua.lag(5)", 1, bad_arg("klua.lag", "group"))
case("lag", "group empty", "klua.lag('')", 1, r"klua\.lag.*group")
case("lag", "topics a number", "klua.lag('g', 5)", 1, bad_arg("klua.lag", "list of topic names", "2"))
case("lag", "watch without fn", "klua.lag.watch('g', {})", 1, r"klua\.lag\.watch")
case("lag", "watch interval 0", "klua.lag.watch('g', { interval_ms = 0 }, function() end)", 1, r"interval_ms")
case("lag", "watch interval nan", "klua.lag.watch('g', { interval_ms = 0/0 }, function() end)", 1, r"interval_ms")

# ------------------------------------------------------------------------------ worker
W = "klua.worker{ group = 'g', topics = { 't' }, handlers = function() end, quiet = true, %s }"
for opt, vals in [("concurrency", ["0", "-1", "1.5", NAN, INF, "'4'"]), ("max_queued", ["0", "-5", "2.5", NAN, "'10'"]),
                  ("handler_timeout_ms", ["0", "-1", NAN, "'5'"])]:
    for v in vals:
        case("worker", f"{opt}={v}", W % f"{opt} = {v}", 1, bad_arg("klua.worker", opt.replace("_", "_")))
for opt, vals in [("max", ["-1", "1.5", NAN, "'3'"]), ("base_ms", ["-1", NAN, "'x'"]), ("max_ms", ["-5", NAN]),
                  ("jitter", ["2", "-0.1", NAN])]:
    for v in vals:
        case("worker", f"retry.{opt}={v}", W % f"retry = {{ {opt} = {v} }}", 1, bad_arg("klua.worker", "retry\\." + opt))
for why, opt, pat in [("unknown option", "concurency = 2", "concurency"), ("retry not a table", "retry = 3", "retry"),
                      ("unknown retry option", "retry = { maxx = 3 }", "maxx"), ("dead_letter a number", "dead_letter = 5", "dead_letter"),
                      ("dead_letter format", "dead_letter = { topic = 'd', format = 'xml' }", "format"),
                      ("dead_letter unknown", "dead_letter = { topic = 'd', fmt = 'x' }", "fmt"),
                      ("dedupe a number", "dedupe = 5", "dedupe"), ("dedupe.window 0", "dedupe = { window = 0 }", "dedupe\\.window"),
                      ("dedupe.window nan", "dedupe = { window = 0/0 }", "dedupe\\.window"),
                      ("dedupe.key a string", "dedupe = { key = 'id' }", "dedupe\\.key"),
                      ("order", "order = 'random'", "order"), ("batch a number", "batch = 5", "batch"),
                      ("batch.max 0", "batch = { max = 0 }", "batch\\.max"), ("batch.max nan", "batch = { max = 0/0 }", "batch\\.max"),
                      ("batch.timeout_ms nan", "batch = { timeout_ms = 0/0 }", "batch\\.timeout_ms"),
                      ("batch.timeout_ms -1", "batch = { timeout_ms = -1 }", "batch\\.timeout_ms"),
                      ("exactly_once a string", "exactly_once = 'yes'", "exactly_once"),
                      ("retry.topic with batch", "batch = {}, retry = { topic = 'r' }", "retry\\.topic")]:
    case("worker", why, W % opt, 1, bad_arg("klua.worker", pat))
case("worker", "no group", "klua.worker{ topics = { 't' }, handlers = function() end }", 1, bad_arg("klua.worker", "group"))
case("worker", "no topics", "klua.worker{ group = 'g', topics = {}, handlers = function() end }", 1, bad_arg("klua.worker", "topics"))
case("worker", "no handler for topic", "klua.worker{ group = 'g', topics = { 't' }, handlers = { u = function() end } }", 1,
     bad_arg("klua.worker", "no handler for topic 't'"))
case("worker", "handler not a function", "klua.worker{ group = 'g', topics = { 't' }, handlers = { t = 5 } }", 1,
     bad_arg("klua.worker", r"handlers\[t\]"))
case("worker", "not a table", "klua.worker(5)", 1, bad_arg("klua.worker", "options table"))

# ------------------------------------------------------------------------------ replay (library)
R = "klua.replay.run{ source = 's', target = 'd', %s }"
for why, opt, pat in [("from nan timestamp", "from = { timestamp = 0/0 }", r"from\.timestamp"),
                      ("to nan timestamp", "to = { timestamp = 0/0 }", r"to\.timestamp"),
                      ("from -1", "from = -1", "from offset"), ("from 1.5", "from = 1.5", "from offset"),
                      ("from nan", "from = 0/0", "from offset"), ("from word", "from = 'start'", "from must be"),
                      ("from end", "from = 'end'", "selects nothing"), ("to beginning", "to = 'beginning'", "selects nothing"),
                      ("from a string time", "from = { timestamp = '2024-01-01' }", "from must be"),
                      ("rate 0", "rate = 0", "rate"), ("rate -1", "rate = -1", "rate"), ("rate nan", "rate = 0/0", "rate"),
                      ("rate inf", "rate = 1/0", "rate"), ("batch 0", "batch = 0", "batch"), ("batch nan", "batch = 0/0", "batch"),
                      ("batch 1.5", "batch = 1.5", "batch"), ("partitions -1", "partitions = { -1 }", "partitions"),
                      ("partitions nan", "partitions = { 0/0 }", "partitions"), ("partitions 1e10", "partitions = { 1e10 }", "partitions"),
                      ("partitions a string", "partitions = '0'", "partitions"), ("mode", "mode = 'twice'", "mode"),
                      ("exactly_once across", "mode = 'exactly_once', target_brokers = 'h:1'", "exactly_once needs"),
                      ("filter a string", "filter = 'x'", "filter"), ("unknown", "form = 1", "unknown option 'form'"),
                      ("group a number", "group = 5", "group")]:
    case("replay", why, R % opt, 1, bad_arg("klua.replay.run", pat))
case("replay", "same topic", "klua.replay.run{ source = 's', target = 's' }", 1, bad_arg("klua.replay.run", "same topic"))
case("replay", "no source", "klua.replay.run{ target = 's' }", 1, bad_arg("klua.replay.run", "source"))
case("replay", "unknown source topic", "klua.embedded.create_topic('d', 1); assert(klua.replay.run{ source = 'nope', target = 'd', "
     "quiet = true })", 3, r"source topic nope does not exist")

# ------------------------------------------------------------------------------ provision (library)
P = "klua.provision.normalize(%s)"
for why, state, pat in [("not a table", "5", "table"), ("topics not a list", "{ topics = 5 }", "topics"),
                        ("topic without name", "{ topics = { { partitions = 1 } } }", "name"),
                        ("partitions 0", "{ topics = { { name = 'x', partitions = 0 } } }", "partitions"),
                        ("partitions nan", "{ topics = { { name = 'x', partitions = 0/0 } } }", "partitions"),
                        ("partitions 1.5", "{ topics = { { name = 'x', partitions = 1.5 } } }", "partitions"),
                        ("replication 0", "{ topics = { { name = 'x', replication_factor = 0 } } }", "replication"),
                        ("duplicate name", "{ topics = { { name = 'x' }, { name = 'x' } } }", "x"),
                        ("unknown field", "{ topics = { { name = 'x', partitons = 2 } } }", "partitons"),
                        ("unknown top key", "{ topix = {} }", "topix"),
                        ("config a table", "{ topics = { { name = 'x', configs = { ['retention.ms'] = {} } } } }", "retention\\.ms"),
                        ("name invalid chars", "{ topics = { { name = 'a b' } } }", "a b")]:
    case("provision", why, P % state, 1, r"provision|" + pat if why == "not a table" else pat)
case("provision", "load missing file", "assert(klua.provision.load('nope.lua'))", 1, r"nope\.lua")
case("provision", "load endless loop", "assert(klua.provision.load('s.lua'))", 1, r"s\.lua.*(too long|runs)",
     files={"s.lua": "while true do end"})

# ------------------------------------------------------------------------------ envelope
for why, lua, pat in [("new not a table", "klua.envelope.new(5)", "klua\\.envelope\\.new"),
                      ("new no type", "klua.envelope.new{ source = 's' }", "type"),
                      ("new bad time", "klua.envelope.new{ type = 't', source = 's', payload = {}, time = 'yesterday' }", "time"),
                      ("encode not an envelope", "klua.envelope.encode(5)", "klua\\.envelope\\.encode"),
                      ("decode garbage", "assert(klua.envelope.decode{ value = 'not json' })", "json|JSON|offset|decode"),
                      ("decode no value", "assert(klua.envelope.decode{ })", "value|decode"),
                      ("iso8601 nan", "klua.envelope.iso8601(0/0)", "iso8601|ms|number"),
                      ("iso8601 word", "klua.envelope.iso8601('x')", "iso8601|number"),
                      ("parse_time bad", "assert(klua.envelope.parse_time('2024-13-45T99:00:00Z'))", "expected an ISO-8601 time.*2024-13-45"),
                      ("parse_time feb 30", "assert(klua.envelope.parse_time('2024-02-30T00:00:00Z'))", "expected an ISO-8601 time"),
                      ("parse_traceparent bad", "assert(klua.envelope.parse_traceparent('00-xyz'))", "expected a traceparent.*00-xyz"),
                      ("new_traceparent bad id", "klua.envelope.new_traceparent('short')", "trace"),
                      ("dead_letter no msg", "klua.envelope.dead_letter(nil, 'e')", "dead_letter|msg|message")]:
    case("envelope", why, lua, 1, pat)

# ------------------------------------------------------------------------------ transactions
T = "local p = klua.producer{ ['transactional.id'] = 'tx-' .. klua.uuid() }; "
for why, lua, exit, pat in [
        ("init without transactional.id", "assert(klua.producer():init_transactions())", 3, r"transactional\.id"),
        ("commit without begin", T + "assert(p:init_transactions()); assert(p:commit())", 3, r"commit|transaction|state"),
        ("abort without begin", T + "assert(p:init_transactions()); assert(p:abort())", 3, r"abort|transaction|state"),
        ("begin twice", T + "assert(p:init_transactions()); assert(p:begin()); assert(p:begin())", 3, r"begin|transaction|state"),
        ("transaction fn a number", T + "p:transaction(5)", 1, bad_arg("p:transaction", "function")),
        ("send_offsets no consumer", T + "assert(p:init_transactions()); assert(p:begin()); p:send_offsets(5)", 1,
         bad_arg("p:send_offsets", "consumer")),
        ("init timeout nan", T + "p:init_transactions{ timeout_ms = 0/0 }", 1, bad_arg("p:init_transactions", "timeout_ms")),
        ("init unknown option", T + "p:init_transactions{ timout_ms = 5 }", 1, bad_arg("p:init_transactions", "timout_ms"))]:
    case("transactions", why, lua, exit, pat)

# ------------------------------------------------------------------------------ timeouts of the library scripts
for why, lua, pat in [
        ("provision.plan timeout nan", "klua.provision.plan({ topics = { 'x' } }, { timeout_ms = 0/0 })", r"'timeout_ms' must be"),
        ("provision.apply timeout -1", "klua.provision.apply({ topics = { 'x' } }, { timeout_ms = -1 })", r"'timeout_ms' must be"),
        ("provision.apply settle nan", "klua.provision.apply({ topics = { 'x' } }, { settle_ms = 0/0 })", r"'settle_ms' must be"),
        ("provision.check timeout word", "klua.provision.check({ topics = { 'x' } }, { timeout_ms = 'x' })", r"'timeout_ms' must be"),
        ("testkit.read timeout nan", "klua.testkit.read('t', { timeout_ms = 0/0 })", r"klua\.testkit\.read.*timeout_ms"),
        ("testkit.expect_message timeout -1", "klua.testkit.expect_message('t', function() end, { timeout_ms = -1 })",
         r"klua\.testkit\.expect_message.*timeout_ms"),
        ("testkit.roundtrip timeout inf", "klua.testkit.roundtrip('t', { { value = 'v' } }, { timeout_ms = 1/0 })",
         r"klua\.testkit\.roundtrip.*timeout_ms"),
        ("testkit.poll_n timeout nan", "klua.testkit.poll_n(klua.consumer{ group = 'g' }, 1, 0/0)", r"klua\.testkit\.poll_n.*timeout_ms"),
        ("dedupe_store partitions nan", "require('klua.worker.dedupe_store').open{ topic = 'd', window_ms = 1000, partitions = 0/0 }",
         r"'partitions' must be"),
        ("dedupe_store timeout nan", "require('klua.worker.dedupe_store').open{ topic = 'd', window_ms = 1000, timeout_ms = 0/0 }",
         r"'timeout_ms' must be"),
        ("dedupe_store window nan", "require('klua.worker.dedupe_store').open{ topic = 'd', window_ms = 0/0 }", r"'window_ms'"),
        ("worker dedupe.window_ms nan", "klua.worker{ group = 'g', topics = { 't' }, handlers = function() end, "
         "dedupe = { topic = 'd', window_ms = 0/0 } }", r"dedupe\.window_ms")]:
    case("timeouts", why, lua, 1, pat)

# ------------------------------------------------------------------------------ serde (klua.serde)
ORDER = ('[[{"type":"record","name":"Order","fields":[{"name":"id","type":"long"}]}]]')
for why, lua, pat in [
        ("options a number", "klua.serde.avro(5)", bad_arg("klua.serde.avro", "expected an options table")),
        ("unknown option", "klua.serde.avro{ schema = " + ORDER + ", subjct = 'x' }", bad_arg("klua.serde.avro", "unknown option 'subjct'")),
        ("field body", "klua.serde.avro{ schema = " + ORDER + ", field = 'body' }", bad_arg("klua.serde.avro", "option 'field'")),
        ("strategy misspelt", "klua.serde.protobuf{ subject_strategy = 'topicname' }", bad_arg("klua.serde.protobuf", "subject_strategy")),
        ("auto_register a string", "klua.serde.json_schema{ auto_register = 'no' }", bad_arg("klua.serde.json_schema", "auto_register")),
        ("latest_ttl_ms nan", "klua.serde.avro{ use_latest = true, latest_ttl_ms = 0/0 }", bad_arg("klua.serde.avro", "latest_ttl_ms")),
        ("registry a number", "klua.serde.avro{ registry = 5 }", bad_arg("klua.serde.avro", "option 'registry'")),
        ("registry not http", "klua.serde.avro{ registry = 'ftp://r' }", bad_arg("klua.serde.avro", "option 'registry'")),
        ("raw without schema", "klua.serde.avro{ raw = true }", bad_arg("klua.serde.avro", "'schema' is required with raw")),
        ("record strategy, unnamed schema", "klua.serde.avro{ schema = '\"string\"', subject_strategy = 'record' }",
         bad_arg("klua.serde.avro", "needs a schema with a name")),
        ("protobuf message a number", "klua.serde.protobuf{ message = 5 }", bad_arg("klua.serde.protobuf", "option 'message'")),
        ("json validate a string", "klua.serde.json_schema{ validate = 'yes' }", bad_arg("klua.serde.json_schema", "option 'validate'")),
        ("dec of a number", "local _, dec = klua.serde.avro{}; dec(5)", bad_arg("dec", "expected a string")),
        ("enc without a schema", "local enc = klua.serde.avro{}; enc({})", r"enc: this serde has no schema"),
        ("enc bad field", "local enc = klua.serde.avro{ schema = " + ORDER + ", raw = false }; enc({ id = 1 }, { topic = 't' }, 'body')",
         bad_arg("enc", "field must be")),
        ("frame.header negative", "klua.serde.frame.header(-1)", bad_arg("klua.serde.frame.header", "schema id")),
        ("frame.parse a table", "klua.serde.frame.parse({})", bad_arg("klua.serde.frame.parse", "expected a string")),
        ("producer value_serializer a string", "klua.producer{ value_serializer = 'avro' }",
         bad_arg("klua.producer", "option 'value_serializer' must be a function")),
        ("consumer key_deserializer a number", "klua.consumer{ group = 'g', key_deserializer = 5 }",
         bad_arg("klua.consumer", "option 'key_deserializer' must be a function")),
        ("worker value_deserializer a table", "klua.worker{ group = 'g', topics = { 't' }, handlers = function() end, value_deserializer = {} }",
         bad_arg("klua.worker", "'value_deserializer' must be a function")),
        ("worker deserializer with batch", "klua.worker{ group = 'g', topics = { 't' }, handlers = function() end, "
         "batch = { max = 10 }, value_deserializer = function() end }", bad_arg("klua.worker", "per-message handlers")),
        ("framed enc without a registry", "local enc = klua.serde.avro{ schema = " + ORDER + ", topic = 't' }; assert(enc({ id = 1 }))",
         r"KLUA_NO_REGISTRY.*no schema registry is configured"),
        ("framed dec without a registry", "local _, dec = klua.serde.avro{}; assert(dec('\\0\\0\\0\\0\\9x'))",
         r"KLUA_NO_REGISTRY.*schema id 9"),
        ("dec of plain JSON", "local _, dec = klua.serde.avro{}; assert(dec('{\"id\":1}', { topic = 't', partition = 0, offset = 3 }))",
         r"KLUA_DESERIALIZATION: t \[0\] at offset 3, value: wrong magic byte 0x7B.*plain JSON"),
        ("a value that does not fit (raw)", "local enc = klua.serde.avro{ schema = " + ORDER + ", raw = true }; assert(enc({ id = 'x' }))",
         r"KLUA_SERIALIZATION.*\$\.id")]:
    case("serde", why, lua, 1, pat)
