-- leave: a waiting caller leaves the pool's line without a seat (it waited
-- max_wait, or its client went away). The callers behind it move up; if a
-- seat is free for them, every instance hears so.
--
-- KEYS[1]  T:s (declares the pool's slot)
-- ARGV     1 now ms (0 = Redis TIME)   2 tag T   3 ticket
--          4 why ('timeout': written into the history as a refusal | 'left')
--          5 HISTORY (see common.lua)   6 the overdraft bucket (0 = none)
--          7 bucket count n   8 .. 7+n  capacity of bucket 0 .. n-1
-- Returns  1 when the ticket was in line, 0 when it was not (it lapsed, and
--          was written into the history then).
local now = now_ms(ARGV[1])
local tag = ARGV[2]
local removed = redis.call('ZREM', tag .. ':q', ARGV[3])
redis.call('ZREM', tag .. ':qd', ARGV[3])
if removed == 0 then
    return 0
end
if ARGV[4] == 'timeout' then
    history_refused(tag, history_of(ARGV[5]), now, 'queue_timeout')
end
if redis.call('EXISTS', tag .. ':q') == 1 then
    local over, n = tonumber(ARGV[6]), tonumber(ARGV[7])
    local used, caps = {}, {}
    for b = 0, n - 1 do
        used[b] = redis.call('ZCOUNT', tag .. ':b:' .. b, '(' .. now, '+inf')
        caps[b] = tonumber(ARGV[8 + b])
    end
    if common_free(used, caps, over) > 0 then
        wake(tag)
    end
end
return 1
