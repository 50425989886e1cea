-- klua.secrets: which configuration properties hold secrets, by the shape of their names, so
-- that everything that prints a configuration (klua config show, the REPL and klua.pretty,
-- klua.config() tables) masks their values. The script itself still reads the clear values
-- (klua.config()["sasl.password"]).
--   klua.secrets.is_secret("sasl.password")       -> true
--   klua.secrets.is_secret("sasl.pasword")        -> true (a misspelling is a secret too)
--   klua.secrets.redact(klua.config())            -> a copy, secret values as "********"
-- A name is a secret when, lowercased, it contains pass (password, passwd, passphrase), pasw
-- (pasword), pwd, secret, token, jaas, credential, private, user.info or userinfo (a
-- "user:password" pair: schema.registry.basic.auth.user.info), or names a key's content: key.pem,
-- or ends in key / key_... / key-... (api.key, private_key; not ssl.key.location, a path).
local M = {}

M.MASK = "********"

local PATTERNS = { "pass", "pasw", "pwd", "secret", "token", "jaas", "credential", "private",
                   "oauthbearer%.config", "key%.pem", "key$", "key[_%-]", "user%.?info" }

function M.is_secret(name)
  if type(name) ~= "string" then return false end
  local k = name:lower()
  for _, p in ipairs(PATTERNS) do
    if k:find(p) then return true end
  end
  return false
end

local BROKER_LISTS = { ["bootstrap.servers"] = true, ["metadata.broker.list"] = true, ["schema.registry.url"] = true }

-- The value of property name as it may be shown: MASK for a secret; a broker list (or the schema
-- registry's URL) without the user information a URL may carry
-- (SASL_SSL://user:pass@host:9093 -> SASL_SSL://***@host:9093);
-- else the value itself.
function M.shown(name, value)
  if M.is_secret(name) then return M.MASK end
  if type(name) == "string" and BROKER_LISTS[name:lower()] and type(value) == "string" then
    return (value:gsub("[^,%s/@]+@", "***@"))
  end
  return value
end

-- A copy of a configuration table (name -> value) with the secrets' values masked.
function M.redact(config)
  if type(config) ~= "table" then
    klua.errors.bad_argument("klua.secrets.redact", 1, "expected a configuration table, got " .. type(config))
  end
  local out = {}
  for k, v in pairs(config) do out[k] = M.shown(k, v) end
  return out
end

return M
