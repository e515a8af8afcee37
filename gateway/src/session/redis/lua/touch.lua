-- touch: slide the idle timers of open sessions of one pool, many in one
-- call. Used by the lease cache, which forwards without waiting for Redis
-- and sends the touches that fell due in a short window together. Layout 2
-- sessions cost two commands per seat bucket and call, whatever their
-- number: one ZMSCORE reads their seats' scores (their expiries), one ZADD
-- slides the open ones. A session in its last idle period costs a value
-- write too (`slide`); one of layout 1 costs its old four commands.
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
local by_bucket = {}
for i = 4, #ARGV - 3, 4 do
    local identity, id, bucket, absolute = ARGV[i], ARGV[i + 1], ARGV[i + 2], tonumber(ARGV[i + 3])
    local n = #out + 1
    out[n] = 0
    if #identity == 64 then
        local s = alive(legacy_load(tag, identity), now)
        if s and s[1] == id then
            slide(tag, s, now, idle)
            out[n] = 1
        end
    elseif now + idle >= absolute then
        -- The last idle period: the value keeps the last use.
        local s = alive(load_id(tag, id, idle), now)
        if s then
            slide(tag, s, now, idle)
            out[n] = 1
        end
    else
        local batch = by_bucket[bucket]
        if not batch then
            batch = {ids = {}, answers = {}}
            by_bucket[bucket] = batch
        end
        table.insert(batch.ids, id)
        table.insert(batch.answers, n)
    end
end
for bucket, batch in pairs(by_bucket) do
    local key = tag .. ':b:' .. bucket
    local scores = redis.call('ZMSCORE', key, unpack(batch.ids))
    local slid = {'XX'}
    for k, id in ipairs(batch.ids) do
        if scores[k] and tonumber(scores[k]) > now then
            table.insert(slid, now + idle)
            table.insert(slid, id)
            out[batch.answers[k]] = 1
        end
    end
    if #slid > 1 then
        redis.call('ZADD', key, unpack(slid))
    end
end
return {now, out}
