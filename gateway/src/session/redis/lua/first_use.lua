-- first_use: record a one-time token id until a time; 1 the first time,
-- 0 on a replay.
--
-- KEYS[1]  {<prefix>}:used:<key>
-- ARGV     1 now ms (0 = Redis TIME)   2 lapse ms
local ttl = math.max(tonumber(ARGV[2]) - now_ms(ARGV[1]), 1)
if redis.call('SET', KEYS[1], '1', 'NX', 'PX', ttl) then
    return 1
end
return 0
