-- close_subject: close every open session of a subject in this pool.
--
-- KEYS[1]  T:u:<subject key>
-- ARGV     1 now ms (0 = Redis TIME)   2 tag T   3 reason
-- Returns  the closed sessions, each with its reason as 12th field.
local now = now_ms(ARGV[1])
local out = {}
for _, m in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
    local s = load_alive(ARGV[2], m, now)
    if s then
        remove(ARGV[2], s)
        revoke(ARGV[2], s)
        s[12] = ARGV[3]
        table.insert(out, s)
    end
end
return out
