-- klua.timespec: times and durations as the CLI and admin:reset_group_offsets read them. Expected
-- values are computed independently: os.time of the UTC fields (TZ=UTC for this test), or arithmetic.
local T = klua.timespec

-- Epoch ms of a UTC date-time through the C library (os.time reads local time: the offset between
-- os.time of the fields and of os.date("!*t") of the result is the zone's, subtracted here).
local function utc_ms(y, mo, d, h, mi, s)
  local t = os.time{ year = y, month = mo, day = d, hour = h, min = mi, sec = s }
  local back = os.date("!*t", t)
  back.isdst = false
  local zone = os.time(back) - t
  return (t - zone) * 1000
end

test("ISO-8601 date-times, with Z, an offset, no zone (UTC), a fraction, or a date alone", function()
  assert_eq(T.time("2024-05-01T12:00:00Z"), utc_ms(2024, 5, 1, 12, 0, 0))
  assert_eq(T.time("2024-05-01T12:00:00"), utc_ms(2024, 5, 1, 12, 0, 0))
  assert_eq(T.time("2024-05-01 12:00:00Z"), utc_ms(2024, 5, 1, 12, 0, 0))
  assert_eq(T.time("2024-05-01T14:00:00+02:00"), utc_ms(2024, 5, 1, 12, 0, 0))
  assert_eq(T.time("2024-05-01T07:30:00-0430"), utc_ms(2024, 5, 1, 12, 0, 0))
  assert_eq(T.time("2024-05-01T12:00:00.250Z"), utc_ms(2024, 5, 1, 12, 0, 0) + 250)
  assert_eq(T.time("2024-05-01T12:00Z"), utc_ms(2024, 5, 1, 12, 0, 0))
  assert_eq(T.time("2024-02-29"), utc_ms(2024, 2, 29, 0, 0, 0))
  assert_eq(T.time("1999-12-31T23:59:59Z"), utc_ms(1999, 12, 31, 23, 59, 59))
  assert_eq(T.time("1970-01-01T00:00:00Z"), 0)
end)

test("epoch ms, now, and relative times: -D and D are that long ago, +D ahead", function()
  local now = 1714564800000
  assert_eq(T.time("1714564800000"), 1714564800000)
  assert_eq(T.time(1234), 1234)
  assert_eq(T.time("now", now), now)
  assert_eq(T.time("-2h", now), now - 2 * 3600 * 1000)
  assert_eq(T.time("2h", now), now - 2 * 3600 * 1000)
  assert_eq(T.time("+1h", now), now + 3600 * 1000)
  assert_eq(T.time("-30m", now), now - 30 * 60 * 1000)
  assert_eq(T.time("1d", now), now - 24 * 3600 * 1000)
  assert_eq(T.time("-PT15M", now), now - 15 * 60 * 1000)
  local before = klua.time()
  local t = T.time("-1s")
  assert_true(t >= before - 1000 and t <= klua.time() - 1000, "relative to klua.time()")
end)

test("durations: unit terms, ISO-8601, plain ms, a sign", function()
  assert_eq(T.duration("1h"), 3600 * 1000)
  assert_eq(T.duration("30m"), 30 * 60 * 1000)
  assert_eq(T.duration("90s"), 90 * 1000)
  assert_eq(T.duration("500ms"), 500)
  assert_eq(T.duration("1d"), 24 * 3600 * 1000)
  assert_eq(T.duration("2w"), 14 * 24 * 3600 * 1000)
  assert_eq(T.duration("1h30m"), 90 * 60 * 1000)
  assert_eq(T.duration("1.5h"), 90 * 60 * 1000)
  assert_eq(T.duration("PT1H30M"), 90 * 60 * 1000)
  assert_eq(T.duration("P1DT12H"), 36 * 3600 * 1000)
  assert_eq(T.duration("PT0.5S"), 500)
  assert_eq(T.duration("P2W"), 14 * 24 * 3600 * 1000)
  assert_eq(T.duration("250"), 250)
  assert_eq(T.duration(42), 42)
  assert_eq(T.duration("-2h"), -2 * 3600 * 1000)
  assert_eq(T.duration("+2h"), 2 * 3600 * 1000)
end)

test("what they cannot read is nil and a message naming the accepted forms", function()
  for _, bad in ipairs{ "", "soon", "1 hour", "2h ago", "1y", "P1Y", "P", "PT", "--2h", "2024-13-01", "2024-05-32",
                        "2024-05-01T25:00:00Z", "2024-05-01T12:00:00+2", "12:00" } do
    local v, msg = T.time(bad)
    assert_eq(v, nil, bad)
    assert_match(msg, "expected a time")
  end
  for _, bad in ipairs{ "", "soon", "1 hour", "1y", "P1Y", "P", "PT", "h", "--1h", {} } do
    local v, msg = T.duration(bad)
    assert_eq(v, nil, tostring(bad))
    assert_match(msg, "expected a duration")
  end
end)

test("a day is checked against its month (leap years included) and an offset against +-18:00", function()
  -- the expected values by arithmetic: days since 1970-01-01 * 86400000
  assert_eq(T.time("2024-02-29"), 19782 * 86400000)
  assert_eq(T.time("2000-02-29T00:00:00Z"), 11016 * 86400000)
  assert_eq(T.time("2024-04-30"), 19843 * 86400000)
  assert_eq(T.time("2024-01-01T18:00:00+18:00"), 19723 * 86400000)
  for _, bad in ipairs{ "2023-02-29", "1900-02-29", "2024-02-30", "2024-04-31", "2024-06-31", "2024-09-31",
                        "2024-11-31", "2024-01-01T00:00:00+19:00", "2024-01-01T00:00:00+05:60" } do
    local v, msg = T.time(bad)
    assert_eq(v, nil, bad)
    assert_match(msg, "expected a time")
  end
  for _, n in ipairs{ 0 / 0, 1 / 0, -1 / 0 } do
    assert_eq(T.time(n), nil, tostring(n))
    assert_eq(T.duration(n), nil, tostring(n))
  end
end)
