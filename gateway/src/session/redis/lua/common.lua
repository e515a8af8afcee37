-- Shared helpers, prepended to every script of the Redis store.
--
-- Data model of one pool (layout 2), all keys under one hash tag
-- T = "{<prefix>:<pool>}" so a pool lives in one Cluster slot:
--   T:s                HASH  field = the identity's slot: the first 22 characters
--                            of the identity key in base64url (132 bits);
--                            value = the session, packed with cmsgpack (PACKED)
--   T:b:<bucket>       ZSET  member = session id, score = expiry in ms (the seats)
--   T:u:<subject slot> SET   ids of a subject's sessions, only in pools that cap
--                            sessions per subject (the slot of the subject key)
--   T:sid:<sid key>    SET   ids of the sessions opened under an identity provider
--                            session (back-channel logout), until their absolute expiry
-- A session id of layout 2 is the identity's slot followed by 16 random
-- base64url characters, so an id names its own hash field. The seat's score
-- is the session's expiry, min(idle end, absolute end): sliding the idle timer
-- is one ZADD, and the packed value is written once, at the admission. The
-- idle end is the score unless the absolute end comes first, and the last use
-- is the idle end minus the pool's idle timeout.
--
-- Layout 1 (up to 0.x) wrote a HASH of 11 fields per session (T:s:<identity
-- hex>), an id key (T:i:<id>), identity hex members in the same seat ZSETs
-- and a ZSET per subject (T:u:<subject hex>). Sessions written so are still
-- reused, slid, listed, closed and purged in place until they end (the
-- `legacy_*` helpers), so a rolling upgrade keeps every open session and
-- its seat; nothing writes layout 1 any more. Layout 1 members and ids are
-- told apart by length: 64 hex characters and 32 hex characters.
--
-- Every key carries an expiry (its sessions' absolute expiry plus a linger
-- time), so nothing outlives the sessions it describes by more than that
-- even if no script runs again.
--
-- Scripts pass sessions to the gateway as 11 fields (WIRE), identity as its
-- text in the store (base64url, or hex for layout 1):
--   id, identity, bucket, issuer, subject, client, subject slot, created,
--   last seen, idle end, absolute end
-- and a 12th field with the close reason when a session closed.
--
-- PACKED = cmsgpack array {id, identity tail (characters 23..43), bucket,
--          issuer, subject, client, subject slot, created ms, absolute end ms,
--          [last use ms, written only once the idle end passes the absolute
--          end, when the score can no longer carry it]}

local LEGACY_FIELDS = {'id', 'identity', 'bucket', 'issuer', 'subject', 'client',
                       'subject_key', 'created', 'last_seen', 'idle_exp', 'abs_exp'}
local SLOT = 22

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

local function is_legacy(s)
    return #s[2] == 64
end

-- Key lifetimes are relative (PEXPIRE, not PEXPIREAT): the script's `now`
-- may be a test's explicit time, while Redis expires keys by its own clock.
-- Sets a key's time to live to `ttl` ms unless it already lives longer.
local function extend(key, ttl)
    if redis.call('PTTL', key) < ttl then
        redis.call('PEXPIRE', key, ttl)
    end
end

-- Layout 2 -----------------------------------------------------------------

-- The session of an unpacked value `v` whose seat has score `score`, in WIRE
-- form. The score is the idle end unless the absolute end came first; then
-- the value itself keeps the last use (PACKED's 10th field, see `slide`).
local function unpacked(slot, v, score, idle)
    local absolute = v[9]
    local idle_end, last_seen = score, score - idle
    if score >= absolute then
        last_seen = v[10] or (absolute - idle)
        idle_end = last_seen + idle
    end
    last_seen = math.max(v[8], last_seen)
    return {v[1], slot .. v[2], tostring(v[3]), v[4], v[5], v[6], v[7], tostring(v[8]),
            tostring(last_seen), tostring(idle_end), tostring(absolute)}
end

-- The session of slot `slot` whose packed value, already read, unpacks to
-- `v`; nil when its seat is gone (a value without a seat is no session).
local function seated(tag, slot, v, idle)
    local score = redis.call('ZSCORE', tag .. ':b:' .. v[3], v[1])
    if not score then
        return nil
    end
    return unpacked(slot, v, tonumber(score), idle)
end

-- The session in slot `slot` (open or expired but not yet purged), or nil.
local function load_slot(tag, slot, idle)
    local raw = redis.call('HGET', tag .. ':s', slot)
    if not raw then
        return nil
    end
    return seated(tag, slot, cmsgpack.unpack(raw), idle)
end

-- The session with layout 2 id `id`, or nil.
local function load_id(tag, id, idle)
    local s = load_slot(tag, string.sub(id, 1, SLOT), idle)
    if s and s[1] == id then
        return s
    end
    return nil
end

-- Layout 1 -----------------------------------------------------------------

local function legacy_load(tag, identity)
    local s = redis.call('HMGET', tag .. ':s:' .. identity, unpack(LEGACY_FIELDS))
    if not s[1] then
        return nil
    end
    return s
end

local function legacy_load_id(tag, id)
    local identity = redis.call('GET', tag .. ':i:' .. id)
    if not identity then
        return nil
    end
    local s = legacy_load(tag, identity)
    if s and s[1] == id then
        return s
    end
    return nil
end

-- Both ----------------------------------------------------------------------

local function alive(s, now)
    if s and expires(s) > now then
        return s
    end
    return nil
end

-- The open session of an identity (`key` = its base64url text, `hex` = its
-- layout 1 name), or nil.
-- Two identities sharing a slot (132 bits) would be a SHA-256 collision: the
-- script fails rather than mix them up.
local function find_alive(tag, key, hex, now, idle)
    local s = alive(load_slot(tag, string.sub(key, 1, SLOT), idle), now)
    if s and s[2] ~= key then
        error('two identities share the slot ' .. string.sub(key, 1, SLOT))
    end
    return s or alive(legacy_load(tag, hex), now)
end

-- The session (open or not yet purged) of an id of either layout, or nil.
local function load_any_id(tag, id, idle)
    if #id == 32 then
        return legacy_load_id(tag, id)
    end
    return load_id(tag, id, idle)
end

-- Writes a new session (WIRE `s`) and its seat. Key lifetimes run to the
-- absolute end plus the linger time, so sliding never extends one. Keys of a
-- session that idles out are deleted by the purge/sweeper; the lifetimes only
-- bound what is left if no script ever runs again.
local function pack(s, last_seen)
    return cmsgpack.pack({s[1], string.sub(s[2], SLOT + 1), tonumber(s[3]), s[4], s[5], s[6], s[7],
        tonumber(s[8]), tonumber(s[11]), last_seen})
end

local function persist(tag, s, now, linger, capped)
    local ttl = tonumber(s[11]) - now + linger
    local skey = tag .. ':s'
    redis.call('HSET', skey, string.sub(s[2], 1, SLOT), pack(s, nil))
    extend(skey, ttl)
    local bkey = tag .. ':b:' .. s[3]
    redis.call('ZADD', bkey, expires(s), s[1])
    extend(bkey, ttl)
    if capped then
        local ukey = tag .. ':u:' .. s[7]
        redis.call('SADD', ukey, s[1])
        extend(ukey, ttl)
    end
end

-- Slides the idle timer of an open session to now + idle (bounded by its
-- absolute end) and updates `s` to match: one ZADD in layout 2, plus one HSET
-- in the session's last idle period, where the score stops at the absolute
-- end and the value keeps the last use instead.
local function slide(tag, s, now, idle)
    s[9] = tostring(now)
    s[10] = tostring(now + idle)
    if is_legacy(s) then
        redis.call('HSET', tag .. ':s:' .. s[2], 'last_seen', s[9], 'idle_exp', s[10])
        redis.call('ZADD', tag .. ':b:' .. s[3], expires(s), s[2])
        redis.call('ZADD', tag .. ':u:' .. s[7], tonumber(s[9]), s[2])
    else
        redis.call('ZADD', tag .. ':b:' .. s[3], expires(s), s[1])
        if now + idle >= tonumber(s[11]) then
            redis.call('HSET', tag .. ':s', string.sub(s[2], 1, SLOT), pack(s, now))
        end
    end
end

local function remove(tag, s)
    if is_legacy(s) then
        redis.call('DEL', tag .. ':s:' .. s[2], tag .. ':i:' .. s[1])
        redis.call('ZREM', tag .. ':b:' .. s[3], s[2])
        redis.call('ZREM', tag .. ':u:' .. s[7], s[2])
    else
        redis.call('HDEL', tag .. ':s', string.sub(s[2], 1, SLOT))
        redis.call('ZREM', tag .. ':b:' .. s[3], s[1])
        redis.call('SREM', tag .. ':u:' .. s[7], s[1])
    end
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

-- Usage history ---------------------------------------------------------------
-- Written by every script that opens, closes or refuses, in the same atomic
-- step (the Rust side reads it back and rebuilds it, see `usage::rebuild`):
--   T:h:<m|h|d>:<interval> HASH  one minute, hour or day (interval = ms / length):
--                          w  sum over its seat changes of change x (interval
--                             end - time of the change), in ms (+1 open, -1 close)
--                          p  the most seats held right after an open in it
--                          o  sessions opened   c:<reason>  closed   r:<reason>  refused
--                          u  distinct subjects (days only)
--   T:h:M:<month>          HASH  u: distinct subjects of a month (year * 12 + month - 1, UTC)
--   T:h:ds:<day>, T:h:Ms:<month>  SET of subject slots, kept while a session
--                          open in the day or month can still close
--   T:h:began              STRING  when the pool's history began (ms)
--   T:h<b>:…               the same records (without subjects) of reserved bucket b,
--                          written for the sessions of that bucket only
-- Seats held at an interval's start are not written: the reader derives them
-- from the seats held now and the changes since. So a close found late (a
-- purge after the expiry) is written into the interval it happened in.
-- HISTORY, an ARGV of each such script: '<ms minutes are kept>,<hours>,<days>,
-- <the pool's absolute lifetime ms>' (0 = a step not kept); every key lives
-- until its interval's end plus the time its step is kept.

local STEPS = {{'m', 60000}, {'h', 3600000}, {'d', 86400000}}
local DAY = 86400000

local function history_of(arg)
    local h = {}
    for n in string.gmatch(arg, '%d+') do
        table.insert(h, tonumber(n))
    end
    return h
end

-- Days since 1970-01-01 of a date, and the month (year * 12 + month - 1) of a
-- day: Howard Hinnant's days_from_civil / civil_from_days, as in usage/calendar.rs.
local function days_from_civil(y, m, d)
    if m <= 2 then
        y = y - 1
    end
    local era = math.floor(y / 400)
    local yoe = y - era * 400
    local mp = m > 2 and m - 3 or m + 9
    local doy = math.floor((153 * mp + 2) / 5) + d - 1
    local doe = yoe * 365 + math.floor(yoe / 4) - math.floor(yoe / 100) + doy
    return era * 146097 + doe - 719468
end

local function month_of_day(days)
    local z = days + 719468
    local era = math.floor(z / 146097)
    local doe = z - era * 146097
    local yoe = math.floor((doe - math.floor(doe / 1460) + math.floor(doe / 36524)
        - math.floor(doe / 146096)) / 365)
    local doy = doe - (365 * yoe + math.floor(yoe / 4) - math.floor(yoe / 100))
    local mp = math.floor((5 * doy + 2) / 153)
    local m = mp < 10 and mp + 3 or mp - 9
    local y = yoe + era * 400
    if m <= 2 then
        y = y + 1
    end
    return y * 12 + m - 1
end

local function month_end_ms(month)
    local next = month + 1
    return days_from_civil(math.floor(next / 12), next % 12 + 1, 1) * DAY
end

-- `base` names whose history: T:h (the pool) or T:h<b> (its reserved bucket b).
local function began(base, h, now)
    local key = base .. ':began'
    redis.call('SET', key, now, 'NX')
    redis.call('PEXPIRE', key, math.max(h[1], h[2], h[3]) + DAY)
end

-- Counts `field` up in every kept interval of `base` holding `at`, then
-- calls write(key, interval end) for it.
local function each_interval(base, h, at, now, field, write)
    for i, step in ipairs(STEPS) do
        local keep = h[i]
        if keep and keep > 0 then
            local index = math.floor(at / step[2])
            local finish = (index + 1) * step[2]
            if finish + keep > now then
                local key = base .. ':' .. step[1] .. ':' .. index
                -- A record's first write is some count's first: it sets the lifetime.
                if redis.call('HINCRBY', key, field, 1) == 1 then
                    redis.call('PEXPIRE', key, finish + keep - now)
                    began(base, h, now)
                end
                if write then
                    write(key, finish)
                end
            end
        end
    end
end

-- Counts a subject slot for a day (and its month) once. The lifetimes are set
-- when a day's or month's first subject is counted (its count becomes 1).
local function count_subject(tag, h, day, slot, now)
    local keep = h[3]
    local finish = (day + 1) * DAY
    if not keep or keep == 0 or finish + keep <= now then
        return
    end
    local dkey = tag .. ':h:ds:' .. day
    if redis.call('SADD', dkey, slot) == 1 then
        local record = tag .. ':h:d:' .. day
        if redis.call('HINCRBY', record, 'u', 1) == 1 then
            redis.call('PEXPIRE', dkey, finish + h[4] + 60000 - now)
            redis.call('PEXPIRE', record, finish + keep - now)
        end
        local month = month_of_day(day)
        local mkey = tag .. ':h:Ms:' .. month
        if redis.call('SADD', mkey, slot) == 1 then
            local mrecord = tag .. ':h:M:' .. month
            if redis.call('HINCRBY', mrecord, 'u', 1) == 1 then
                local month_end = month_end_ms(month)
                redis.call('PEXPIRE', mkey, month_end + h[4] + 60000 - now)
                redis.call('PEXPIRE', mrecord, month_end + keep - now)
            end
        end
    end
end

-- A session of subject slot `slot` opened at `now` in bucket `bucket`,
-- after which `held` seats were held in the pool and `bucket_held` in the
-- bucket. An interval's peak is at least its shorter intervals' (an hour's
-- at least its minutes'), so the longer ones are only compared when a
-- shorter one's peak rose.
local function history_opened(tag, h, now, held, slot, bucket, bucket_held)
    local function open(base, level)
        local rising = true
        each_interval(base, h, now, now, 'o', function(key, finish)
            redis.call('HINCRBY', key, 'w', finish - now)
            if rising then
                local peak = redis.call('HGET', key, 'p')
                rising = not peak or tonumber(peak) < level
                if rising then
                    redis.call('HSET', key, 'p', level)
                end
            end
        end)
    end
    open(tag .. ':h', held)
    if bucket > 0 then
        open(tag .. ':h' .. bucket, bucket_held)
    end
    count_subject(tag, h, math.floor(now / DAY), slot, now)
end

-- Session `s` (WIRE) closed at `at` for `reason`; its subject counts for
-- every later day it was open on too.
local function history_closed(tag, h, s, at, reason, now)
    local function close(base)
        each_interval(base, h, at, now, 'c:' .. reason, function(key, finish)
            redis.call('HINCRBY', key, 'w', at - finish)
        end)
    end
    close(tag .. ':h')
    local bucket = tonumber(s[3])
    if bucket and bucket > 0 then
        close(tag .. ':h' .. bucket)
    end
    if #s[7] == SLOT then
        for day = math.floor(tonumber(s[8]) / DAY) + 1, math.floor(at / DAY) do
            count_subject(tag, h, day, s[7], now)
        end
    end
end

-- A refusal of the pool (refusals have no bucket: none was taken).
local function history_refused(tag, h, now, reason)
    each_interval(tag .. ':h', h, now, now, 'r:' .. reason, nil)
end

-- Held seats (`linger`, `min_hold`) -----------------------------------------
--   T:l   HASH  field = the identity slot of a closed session whose seat is
--               still held for its identity; value = cmsgpack {until ms, the
--               session's PACKED value, close reason}
-- The seat stays in T:b:<bucket> as the member 'h:' .. slot, scored by its end,
-- so every seat count includes it. HOLD, an ARGV of the scripts that close:
-- '<linger ms>,<min_hold ms>' ('0,0': seats free at the close).

local KEEPS_SEAT = {logout = true, backchannel = true, idle = true, absolute = true}

local function holds_of(arg)
    local linger, min_hold = string.match(arg or '', '^(%d+),(%d+)$')
    return {tonumber(linger) or 0, tonumber(min_hold) or 0}
end

-- Until when the seat of session `s` (WIRE), closed at `at` for `reason`,
-- stays with its identity, or nil. Layout 1 sessions free their seats.
local function hold_until(hold, s, at, reason)
    if not KEEPS_SEAT[reason] or (hold[1] == 0 and hold[2] == 0) or is_legacy(s) then
        return nil
    end
    local free_at = math.max(at + hold[1], tonumber(s[8]) + hold[2])
    if free_at > at then
        return free_at
    end
    return nil
end

-- Frees the held seat `member` of seat set `bkey`, writing its close into
-- the history at `at`.
local function end_hold(tag, h, bkey, member, at, now)
    local slot = string.sub(member, 3)
    local lkey = tag .. ':l'
    local raw = redis.call('HGET', lkey, slot)
    redis.call('ZREM', bkey, member)
    redis.call('HDEL', lkey, slot)
    if raw then
        local held = cmsgpack.unpack(raw)
        local s = unpacked(slot, cmsgpack.unpack(held[2]), held[1], 0)
        history_closed(tag, h, s, at, held[3], now)
    end
end

-- Closes session `s` (WIRE) at `at` for `reason`: into a held seat while the
-- pool keeps it (the history goes on counting the seat), else the seat frees,
-- at the hold's end if that has passed already.
local function close_session(tag, h, hold, s, at, reason, now)
    local free_at = hold_until(hold, s, at, reason)
    if free_at and free_at > now then
        -- The session goes as any other; its value and its seat stay as the hold.
        local slot = string.sub(s[2], 1, SLOT)
        local bkey, lkey = tag .. ':b:' .. s[3], tag .. ':l'
        local raw = redis.call('HGET', tag .. ':s', slot)
        remove(tag, s)
        redis.call('ZADD', bkey, free_at, 'h:' .. slot)
        redis.call('HSET', lkey, slot, cmsgpack.pack({free_at, raw, reason}))
        extend(bkey, free_at - now + 600000)
        extend(lkey, free_at - now + 600000)
        return
    end
    remove(tag, s)
    history_closed(tag, h, s, free_at or at, reason, now)
end

-- The session of a seat member: a layout 2 session id, or a layout 1
-- identity (64 hex characters).
local function load_member(tag, member, idle)
    if string.sub(member, 1, 2) == 'h:' then
        return nil
    end
    if #member == 64 then
        return legacy_load(tag, member)
    end
    return load_id(tag, member, idle)
end

-- Closes every session of the pool that has expired by `now` and appends
-- it, with its reason as a 12th field, to `out`; each close goes into the
-- usage history `h` at its expiry. Bounded per call so one script never
-- blocks Redis for long; the rest goes on the next call.
local function purge(tag, buckets, now, idle, out, h, hold)
    for b = 0, buckets - 1 do
        local key = tag .. ':b:' .. b
        local members = redis.call('ZRANGEBYSCORE', key, '-inf', now, 'LIMIT', 0, 500)
        for _, m in ipairs(members) do
            if string.sub(m, 1, 2) == 'h:' then
                end_hold(tag, h, key, m, tonumber(redis.call('ZSCORE', key, m)) or now, now)
            else
                local s = load_member(tag, m, idle)
                if s and expires(s) <= now then
                    s[12] = expiry_reason(s)
                    close_session(tag, h, hold, s, expires(s), s[12], now)
                    table.insert(out, s)
                elseif not s then
                    redis.call('ZREM', key, m)
                end
            end
        end
    end
end

-- Seat queue (`[[pools]] queue`) ---------------------------------------------
--   T:q    ZSET    ticket id -> its number: the line, first come first
--                  served (the admission weighs a ticket by its rank here)
--   T:qd   ZSET    ticket id -> when it lapses (ms): handed out + max_wait
--   T:qn   STRING  the last number handed out
-- A caller whose instance died leaves a ticket behind: it lapses at max_wait
-- and is dropped by the next admission of the pool.
-- QUEUE, an ARGV of the admission: '<max_wait ms>,<max_length>' ('' = none).

local function queue_of(arg)
    local wait, length = string.match(arg or '', '^(%d+),(%d+)$')
    if not wait then
        return nil
    end
    return {tonumber(wait), tonumber(length)}
end

-- Drops the tickets that lapsed by `now`, each written into the history as
-- a `queue_timeout` refusal when it lapsed (bounded, like the purge).
local function purge_queue(tag, h, now)
    local lapsed = redis.call('ZRANGEBYSCORE', tag .. ':qd', '-inf', now, 'WITHSCORES', 'LIMIT', 0, 500)
    for i = 1, #lapsed, 2 do
        redis.call('ZREM', tag .. ':q', lapsed[i])
        redis.call('ZREM', tag .. ':qd', lapsed[i])
        each_interval(tag .. ':h', h, tonumber(lapsed[i + 1]), now, 'r:queue_timeout', nil)
    end
end

-- Tells every instance that a seat of the pool may be free for a waiting
-- caller (`seat|<pool>` on `<prefix>:revocations`).
local function wake(tag)
    local prefix, pool = string.match(tag, '^{(.*):([^:]*)}$')
    redis.call('PUBLISH', prefix .. ':revocations', 'seat|' .. pool)
end

-- Free seats anyone may take, from seats held per bucket `used` and their
-- capacities `caps`: the shared ones and the overdraft's (bucket `over`, 0 =
-- none).
local function common_free(used, caps, over)
    local free = caps[0] - used[0]
    if over > 0 then
        free = free + caps[over] - used[over]
    end
    return math.max(free, 0)
end
