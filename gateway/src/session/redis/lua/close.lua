-- close: close an open session by id and free its seat.
--
-- KEYS[1]  T:i:<session id>
-- ARGV     1 now ms (0 = Redis TIME)   2 tag T   3 session id   4 reason
-- Returns  the closed session with its reason as 12th field, or nil when it
--          was not open (an expired one is left for the sweeper to report).
local identity = redis.call('GET', KEYS[1])
if not identity then
    return nil
end
local s = load_alive(ARGV[2], identity, now_ms(ARGV[1]))
if not s or s[1] ~= ARGV[3] then
    return nil
end
remove(ARGV[2], s)
revoke(ARGV[2], s)
s[12] = ARGV[4]
return s
