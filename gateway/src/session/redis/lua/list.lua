-- list: the open sessions of a pool.
--
-- KEYS[1]  T:b:0 (declares the pool's slot)
-- ARGV     1 now ms (0 = Redis TIME)   2 tag T   3 bucket count n
-- Returns  the sessions.
local now = now_ms(ARGV[1])
local out = {}
for b = 0, tonumber(ARGV[3]) - 1 do
    for _, m in ipairs(redis.call('ZRANGEBYSCORE', ARGV[2] .. ':b:' .. b, '(' .. now, '+inf')) do
        local s = load_alive(ARGV[2], m, now)
        if s then
            table.insert(out, s)
        end
    end
end
return out
