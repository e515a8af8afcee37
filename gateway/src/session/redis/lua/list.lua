-- list: the open sessions of a pool (both layouts).
--
-- KEYS[1]  T:b:0 (declares the pool's slot)
-- ARGV     1 now ms (0 = Redis TIME)   2 tag T   3 bucket count n   4 idle ms
-- Returns  the sessions.
local now, tag, idle = now_ms(ARGV[1]), ARGV[2], tonumber(ARGV[4])
local out = {}
for b = 0, tonumber(ARGV[3]) - 1 do
    for _, m in ipairs(redis.call('ZRANGEBYSCORE', tag .. ':b:' .. b, '(' .. now, '+inf')) do
        local s = load_member(tag, m, idle)
        if alive(s, now) then
            table.insert(out, s)
        end
    end
end
return out
