-- touch: slide the idle timers of open sessions of one pool, many in one
-- call. Used by the lease cache, which forwards without waiting for Redis
-- and sends the touches that fell due in a short window together.
--
-- KEYS[1]  T:s:<identity of the first session> (declares the pool's slot)
-- ARGV     1 now ms (0 = Redis TIME)   2 tag T   3 idle ms
--          4.. pairs of (identity, session id)
-- Returns  one entry per pair: the session, or nil when it is no longer
--          open (or was replaced by a newer session of the identity).
local now = now_ms(ARGV[1])
local tag, idle = ARGV[2], tonumber(ARGV[3])
local out = {}
for i = 4, #ARGV - 1, 2 do
    local s = load_alive(tag, ARGV[i], now)
    if s and s[1] == ARGV[i + 1] then
        s[9] = tostring(now)
        s[10] = tostring(now + idle)
        slide(tag, s)
        out[#out + 1] = s
    else
        out[#out + 1] = false
    end
end
return out
