-- revocations: the revocations in force now.
--
-- KEYS[1]  {<prefix>}:revocations
-- ARGV     1 now ms (0 = Redis TIME)
-- Returns  the encoded revocations.
return redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. now_ms(ARGV[1]), '+inf')
