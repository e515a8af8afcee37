-- revoke: record a revocation for the whole fleet until it lapses, and drop
-- the ones that have lapsed.
--
-- Then tell every instance at once on the revocation channel
-- (`revoke|<encoded revocation>`); one that misses the message finds the
-- revocation at its next sync, and the admission script refuses the token
-- meanwhile (mark_revoked's markers).
--
-- KEYS[1]  {<prefix>}:revocations  ZSET member = encoded revocation, score = lapse ms
-- ARGV     1 now ms (0 = Redis TIME)   2 encoded revocation   3 lapse ms   4 linger ms
--          5 the revocation channel
local now = now_ms(ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
redis.call('ZADD', KEYS[1], tonumber(ARGV[3]), ARGV[2])
extend(KEYS[1], tonumber(ARGV[3]) - now + tonumber(ARGV[4]))
redis.call('PUBLISH', ARGV[5], 'revoke|' .. ARGV[2])
return 1
