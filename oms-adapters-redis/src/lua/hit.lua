-- Counts one attempt under each key (see AttemptCounter::hit).
--
-- KEYS: the counters. ARGV[1]: the window in milliseconds.
-- Returns, for each key, its count and the milliseconds left in its
-- window. A counter's TTL is set by its first attempt; one found without a
-- TTL is given the window.
local out = {}
for i = 1, #KEYS do
  local count = redis.call('INCR', KEYS[i])
  local left = redis.call('PTTL', KEYS[i])
  if left < 0 then
    redis.call('PEXPIRE', KEYS[i], ARGV[1])
    left = tonumber(ARGV[1])
  end
  out[2 * i - 1] = count
  out[2 * i] = left
end
return out
