-- klua._stdout (bindings/stdout.cpp loads it once per runtime): the CLI's buffered standard
-- output. Small appends are done here through the FFI so that the JIT compiles them into the
-- caller's loop (a formatter of `klua consume` calls put/put_int a few times per message); the
-- C functions take the rest. Internal: `klua consume` uses it, scripts use io.write.
--
--   out.put(s)          append the bytes of s
--   out.put_int(x)      append an integer-valued number in decimal (offsets, timestamps, sizes)
--   out.put_u32be(x)    append x as 4 bytes, big-endian (kcat's %R)
--   out.json_string(s)  append s as a JSON string literal; false (nothing appended) if not UTF-8
--   out.utf8(s)         s is valid UTF-8 (klua.json's rule)
--   out.base64(s)       append s as a quoted base64 string
--   out.flush()         write the buffer out
--   out.failed()        a write failed (cheap: for a per-message check)
--   out.error()         nil, or the text and errno of the first failed write (the buffer is
--                       dropped then)
--   out.start()         flush every 100 ms while data waits, and on SIGINT/SIGTERM
--   out.isatty()        fd 1 is a terminal
local ffi, buf_ptr, flush_ptr, write_ptr, json_ptr, b64_ptr, utf8_ptr, size, start, isatty, strerror = ...
if ffi.sizeof("klua_outbuf") ~= size then
  error(string.format("klua_outbuf is %d bytes to LuaJIT's FFI but %d to C++ (bindings/ffi.h)",
    ffi.sizeof("klua_outbuf"), size))
end
local B = ffi.cast("klua_outbuf*", buf_ptr)
local cflush = ffi.cast("klua_out_flush_fn", flush_ptr)
local cwrite = ffi.cast("klua_out_append_fn", write_ptr)
local cjson = ffi.cast("klua_out_append_fn", json_ptr)
local cb64 = ffi.cast("klua_out_append_fn", b64_ptr)
local cutf8 = ffi.cast("klua_utf8_valid_fn", utf8_ptr)
local copy, floor = ffi.copy, math.floor
local CAP = B.cap

local out = {}

function out.put(s)
  local n, len = #s, B.len
  if n <= CAP - len then
    copy(B.data + len, s, n)
    B.len = len + n
  else
    cwrite(B, s, n)
  end
end

local digits = ffi.new("char[24]")
function out.put_int(x)
  local len = B.len
  if CAP - len < 24 then
    cflush(B)
    len = 0
  end
  local neg = x < 0
  if neg then x = -x end
  local i = 23
  repeat
    local q = floor(x / 10)
    digits[i] = 48 + (x - q * 10)
    x = q
    i = i - 1
  until x == 0
  if neg then
    digits[i] = 45
    i = i - 1
  end
  local n = 23 - i
  copy(B.data + len, digits + i + 1, n)
  B.len = len + n
end

function out.put_u32be(x)
  if x < 0 then x = x + 4294967296 end
  local len = B.len
  if CAP - len < 4 then
    cflush(B)
    len = 0
  end
  local d = B.data + len
  d[0] = floor(x / 16777216) % 256
  d[1] = floor(x / 65536) % 256
  d[2] = floor(x / 256) % 256
  d[3] = x % 256
  B.len = len + 4
end

function out.json_string(s)
  return cjson(B, s, #s) ~= 1
end

function out.utf8(s)
  return cutf8(s, #s) ~= 0
end

function out.base64(s)
  cb64(B, s, #s)
end

function out.flush()
  cflush(B)
end

function out.failed()
  return B.error ~= 0
end

function out.error()
  if B.error ~= 0 then return strerror(B.error), B.error end
  return nil
end

out.start = start
out.isatty = isatty
return out
