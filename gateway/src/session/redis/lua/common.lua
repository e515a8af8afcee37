-- Shared helpers, prepended to every script of the Redis store.
--
-- Data model of one pool, all keys under one hash tag T = "{<prefix>:<pool>}"
-- so a pool lives in one Cluster slot:
--   T:b:<bucket>       ZSET  member = identity, score = expiry in ms (the seats)
--   T:s:<identity>     HASH  the session's fields (see FIELDS)
--   T:i:<session id>   STRING identity of a session id
--   T:u:<subject key>  ZSET  member = identity, score = last seen (per-subject caps, LRU)
--   T:sid:<sid key>    SET   ids of the sessions opened under an identity provider
--                            session (back-channel logout), until their absolute expiry
-- Every key carries an expiry (its sessions' expiry plus a linger time), so
-- nothing outlives the sessions it describes even if no script runs again.
--
-- A session is alive while now < min(idle_exp, abs_exp).

local FIELDS = {'id', 'identity', 'bucket', 'issuer', 'subject', 'client',
                'subject_key', 'created', 'last_seen', 'idle_exp', 'abs_exp'}

-- The time: the caller's explicit time (tests) or the Redis server's clock,
-- so gateway instances may drift without changing who holds a seat.
local function now_ms(arg)
    local n = tonumber(arg)
    if n and n > 0 then
        return n
    end
    local t = redis.call('TIME')
    return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

local function expires(s)
    return math.min(tonumber(s[10]), tonumber(s[11]))
end

local function load(tag, identity)
    local s = redis.call('HMGET', tag .. ':s:' .. identity, unpack(FIELDS))
    if not s[1] then
        return nil
    end
    return s
end

local function load_alive(tag, identity, now)
    local s = load(tag, identity)
    if s and expires(s) > now then
        return s
    end
    return nil
end

-- Key lifetimes are relative (PEXPIRE, not PEXPIREAT): the script's `now`
-- may be a test's explicit time, while Redis expires keys by its own clock.
-- Sets a key's time to live to `ttl` ms unless it already lives longer.
local function extend(key, ttl)
    if redis.call('PTTL', key) < ttl then
        redis.call('PEXPIRE', key, ttl)
    end
end

-- Writes a session and its seat. Key lifetimes run to the session's
-- absolute expiry plus the linger time, not to its idle expiry: sliding the
-- idle timer (`slide`, by the lease cache's touches) then never has to
-- extend a key's lifetime. Keys of a session that idles out are deleted by
-- the purge/sweeper; the lifetimes only bound what is left if no script
-- ever runs again.
local function persist(tag, s, now, linger)
    local ttl = tonumber(s[11]) - now + linger
    local skey = tag .. ':s:' .. s[2]
    redis.call('HSET', skey, 'id', s[1], 'identity', s[2], 'bucket', s[3], 'issuer', s[4],
        'subject', s[5], 'client', s[6], 'subject_key', s[7], 'created', s[8],
        'last_seen', s[9], 'idle_exp', s[10], 'abs_exp', s[11])
    redis.call('PEXPIRE', skey, ttl)
    redis.call('SET', tag .. ':i:' .. s[1], s[2], 'PX', ttl)
    local bkey = tag .. ':b:' .. s[3]
    redis.call('ZADD', bkey, expires(s), s[2])
    extend(bkey, ttl)
    local ukey = tag .. ':u:' .. s[7]
    redis.call('ZADD', ukey, tonumber(s[9]), s[2])
    extend(ukey, ttl)
end

-- Records a new last use (s[9]) and idle expiry (s[10]) of a session that
-- `persist` wrote: three writes, no lifetime to extend.
local function slide(tag, s)
    redis.call('HSET', tag .. ':s:' .. s[2], 'last_seen', s[9], 'idle_exp', s[10])
    redis.call('ZADD', tag .. ':b:' .. s[3], expires(s), s[2])
    redis.call('ZADD', tag .. ':u:' .. s[7], tonumber(s[9]), s[2])
end

local function remove(tag, s)
    redis.call('DEL', tag .. ':s:' .. s[2], tag .. ':i:' .. s[1])
    redis.call('ZREM', tag .. ':b:' .. s[3], s[2])
    redis.call('ZREM', tag .. ':u:' .. s[7], s[2])
end

-- Tells every instance to drop its cached lease of a closed session
-- (`<pool> <identity>` on `<prefix>:revocations`).
local function revoke(tag, s)
    local prefix, pool = string.match(tag, '^{(.*):([^:]*)}$')
    redis.call('PUBLISH', prefix .. ':revocations', pool .. ' ' .. s[2])
end

local function expiry_reason(s)
    if tonumber(s[11]) <= tonumber(s[10]) then
        return 'absolute'
    end
    return 'idle'
end

-- Closes every session of the pool that has expired by `now` and appends
-- it, with its reason as a 12th field, to `out`. Bounded per call so one
-- script never blocks Redis for long; the rest goes on the next call.
local function purge(tag, buckets, now, out)
    for b = 0, buckets - 1 do
        local key = tag .. ':b:' .. b
        local members = redis.call('ZRANGEBYSCORE', key, '-inf', now, 'LIMIT', 0, 500)
        for _, m in ipairs(members) do
            local s = load(tag, m)
            if s and expires(s) <= now then
                remove(tag, s)
                s[12] = expiry_reason(s)
                table.insert(out, s)
            elseif not s then
                redis.call('ZREM', key, m)
            end
        end
    end
end
