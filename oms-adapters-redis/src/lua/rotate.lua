-- Presents a refresh token to its family (see SessionStore::rotate).
--
-- KEYS[1]: the family key, holding the live refresh token's id, or
--          `revoked`, or nothing (unknown or expired).
-- KEYS[2]: the sorted set of revocations in force; KEYS[3]: the stream of
--          revocations (the feed replicas follow).
-- ARGV[1]: the presented token id. ARGV[2]: the next token id.
-- ARGV[3]: the TTL in milliseconds of what is written to KEYS[1].
-- ARGV[4]: the family's revocation entry (`s:<sid>`); ARGV[5]: until when
--          it is in force (unix ms); ARGV[6]: the oldest stream id to keep.
--
-- Returns 1 (rotated), 2 (reused: the family is now revoked) or 0 (dead:
-- revoked or unknown, nothing written).
local current = redis.call('GET', KEYS[1])
if (not current) or current == 'revoked' then
  return 0
end
if current == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
  return 1
end
redis.call('SET', KEYS[1], 'revoked', 'PX', ARGV[3])
redis.call('ZADD', KEYS[2], ARGV[5], ARGV[4])
redis.call('XADD', KEYS[3], 'MINID', '~', ARGV[6], '*', 'r', ARGV[4], 'u', ARGV[5])
return 2
