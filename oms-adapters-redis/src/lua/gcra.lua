-- GCRA (the generic cell rate algorithm, the arithmetic of
-- oms_core::domain::gcra) on Redis time, for the scripts that include it:
-- the rate limiter's and the stock gate's.

-- Redis's clock (TIME), in unix µs.
local function redis_now()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000000 + tonumber(t[2])
end

-- One request against the theoretical arrival time (TAT, unix µs) held at
-- `key`: `interval` and `tolerance` in µs (tolerance = interval ×
-- (burst − 1)), `now` in µs. Returns 0 when allowed, having moved the TAT
-- to max(TAT, now) + interval (the key expires `margin_ms` after it); or
-- the µs until a request would be allowed, having written nothing.
local function gcra(key, interval, tolerance, margin_ms, now)
  local tat = tonumber(redis.call('GET', key) or '') or now
  if tat < now then
    tat = now
  end
  local allow_at = math.max(0, tat - tolerance)
  if now < allow_at then
    return allow_at - now
  end
  tat = tat + interval
  local ttl = math.ceil((tat - now) / 1000) + margin_ms
  redis.call('SET', key, string.format('%.0f', tat), 'PX', string.format('%.0f', ttl))
  return 0
end
