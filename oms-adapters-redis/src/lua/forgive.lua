-- Takes one attempt back from each key that counts any (see
-- AttemptCounter::forgive); DECR keeps the key's TTL.
--
-- KEYS: the counters.
for i = 1, #KEYS do
  local count = tonumber(redis.call('GET', KEYS[i]) or '0')
  if count and count > 0 then
    redis.call('DECR', KEYS[i])
  end
end
return 0
