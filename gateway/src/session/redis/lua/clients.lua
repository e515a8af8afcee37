-- clients: note one sighting of a session's client (shared-token detection)
-- and count the distinct client addresses and user agents within the window.
--
-- KEYS[1]  T:xa:<session id>   KEYS[2]  T:xu:<session id>: ZSETs of digests
--          (22 base64url characters), scored by when last seen
-- ARGV     1 now ms (0 = Redis TIME)   2 address digest   3 user agent digest
--          4 window ms   5 the most members kept per set (the oldest go first)
--          6, 7 the addresses and user agents past which the sighting is
--          refused, not recorded (0 0: always recorded)
-- Returns  { addresses, user agents (this sighting counted), recorded 1 | 0 }
local now = now_ms(ARGV[1])
local window, cap = tonumber(ARGV[4]), tonumber(ARGV[5])
local bounds = {tonumber(ARGV[6]), tonumber(ARGV[7])}
local members = {ARGV[2], ARGV[3]}
local counts, refused = {}, false
for i = 1, 2 do
    redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', now - window)
    local known = redis.call('ZSCORE', KEYS[i], members[i])
    counts[i] = math.min(redis.call('ZCARD', KEYS[i]) + (known and 0 or 1), cap)
    if bounds[i] > 0 and counts[i] > bounds[i] then
        refused = true
    end
end
if refused then
    return {counts[1], counts[2], 0}
end
for i = 1, 2 do
    redis.call('ZADD', KEYS[i], now, members[i])
    redis.call('ZREMRANGEBYRANK', KEYS[i], 0, -(cap + 1))
    redis.call('PEXPIRE', KEYS[i], window)
end
return {counts[1], counts[2], 1}
