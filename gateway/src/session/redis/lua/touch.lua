-- touch: slide the idle timer of an open session; nothing if it has closed.
-- Used by the lease cache, which forwards without waiting for Redis.
--
-- KEYS[1]  T:s:<identity>
-- ARGV     1 now ms (0 = Redis TIME)   2 tag T   3 identity   4 session id
--          5 idle ms   6 linger ms
-- Returns  the session, or nil when it is no longer open (or was replaced
--          by a newer session of the identity).
local now = now_ms(ARGV[1])
local s = load_alive(ARGV[2], ARGV[3], now)
if not s or s[1] ~= ARGV[4] then
    return nil
end
s[9] = tostring(now)
s[10] = tostring(now + tonumber(ARGV[5]))
persist(ARGV[2], s, now, tonumber(ARGV[6]))
return s
