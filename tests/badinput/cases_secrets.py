# Secrets never appear in what klua prints: config show (text and --json), the REPL's values,
# klua.pretty, error messages about a configuration holding a secret, librdkafka's debug logs,
# tracebacks of a script with the configuration in scope. Each case gives secrets by -X, -F or a
# profile (inline, { env = }, { file = }) and greps every output for their values.
CASES = []
S = "Hunter2-s3cr3t"  # every secret value below contains it


def case(name, exit, pattern, argv=None, lua=None, **kw):
    c = dict(group="secrets", name=name, exit=exit, pattern=pattern, absent=[S], **kw)
    if lua is not None:
        c["lua"] = lua
    else:
        c["argv"] = argv
    CASES.append(c)


# the properties that hold secrets, and misspellings of them (klua.secrets)
SECRET_PROPS = ["sasl.password", "ssl.key.password", "ssl.keystore.password", "sasl.oauthbearer.client.secret",
                "ssl.key.pem", "sasl.oauthbearer.config"]
X = []
for i, p in enumerate(SECRET_PROPS):
    X += ["-X", f"{p}={S}{i}"]

case("config show, -X", 0, r"sasl\.password\s+\*{8}\s+-X", argv=X + ["config", "show"])
case("config show --json, -X", 0, r'"key":"sasl\.password","redacted":true,"source":"-X","value":"\*{8}"',
     argv=X + ["config", "show", "--json"])
case("config show, -F", 0, r"ssl\.key\.password\s+\*{8}\s+-F p\.properties:2", argv=["-F", "p.properties", "config", "show"],
     files={"p.properties": f"# a comment\nssl.key.password = {S}\nsasl.password={S}x\n"})
PROFILE = ("return { profiles = { default = { brokers = 'h:1', ['sasl.username'] = 'u', "
           f"['sasl.password'] = '{S}', ['ssl.key.password'] = {{ env = 'KLUA_TEST_SECRET' }}, "
           "['sasl.oauthbearer.client.secret'] = { file = 'secret.txt' } } } }")
case("config show, profile inline/env/file", 0, r"ssl\.key\.password\s+\*{8}\s+profile default .*env KLUA_TEST_SECRET",
     argv=["config", "show"], config=PROFILE, env={"KLUA_TEST_SECRET": S + "env"}, files={"secret.txt": S + "file\n"})
case("config show --json, profile", 0, r'"redacted":true', argv=["config", "show", "--json"], config=PROFILE,
     env={"KLUA_TEST_SECRET": S + "env"}, files={"secret.txt": S + "file\n"})
# names given at run time (klua.set_config), misspelled ones too
for name in ["sasl.pasword", "sasl.passwd", "ssl.key.pwd", "my.api.key", "sasl.jaas.config", "x.private_key",
             "sasl.oauthbearer.token", "x.credentials"]:
    case(f"pretty, set_config {name}", 0, r"\*{8}",
         lua=f"klua.set_config('{name}', '{S}'); klua.pretty.print(klua.config()); "
             f"klua.pretty.print(klua.config_entries()); assert(klua.config()['{name}'] == '{S}')")
    case(f"config show, set_config {name}", 0, r"\*{8}",
         lua=f"klua.set_config('{name}', '{S}'); require('klua.cli.config').main('show')")
# the REPL prints values through klua.pretty
for expr in ["=klua.config()", "=klua.config_entries()", "={ cfg = klua.config() }", "=klua.secrets.redact(klua.config())"]:
    case(f"repl {expr}", 0, r"\*{8}", argv=X + ["repl"], stdin=expr + "\n")
case("repl, a secret read on purpose is the script's", 0, S, argv=X + ["repl"], stdin="=klua.config()['sasl.password']\n")
CASES[-1]["absent"] = []
# errors about a configuration that holds a secret
case("error: bad ssl.key.pem", 1, r"ssl\.key\.pem failed", argv=["-X", "security.protocol=SSL", "-X", f"ssl.key.pem={S}",
                                                                  "-e", "klua.producer()"])
case("error: bad sasl.oauthbearer.config", 3, r"sasl\.oauthbearer\.config|OAUTHBEARER|oauthbearer",
     argv=["-X", "security.protocol=SASL_PLAINTEXT", "-X", "sasl.mechanism=OAUTHBEARER", "-X",
           f"sasl.oauthbearer.config=principalClaimName=x junk {S}", "-X", "enable.sasl.oauthbearer.unsecure.jwt=true",
           "-X", "message.timeout.ms=1500", "-e", "local p = klua.producer(); assert(p:produce{ topic = 't', value = 'v' })"])
case("error: unknown property beside a secret (-F)", 2, r"unknown librdkafka property 'lingr\.ms'",
     argv=["-F", "p.properties", "-e", "print(1)"], files={"p.properties": f"sasl.password={S}\nlingr.ms=5\n"})
case("error: a secret in the script's table of the wrong type", 1, r"sasl\.password",
     lua=f"klua.producer{{ ['sasl.password'] = {{ '{S}' }} }}")
case("error: profile secret table malformed", 2, r"sasl\.password",
     argv=["-e", "print(1)"], config=f"return {{ profiles = {{ default = {{ ['sasl.password'] = {{ env = 'X', v = '{S}' }} }} }} }}")
case("error: sasl.jaas.config refused", 2, r"bad value for 'sasl\.jaas\.config'",
     argv=["-X", f"sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required password=\"{S}\";",
           "config", "show"])
# tracebacks and errors of a script with the configuration in scope
case("traceback with config in scope", 1, r"boom", argv=X + ["-e", "local cfg = klua.config(); local pw = cfg['sasl.password']; "
                                                               "local function f() error('boom') end; f()"])
case("error(config table)", 1, r"klua: ", argv=X + ["-e", "error(klua.config())"])
case("task error with config", 1, r"klua: ", argv=X + ["-e", "klua.spawn(function() error(klua.config()) end)"])
case("repl error with config", 1, r"\*{8}", argv=X + ["repl"], stdin="error(klua.config())\n=1\n")
# librdkafka's own logs (debug=all) with a SASL/PLAIN login against the embedded cluster
case("debug=all logs", 0, r"ok", argv=X[:2] + ["-d", "all", "-X", "sasl.username=u", "-X", "security.protocol=SASL_PLAINTEXT",
                                               "-X", "sasl.mechanism=PLAIN", "-X", "message.timeout.ms=1000", "-e",
                                               "local p = klua.producer(); p:send{ topic = 't', value = 'v' }; p:flush{timeout_ms = 2000}; print('ok')"],
     timeout=60)

# a broker list with user information in a URL
case("config show, brokers with user:password@", 0, r"SASL_SSL://\*\*\*@h:9093",
     argv=["-b", f"SASL_SSL://u:{S}@h:9093", "config", "show"])
case("repl, brokers with user:password@", 0, r"\*\*\*@h:9093", argv=["-b", f"SASL_SSL://u:{S}@h:9093", "repl"],
     stdin="=klua.config()\n=klua.config_entries()\n")
case("a message whose key names a secret is data", 0, r"api-key\s+plain-value",
     lua="klua.pretty.print({ { topic = 't', key = 'api-key', value = 'plain-value' }, { topic = 't', key = 'b', value = 'c' } })")
# the one-liners' --json outputs and errors with SASL/PLAIN configured: the embedded cluster does
# not serve SASL, so each ends on the authentication failure (exit 3), which names the mechanism
SASL = ["--embedded", "-X", "security.protocol=SASL_PLAINTEXT", "-X", "sasl.mechanism=PLAIN", "-X", "sasl.username=u",
        "-X", f"sasl.password={S}", "-X", "klua.unreachable.timeout.ms=1000", "-X", "message.timeout.ms=1500"]
AUTH = r"_AUTHENTICATION: .*SASL.*PLAIN"
for name, argv, stdin in [("topics --json", ["topics", "--json"], None), ("metadata --json", ["metadata", "--json"], None),
                          ("produce --json", ["produce", "t", "--json"], "a\n"),
                          ("consume --json", ["consume", "t", "--json", "-e"], None),
                          ("lag --json", ["lag", "g", "--json"], None), ("config show --json", ["config", "show", "--json"], None)]:
    if name == "config show --json":
        case(f"{name} with SASL", 0, r'"redacted":true', argv=SASL + argv)
    else:
        case(f"{name} with SASL, authentication fails", 3, AUTH, argv=SASL + argv, stdin=stdin)
