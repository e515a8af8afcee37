-- usage: open sessions of a pool (expired ones do not count), and the
-- callers waiting in its line (lapsed tickets do not count).
--
-- KEYS[1]  T:b:0 (declares the pool's slot)
-- ARGV     1 now ms (0 = Redis TIME)   2 tag T   3 bucket count n
-- Returns  { open sessions, waiting callers }.
local now = now_ms(ARGV[1])
local total = 0
for b = 0, tonumber(ARGV[3]) - 1 do
    total = total + redis.call('ZCOUNT', ARGV[2] .. ':b:' .. b, '(' .. now, '+inf')
end
return {total, redis.call('ZCOUNT', ARGV[2] .. ':qd', '(' .. now, '+inf')}
