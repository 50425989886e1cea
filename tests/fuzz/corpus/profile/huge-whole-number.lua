return { profiles = {
  default = { brokers = "localhost:9092", ["linger.ms"] = 51111111111111111111111111111, ["bootstrap.serverse"] = true },
  prod = { brokers = "k1:9093,k2:9093", ["security.protocol"] = "SASL_SSL", ["sasl.mechanism"] = "PLAIN",
           ["sasl.username"] = "svc", ["sasl.password"] = { env = "KLUA_FUZZ_UNSET" } } } }
