-- klua.protobuf per-message cost: encode and decode of a 10-field proto3 message (72 bytes), N times.
-- Usage: klua run bench/protobuf_codec.lua [N]   (bench/protobuf_codec.py is the same with Python protobuf)
local f = assert(klua.protobuf.compile([[
syntax = "proto3";
message R { int64 id = 1; string name = 2; double amount = 3; int32 qty = 4; bool active = 5;
  string country = 6; int64 ts = 7; float score = 8; string email = 9; int32 tier = 10; }
]]))
local m = f:message("R")
local t = { id = 123456789, name = "customer name", amount = 1234.56, qty = 7, active = true,
  country = "DE", ts = 1700000000000, score = 0.5, email = "someone@example.com", tier = 3 }
local N = tonumber((...)) or 100000
local b = m:encode(t)
local t0 = klua.now()
for i = 1, N do b = m:encode(t) end
local t1 = klua.now()
local v
for i = 1, N do v = m:decode(b) end
local t2 = klua.now()
print(string.format("encode %.0f ns/msg (%d bytes), decode %.0f ns/msg", (t1 - t0) * 1e6 / N, #b, (t2 - t1) * 1e6 / N))
