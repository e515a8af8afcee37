-- delete_revocation: delete, for the whole fleet, the revocations in force
-- with one id, and drop the ones that have lapsed. The id is derived from the
-- encoded form as Revocation::id does: a token revocation's key
-- (`t|<until>|<key>`), or `subject:` and the subject key
-- (`s|<until>|<subject key>|…`). The set is small enough (revocations live
-- about a day) to scan in one call.
--
-- KEYS[1]  {<prefix>}:revocations  ZSET member = encoded revocation, score = lapse ms
-- ARGV     1 now ms (0 = Redis TIME)   2 revocation id
-- Returns  the encoded revocations deleted.
local now = now_ms(ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
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
        redis.call('ZREM', KEYS[1], member)
        deleted[#deleted + 1] = member
    end
end
return deleted
