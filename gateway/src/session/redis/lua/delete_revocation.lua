-- delete_revocation: delete, for the whole fleet, the revocations in force
-- with one id, and drop the ones that have lapsed. The id is derived from the
-- encoded form as Revocation::id does: a token revocation's key
-- (`t|<until>|<key>`), or `subject:` and the subject key
-- (`s|<until>|<subject key>|…`). The set is small enough (revocations live
-- about a day) to scan in one call.
--
-- Each deletion leaves a tombstone (the id, until the revocation would have
-- lapsed), so the instance that made the revocation, which re-publishes its
-- own revocations when they go missing from Redis (data loss), can tell a
-- deleted one from a lost one.
--
-- KEYS[1]  {<prefix>}:revocations  ZSET member = encoded revocation, score = lapse ms
-- KEYS[2]  {<prefix>}:revocations:deleted  ZSET member = id, score = lapse ms
-- ARGV     1 now ms (0 = Redis TIME)   2 revocation id   3 linger ms
-- Returns  the encoded revocations deleted.
local now = now_ms(ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
local deleted = {}
for _, member in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
    local kind, rest = string.match(member, '^(%a)|%d+|(.*)$')
    local id = nil
    if kind == 't' then
        id = rest
    elseif kind == 's' then
        id = 'subject:' .. string.match(rest, '^[^|]*')
    end
    if id == ARGV[2] then
        local lapse = tonumber(redis.call('ZSCORE', KEYS[1], member))
        local kept = tonumber(redis.call('ZSCORE', KEYS[2], id) or 0)
        redis.call('ZREM', KEYS[1], member)
        if lapse > kept then
            redis.call('ZADD', KEYS[2], lapse, id)
            extend(KEYS[2], lapse - now + tonumber(ARGV[3]))
        end
        deleted[#deleted + 1] = member
    end
end
return deleted
