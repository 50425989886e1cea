-- klua.avro.runtime: the primitives the generated Avro encoders and decoders call (avro/codegen.lua).
-- Small functions LuaJIT inlines into the generated code's traces. One output buffer and one
-- input pointer for the process: encode/decode never call out to user code, so no two codecs can
-- be between a start and a finish at the same time.
--
-- Conventions: put_*(pos, v, ...) write v at byte pos of the output buffer and return the next
-- position, or nil after setting the error (M.err). get_*(pos, ...) read at byte pos of the input
-- and return value, next position, or nil with M.err set. Positions are 0-based.
local ffi = require("ffi")
local bit = require("bit")

local type, tostring, tonumber, floor, format = type, tostring, tonumber, math.floor, string.format
local band, bor, bxor, lshift, rshift, arshift, tobit = bit.band, bit.bor, bit.bxor, bit.lshift, bit.rshift, bit.arshift, bit.tobit
local ffi_copy, ffi_string, ffi_cast, istype = ffi.copy, ffi.string, ffi.cast, ffi.istype
local concat, byte, char = table.concat, string.byte, string.char

assert(ffi.abi("le"), "klua.avro assumes a little-endian machine")

local M = {}
local NULL = klua.json.null
M.NULL = NULL

local int64_t, uint64_t = ffi.typeof("int64_t"), ffi.typeof("uint64_t")
local pdouble, pfloat = ffi.typeof("double*"), ffi.typeof("float*")
local cpdouble, cpfloat = ffi.typeof("const double*"), ffi.typeof("const float*")
local cpu8 = ffi.typeof("const uint8_t*")
local cpu32 = ffi.typeof("const uint32_t*")
local u8arr = ffi.typeof("uint8_t[?]")

-- Errors -------------------------------------------------------------------------------------------
M.err = nil

local function kind(v)
  local t = type(v)
  if t == "number" then
    if v ~= v then return "NaN" end
    return "number " .. (v == floor(v) and v > -1e300 and v < 1e300 and format("%.17g", v) or tostring(v))
  elseif t == "string" then
    if #v > 40 then return format("string %q...", v:sub(1, 40)) end
    return format("string %q", v)
  elseif v == NULL then
    return "null"
  elseif t == "cdata" then
    return "cdata " .. tostring(ffi.typeof(v))
  end
  return t
end
M.kind = kind

-- Encoding failure: expected `what`, found v.
local function fail_type(what, v)
  M.err = "expected " .. what .. ", got " .. kind(v)
  return nil
end
M.fail_type = fail_type

local function fail(msg)
  M.err = msg
  return nil
end
M.fail = fail

-- Output ------------------------------------------------------------------------------------------
local CAP = 4096
local B = u8arr(CAP)

local function grow(pos, need)
  local ncap = CAP * 2
  while ncap < need do ncap = ncap * 2 end
  local nb = u8arr(ncap)
  ffi_copy(nb, B, pos)
  B, CAP = nb, ncap
end

function M.finish(pos)
  local s = ffi_string(B, pos)
  if CAP > 1048576 then B, CAP = u8arr(4096), 4096 end  -- give a one-off huge value's memory back
  return s
end

function M.put_raw(pos, s)
  local n = #s
  if pos + n > CAP then grow(pos, pos + n) end
  ffi_copy(B + pos, s, n)
  return pos + n
end

-- An unsigned 32-bit pattern (or any value 0..2^32) as a varint. Up to 3 bytes unrolled.
local function put_varint32(pos, z)
  if pos + 5 > CAP then grow(pos, pos + 5) end
  if band(z, -128) == 0 then
    B[pos] = z
    return pos + 1
  elseif band(z, -16384) == 0 then
    B[pos] = bor(band(z, 127), 128)
    B[pos + 1] = rshift(z, 7)
    return pos + 2
  elseif band(z, -2097152) == 0 then
    B[pos] = bor(band(z, 127), 128)
    B[pos + 1] = bor(band(rshift(z, 7), 127), 128)
    B[pos + 2] = rshift(z, 14)
    return pos + 3
  end
  while band(z, -128) ~= 0 do
    B[pos] = bor(band(z, 127), 128)
    pos = pos + 1
    z = rshift(z, 7)
  end
  B[pos] = z
  return pos + 1
end
-- A non-negative count, length or index (zigzag: 2n).
function M.put_count(pos, n)
  return put_varint32(pos, n * 2)
end

function M.put_zero(pos)
  if pos + 1 > CAP then grow(pos, pos + 1) end
  B[pos] = 0
  return pos + 1
end

function M.put_null(pos, v)
  if v ~= nil and v ~= NULL then return fail_type("null", v) end
  return pos
end

function M.put_bool(pos, v)
  if pos + 1 > CAP then grow(pos, pos + 1) end
  if v == true then
    B[pos] = 1
  elseif v == false then
    B[pos] = 0
  else
    return fail_type("boolean", v)
  end
  return pos + 1
end

local function put_int(pos, v)
  if type(v) ~= "number" or v < -2147483648 or v > 2147483647 or v ~= floor(v) then
    return fail_type("int", v)
  end
  local z = tobit(v)
  return put_varint32(pos, bxor(lshift(z, 1), arshift(z, 31)))
end
M.put_int = put_int

local function put_long64(pos, x)  -- x: int64_t
  local u = ffi_cast(uint64_t, bxor(lshift(x, 1), arshift(x, 63)))
  if pos + 10 > CAP then grow(pos, pos + 10) end
  while u >= 128 do
    B[pos] = tonumber(bor(band(u, 127), 128))
    pos = pos + 1
    u = rshift(u, 7)
  end
  B[pos] = tonumber(u)
  return pos + 1
end

local TWO52, TWO63 = 4503599627370496, 9223372036854775808

function M.put_long(pos, v)
  if type(v) == "number" then
    if v ~= floor(v) then return fail_type("long", v) end
    if v >= -2147483648 and v <= 2147483647 then
      local z = tobit(v)
      return put_varint32(pos, bxor(lshift(z, 1), arshift(z, 31)))
    elseif v > -TWO52 and v < TWO52 then
      -- Exact in doubles: the zigzag value stays below 2^53.
      local z = v >= 0 and v * 2 or -v * 2 - 1
      if pos + 10 > CAP then grow(pos, pos + 10) end
      -- 5 bytes at once (35 bits: whole numbers in doubles), then the rest
      B[pos] = z % 128 + 128
      z = floor(z / 128)
      B[pos + 1] = z % 128 + 128
      z = floor(z / 128)
      B[pos + 2] = z % 128 + 128
      z = floor(z / 128)
      B[pos + 3] = z % 128 + 128
      z = floor(z / 128)
      pos = pos + 4
      while z >= 128 do
        B[pos] = z % 128 + 128
        pos = pos + 1
        z = floor(z / 128)
      end
      B[pos] = z
      return pos + 1
    elseif v >= -TWO63 and v < TWO63 then
      return put_long64(pos, int64_t(v))
    end
    return fail_type("long (beyond 64 bits)", v)
  elseif type(v) == "cdata" then
    if istype(int64_t, v) then return put_long64(pos, v) end
    if istype(uint64_t, v) then
      if v >= 9223372036854775808ULL then return fail_type("long (beyond 2^63-1)", v) end
      return put_long64(pos, ffi_cast(int64_t, v))
    end
  end
  return fail_type("long", v)
end

local function to_double(v)
  if type(v) == "cdata" and (istype(int64_t, v) or istype(uint64_t, v)) then return tonumber(v) end
  return v
end

function M.put_float(pos, v)
  if type(v) ~= "number" then
    v = to_double(v)
    if type(v) ~= "number" then return fail_type("float", v) end
  end
  if pos + 4 > CAP then grow(pos, pos + 4) end
  ffi_cast(pfloat, B + pos)[0] = v
  return pos + 4
end

function M.put_double(pos, v)
  if type(v) ~= "number" then
    v = to_double(v)
    if type(v) ~= "number" then return fail_type("double", v) end
  end
  if pos + 8 > CAP then grow(pos, pos + 8) end
  ffi_cast(pdouble, B + pos)[0] = v
  return pos + 8
end

-- string and bytes: a long length, then the bytes. what: "string" | "bytes" (for the message).
function M.put_str(pos, v, what)
  if type(v) ~= "string" then return fail_type(what, v) end
  local n = #v
  if pos + n + 5 > CAP then grow(pos, pos + n + 5) end
  pos = put_varint32(pos, n * 2)
  ffi_copy(B + pos, v, n)
  return pos + n
end

function M.put_fixed(pos, v, size, name)
  if type(v) ~= "string" or #v ~= size then
    if type(v) == "string" then
      return fail(format("expected %d bytes for fixed %s, got %d", size, name, #v))
    end
    return fail_type("fixed " .. name .. " (a string of " .. size .. " bytes)", v)
  end
  if pos + size > CAP then grow(pos, pos + size) end
  ffi_copy(B + pos, v, size)
  return pos + size
end

-- Decimals -----------------------------------------------------------------------------------------
-- A decimal value is a string of digits with an optional point ("-12.50") or a number; its unscaled
-- integer at `scale` is written as big-endian two's complement, as fastavro writes it: the smallest
-- length that holds the magnitude plus a sign bit ((bit length + 8) // 8 bytes, so -128 is FF 80).

-- Decimal digit string (no sign, no leading zeros needed) -> magnitude bytes, little-endian.
local function digits_to_bytes(d)
  local num = {}
  for i = 1, #d do num[i] = byte(d, i) - 48 end
  local out = {}
  local start = 1
  while start <= #num and num[start] == 0 do start = start + 1 end
  while start <= #num do
    local rem = 0
    for i = start, #num do
      local cur = rem * 10 + num[i]
      num[i] = floor(cur / 256)
      rem = cur % 256
    end
    out[#out + 1] = rem
    while start <= #num and num[start] == 0 do start = start + 1 end
  end
  return out
end

-- value, scale, precision -> the unscaled integer as two's complement bytes (big-endian), or nil, message.
local function decimal_bytes(v, scale, precision)
  if type(v) == "number" then
    if v ~= v or v == math.huge or v == -math.huge then return nil, "expected a decimal, got " .. kind(v) end
    v = format("%." .. scale .. "f", v)
  elseif type(v) ~= "string" then
    return nil, "expected a decimal (a string of digits such as \"-12.50\", or a number), got " .. kind(v)
  end
  local sign, int, frac = v:match("^%s*([-+]?)(%d*)%.?(%d*)%s*$")
  if not sign or (int == "" and frac == "") or (frac ~= "" and not v:find(".", 1, true)) then
    return nil, "expected a decimal (a string of digits such as \"-12.50\"), got " .. kind(v)
  end
  if #frac > scale then
    if frac:sub(scale + 1):find("[^0]") then
      return nil, format("decimal %s has more than %d digits after the point", v, scale)
    end
    frac = frac:sub(1, scale)
  else
    frac = frac .. ("0"):rep(scale - #frac)
  end
  local digits = (int .. frac):gsub("^0+", "")
  if #digits > precision then
    return nil, format("decimal %s has more than %d digits (precision)", v, precision)
  end
  local mag = digits_to_bytes(digits)  -- little-endian
  local nbits = 0
  if #mag > 0 then
    local top = mag[#mag]
    nbits = (#mag - 1) * 8
    while top > 0 do nbits = nbits + 1; top = floor(top / 2) end
  end
  local nbytes = floor((nbits + 8) / 8)
  for i = #mag + 1, nbytes do mag[i] = 0 end
  if sign == "-" and #digits > 0 then
    local carry = 1
    for i = 1, nbytes do
      local b = 255 - mag[i] + carry
      if b > 255 then b = b - 256; carry = 1 else carry = 0 end
      mag[i] = b
    end
  end
  local out = {}
  for i = 1, nbytes do out[i] = char(mag[nbytes + 1 - i]) end
  return concat(out)
end
M.decimal_bytes = decimal_bytes

function M.put_decimal(pos, v, scale, precision)
  local b, msg = decimal_bytes(v, scale, precision)
  if not b then return fail(msg) end
  return M.put_str(pos, b, "bytes")
end

function M.put_decimal_fixed(pos, v, scale, precision, size, name)
  local b, msg = decimal_bytes(v, scale, precision)
  if not b then return fail(msg) end
  if #b > size then return fail(format("decimal %s does not fit fixed %s of %d bytes", tostring(v), name, size)) end
  if #b < size then
    local pad = byte(b, 1) >= 128 and "\255" or "\0"
    b = pad:rep(size - #b) .. b
  end
  return M.put_fixed(pos, b, size, name)
end

-- Two's complement big-endian bytes -> "-12.50" at `scale`.
local function decimal_string(b, scale)
  local n = #b
  local mag = {}
  for i = 1, n do mag[i] = byte(b, i) end
  local neg = n > 0 and mag[1] >= 128
  if neg then
    local carry = 1
    for i = n, 1, -1 do
      local x = 255 - mag[i] + carry
      if x > 255 then x = x - 256; carry = 1 else carry = 0 end
      mag[i] = x
    end
  end
  -- base 10^7 limbs, little-endian
  local limbs = { 0 }
  for i = 1, n do
    local carry = mag[i]
    for k = 1, #limbs do
      local x = limbs[k] * 256 + carry
      limbs[k] = x % 10000000
      carry = floor(x / 10000000)
    end
    while carry > 0 do
      limbs[#limbs + 1] = carry % 10000000
      carry = floor(carry / 10000000)
    end
  end
  local parts = { tostring(limbs[#limbs]) }
  for k = #limbs - 1, 1, -1 do parts[#parts + 1] = format("%07d", limbs[k]) end
  local digits = concat(parts)
  if scale > 0 then
    if #digits <= scale then digits = ("0"):rep(scale - #digits + 1) .. digits end
    digits = digits:sub(1, #digits - scale) .. "." .. digits:sub(#digits - scale + 1)
  end
  if neg and digits:find("[1-9]") then digits = "-" .. digits end
  return digits
end
M.decimal_string = decimal_string

function M.put_duration(pos, v)
  if type(v) ~= "table" then return fail_type("duration (a table of months, days, milliseconds)", v) end
  if pos + 12 > CAP then grow(pos, pos + 12) end
  local names = { "months", "days", "milliseconds" }
  for i = 1, 3 do
    local x = v[names[i]]
    if x == nil then x = 0 end
    if type(x) ~= "number" or x < 0 or x > 4294967295 or x ~= floor(x) then
      return fail_type("duration " .. names[i] .. " (an unsigned 32-bit number)", x)
    end
    ffi_cast("uint32_t*", B + pos)[0] = x
    pos = pos + 4
  end
  return pos
end

-- Input -------------------------------------------------------------------------------------------
local P, N = nil, 0

function M.set_input(s, n)
  P, N = ffi_cast(cpu8, s), n
end

local function truncated(pos, what)
  M.err = format("truncated: %s at byte %d of %d", what, pos, N)
  return nil
end
M.truncated = truncated

function M.fail_at(pos, msg)
  M.err = format("%s at byte %d", msg, pos)
  return nil
end

local function get_int(pos)
  if pos >= N then return truncated(pos, "int") end
  local b = P[pos]
  if b < 128 then return bxor(rshift(b, 1), -band(b, 1)), pos + 1 end
  if pos + 1 < N then
    local b2 = P[pos + 1]
    if b2 < 128 then
      local z = bor(b - 128, lshift(b2, 7))
      return bxor(rshift(z, 1), -band(z, 1)), pos + 2
    end
  end
  local start = pos
  local z, shift = band(b, 127), 7
  pos = pos + 1
  repeat
    if pos >= N then return truncated(pos, "int") end
    if shift > 28 then return M.fail_at(start, "int varint longer than 5 bytes") end
    b = P[pos]
    pos = pos + 1
    z = bor(z, lshift(band(b, 127), shift))
    shift = shift + 7
  until b < 128
  return bxor(rshift(z, 1), -band(z, 1)), pos
end
M.get_int = get_int

local TWO53 = 9007199254740992
local function get_long64(pos)
  local start = pos
  local u = ffi_cast(uint64_t, 0)
  local shift = 0
  while true do
    if pos >= N then return truncated(pos, "long") end
    if shift > 63 then return M.fail_at(start, "long varint longer than 10 bytes") end
    local b = P[pos]
    pos = pos + 1
    u = bor(u, lshift(ffi_cast(uint64_t, band(b, 127)), shift))
    shift = shift + 7
    if b < 128 then break end
  end
  local x = ffi_cast(int64_t, bxor(rshift(u, 1), -band(u, 1)))
  if x >= -TWO53 and x <= TWO53 then return tonumber(x), pos end
  return x, pos
end

-- zigzag-decoded double (z < 2^53)
local function unzigzag(z)
  if z % 2 == 0 then return z / 2 end
  return -(z + 1) / 2
end

-- Unrolled for up to 7 bytes when 10 bytes remain (no loop: the caller's trace stays one trace).
local function get_long(pos)
  if pos + 10 <= N then
    local b = P[pos]
    if b < 128 then return bxor(rshift(b, 1), -band(b, 1)), pos + 1 end
    local z = b - 128
    b = P[pos + 1]
    if b < 128 then return unzigzag(z + b * 128), pos + 2 end
    z = z + (b - 128) * 128
    b = P[pos + 2]
    if b < 128 then return unzigzag(z + b * 16384), pos + 3 end
    z = z + (b - 128) * 16384
    b = P[pos + 3]
    if b < 128 then return unzigzag(z + b * 2097152), pos + 4 end
    z = z + (b - 128) * 2097152
    b = P[pos + 4]
    if b < 128 then return unzigzag(z + b * 268435456), pos + 5 end
    z = z + (b - 128) * 268435456
    b = P[pos + 5]
    if b < 128 then return unzigzag(z + b * 34359738368), pos + 6 end
    z = z + (b - 128) * 34359738368
    b = P[pos + 6]
    if b < 128 then return unzigzag(z + b * 4398046511104), pos + 7 end
    return get_long64(pos)
  end
  if pos >= N then return truncated(pos, "long") end
  local b = P[pos]
  if b < 128 then return bxor(rshift(b, 1), -band(b, 1)), pos + 1 end
  local start = pos
  local z, mult = b - 128, 128
  pos = pos + 1
  repeat
    if pos >= N then return truncated(pos, "long") end
    if mult >= 562949953421312 then return get_long64(start) end  -- past 7 bytes: beyond doubles' exact range
    b = P[pos]
    pos = pos + 1
    z = z + (b % 128) * mult
    mult = mult * 128
  until b < 128
  if z % 2 == 0 then return z / 2, pos end
  return -(z + 1) / 2, pos
end
M.get_long = get_long

-- A length, block count or union index: a long, but never beyond 2^49 (7 bytes) in any input this
-- can read, so it is always a number (never the int64 cdata get_long gives beyond 2^53: a value
-- that is sometimes a number and sometimes cdata in one trace slot made LuaJIT 2.1.0-beta3's
-- JIT-compiled code crash under tests/fuzz/avro_fuzz).
local function get_size(pos)
  if pos + 7 <= N then
    local b = P[pos]
    if b < 128 then return bxor(rshift(b, 1), -band(b, 1)), pos + 1 end
    local z = b - 128
    b = P[pos + 1]
    if b < 128 then return unzigzag(z + b * 128), pos + 2 end
    z = z + (b - 128) * 128
    b = P[pos + 2]
    if b < 128 then return unzigzag(z + b * 16384), pos + 3 end
    z = z + (b - 128) * 16384
    b = P[pos + 3]
    if b < 128 then return unzigzag(z + b * 2097152), pos + 4 end
    z = z + (b - 128) * 2097152
    b = P[pos + 4]
    if b < 128 then return unzigzag(z + b * 268435456), pos + 5 end
    z = z + (b - 128) * 268435456
    b = P[pos + 5]
    if b < 128 then return unzigzag(z + b * 34359738368), pos + 6 end
    z = z + (b - 128) * 34359738368
    b = P[pos + 6]
    if b < 128 then return unzigzag(z + b * 4398046511104), pos + 7 end
    return M.fail_at(pos, "length, count or index beyond 2^48")
  end
  local z, mult, start = 0, 1, pos
  repeat
    if pos >= N then return truncated(pos, "long") end
    if mult > 4398046511104 then return M.fail_at(start, "length, count or index beyond 2^48") end
    local b = P[pos]
    pos = pos + 1
    z = z + (b % 128) * mult
    mult = mult * 128
  until b < 128
  return unzigzag(z), pos
end
M.get_size = get_size

function M.get_bool(pos)
  if pos >= N then return truncated(pos, "boolean") end
  local b = P[pos]
  if b == 1 then return true, pos + 1 elseif b == 0 then return false, pos + 1 end
  return M.fail_at(pos, "invalid boolean byte " .. b)
end

-- NaNs are returned as Lua's own NaN: LuaJIT keeps its other values inside the NaN space, and a
-- double loaded with an arbitrary NaN payload crashed the VM (found by tests/fuzz/avro_fuzz).
local NAN = 0 / 0
local cpu32 = ffi.typeof("const uint32_t*")

function M.get_float(pos)
  if pos + 4 > N then return truncated(pos, "float") end
  local bits = ffi_cast(cpu32, P + pos)[0]
  if band(bits, 0x7f800000) == 0x7f800000 and band(bits, 0x7fffff) ~= 0 then return NAN, pos + 4 end
  return ffi_cast(cpfloat, P + pos)[0], pos + 4
end

function M.get_double(pos)
  if pos + 8 > N then return truncated(pos, "double") end
  local hi = ffi_cast(cpu32, P + pos + 4)[0]
  if band(hi, 0x7ff00000) == 0x7ff00000 and (band(hi, 0xfffff) ~= 0 or ffi_cast(cpu32, P + pos)[0] ~= 0) then
    return NAN, pos + 8
  end
  return ffi_cast(cpdouble, P + pos)[0], pos + 8
end

function M.get_str(pos)
  local n
  n, pos = get_size(pos)
  if not pos then return nil end
  if n < 0 then return M.fail_at(pos, "negative length " .. n) end
  if pos + n > N then return truncated(pos, n .. " bytes of a string/bytes") end
  return ffi_string(P + pos, n), pos + n
end

function M.get_fixed(pos, size)
  if pos + size > N then return truncated(pos, size .. " bytes of a fixed") end
  return ffi_string(P + pos, size), pos + size
end

-- A decimal's bytes are at most what its precision needs (plus one spare), so a hostile length cannot
-- make the quadratic conversion slow.
function M.get_decimal(pos, scale, precision)
  local b
  local start = pos
  b, pos = M.get_str(pos)
  if not pos then return nil end
  if #b > floor(precision * 0.4152) + 2 then  -- log(10)/log(256) = 0.4152 bytes a digit
    return M.fail_at(start, format("decimal of %d bytes exceeds its precision %d", #b, precision))
  end
  return decimal_string(b, scale), pos
end

function M.get_decimal_fixed(pos, size, scale)
  if pos + size > N then return truncated(pos, size .. " bytes of a fixed") end
  return decimal_string(ffi_string(P + pos, size), scale), pos + size
end

function M.get_duration(pos)
  if pos + 12 > N then return truncated(pos, "duration") end
  local p = ffi_cast("const uint32_t*", P + pos)
  return { months = tonumber(p[0]), days = tonumber(p[1]), milliseconds = tonumber(p[2]) }, pos + 12
end

-- Array and map block counts: a negative count is followed by the block's byte size. minsize: the
-- fewest bytes one item takes, so a count the remaining input cannot hold fails before any
-- allocation; items of zero size (null, empty records) are capped at 10^6 per array (so far:
-- the items of the blocks before).
local MAX_EMPTY_ITEMS = 1000000
function M.get_count(pos, minsize, sofar)
  local n
  n, pos = get_size(pos)
  if not pos then return nil end
  if n < 0 then
    n = -n
    local size
    size, pos = get_size(pos)
    if not pos then return nil end
    if size < 0 then return M.fail_at(pos, "negative block size") end
  end
  if minsize > 0 then
    if n * minsize > N - pos then return truncated(pos, n .. " items of an array/map block") end
  elseif n + (sofar or 0) > MAX_EMPTY_ITEMS then
    return M.fail_at(pos, "array of more than " .. MAX_EMPTY_ITEMS .. " zero-size items")
  end
  return n, pos
end

function M.input_length() return N end

return M
