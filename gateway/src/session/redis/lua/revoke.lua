-- revoke: record a revocation for the whole fleet until it lapses, and drop
-- the ones that have lapsed.
--
-- KEYS[1]  {<prefix>}:revocations  ZSET member = encoded revocation, score = lapse ms
-- ARGV     1 now ms (0 = Redis TIME)   2 encoded revocation   3 lapse ms   4 linger ms
local now = now_ms(ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
redis.call('ZADD', KEYS[1], tonumber(ARGV[3]), ARGV[2])
extend(KEYS[1], tonumber(ARGV[3]) - now + tonumber(ARGV[4]))
return 1
