-- history: one pool's usage history at one step, from an interval through
-- the one holding now, and what the reader needs to rebuild it (the seats
-- held now, and the expiries not purged yet).
--
-- KEYS[1]  T:s (declares the pool's slot)
-- ARGV     1 now ms (0 = Redis TIME)   2 tag T   3 step letter (m, h, d)
--          4 step ms   5 first interval   6 bucket count n
--          7 '1': also the distinct subjects of the months from the first
--          interval's (a day) through now's   8 reserved bucket (0 = the pool)
-- Returns  { now, began ms (-1 = none), live seats, { unpurged expiry ms, … },
--            { interval, { field, value, … }, … }, { month, subjects, … } }
local now, tag = now_ms(ARGV[1]), ARGV[2]
local letter, length, first = ARGV[3], tonumber(ARGV[4]), tonumber(ARGV[5])
local n, bucket = tonumber(ARGV[6]), tonumber(ARGV[8])
local base, first_bucket, last_bucket = tag .. ':h', 0, n - 1
if bucket > 0 then
    base, first_bucket, last_bucket = tag .. ':h' .. bucket, bucket, bucket
end
local live, unpurged = 0, {}
for b = first_bucket, last_bucket do
    local key = tag .. ':b:' .. b
    live = live + redis.call('ZCOUNT', key, '(' .. now, '+inf')
    local expired = redis.call('ZRANGEBYSCORE', key, '-inf', now, 'WITHSCORES')
    for i = 2, #expired, 2 do
        table.insert(unpurged, expired[i])
    end
end
local intervals = {}
for index = first, math.floor(now / length) do
    local fields = redis.call('HGETALL', base .. ':' .. letter .. ':' .. index)
    if #fields > 0 then
        table.insert(intervals, tostring(index))
        table.insert(intervals, fields)
    end
end
local months = {}
if ARGV[7] == '1' then
    for month = month_of_day(first), month_of_day(math.floor(now / DAY)) do
        local u = redis.call('HGET', tag .. ':h:M:' .. month, 'u')
        if u then
            table.insert(months, tostring(month))
            table.insert(months, u)
        end
    end
end
local began = redis.call('GET', base .. ':began') or '-1'
return {tostring(now), began, live, unpurged, intervals, months}
