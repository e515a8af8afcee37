-- deleted_revocations: the ids of revocations deleted by an operator whose
-- revocations would still be in force (the tombstones delete_revocation
-- leaves).
--
-- KEYS[1]  {<prefix>}:revocations:deleted  ZSET member = id, score = lapse ms
-- ARGV     1 now ms (0 = Redis TIME)
-- Returns  the ids.
return redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. now_ms(ARGV[1]), '+inf')
