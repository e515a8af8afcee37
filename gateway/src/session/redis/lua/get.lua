-- get: an open session by id.
--
-- KEYS[1]  T:i:<session id>
-- ARGV     1 now ms (0 = Redis TIME)   2 tag T   3 session id
-- Returns  the session or nil.
local identity = redis.call('GET', KEYS[1])
if not identity then
    return nil
end
local s = load_alive(ARGV[2], identity, now_ms(ARGV[1]))
if s and s[1] == ARGV[3] then
    return s
end
return nil
