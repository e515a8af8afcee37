-- touch: slide the idle timers of open sessions of one pool, many in one
-- call. Used by the lease cache, which forwards without waiting for Redis
-- and sends the touches that fell due in a short window together. A layout 2
-- session costs two commands (ZSCORE, ZADD): its seat's score is its expiry;
-- four in its last idle period (`slide`).
--
-- KEYS[1]  T:s (declares the pool's slot)
-- ARGV     1 now ms (0 = Redis TIME)   2 tag T   3 idle ms
--          4.. quadruples of (identity, session id, bucket, absolute end ms)
-- Returns  { now, answers }: one answer per session, 1 when it was slid, 0
--          when it is no longer open (or was replaced by a newer session of
--          the identity). An expired seat is never slid back to life: the
--          pool may have counted it free already.
local now = now_ms(ARGV[1])
local tag, idle = ARGV[2], tonumber(ARGV[3])
local out = {}
for i = 4, #ARGV - 3, 4 do
    local identity, id, bucket, absolute = ARGV[i], ARGV[i + 1], ARGV[i + 2], tonumber(ARGV[i + 3])
    local answer = 0
    if #identity == 64 then
        local s = alive(legacy_load(tag, identity), now)
        if s and s[1] == id then
            slide(tag, s, now, idle)
            answer = 1
        end
    else
        if now + idle >= absolute then
            -- The last idle period: the value keeps the last use.
            local s = alive(load_id(tag, id, idle), now)
            if s then
                slide(tag, s, now, idle)
                answer = 1
            end
        else
            local key = tag .. ':b:' .. bucket
            local score = redis.call('ZSCORE', key, id)
            if score and tonumber(score) > now then
                redis.call('ZADD', key, now + idle, id)
                answer = 1
            end
        end
    end
    out[#out + 1] = answer
end
return {now, out}
