-- The consumer's message metatable's __index (bindings/consumer.cpp loads it with the methods
-- header and header_all and rawset): in Lua so that the JIT compiles a read of a field the
-- message lacks (msg.key of a keyless message goes through it on every message). Methods, and
-- `headers` as an empty list when the message has none (built on first use).
local header, header_all, rawset = ...
return function(m, k)
  if k == "header" then return header end
  if k == "header_all" then return header_all end
  if k == "headers" then
    local h = {}
    rawset(m, "headers", h)
    return h
  end
  return nil
end
