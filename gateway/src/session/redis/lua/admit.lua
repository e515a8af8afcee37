-- admit: reuse-and-slide the identity's session, or open one if a seat (and
-- the subject's cap) allows, or refuse. Expired sessions of the pool are
-- closed first, and returned so they are audited exactly once.
--
-- KEYS[1]  T:s (declares the pool's slot)
-- KEYS[2]  T:rt:<token key>: the lapse ms of the token's revocation
-- KEYS[3]  T:rs:<subject key>: `<not-before ms>:<lapse ms>` of the subject's
-- KEYS[4]  T:sid:<sid key>, when the token names an identity provider session:
--          SET of the session ids opened or reused under it (back-channel
--          logout); a token of a new login may reuse an older session
-- KEYS[5]  T:rt:sid:<sid key>, with KEYS[4]: the lapse ms of the identity
--          provider session's revocation
-- ARGV     1 now ms (0 = Redis TIME)   2 tag T   3 identity (base64url)
--          4 new session id   5 issuer   6 subject   7 client   8 subject slot
--          9 idle ms   10 absolute ms   11 linger ms
--          12 reserved bucket (0 = none)   13 per-subject max (0 = none)
--          14 subject policy ('deny' | 'replace')
--          15 check revocations ('1' | '0')   16 token issued at ms (-1 = unknown)
--          17 identity hex, 18 subject key hex (the layout 1 names)
--          19 HISTORY (see common.lua)   20 the overdraft bucket (0 = none: the
--          sessions admitted beyond the limit; its capacity is the overdraft)
--          21 HOLD (see common.lua)
--          22 QUEUE (see common.lua)   23 the caller's ticket ('' = none: a
--          newcomer, behind every waiting caller)   24 the ticket to hand out
--          if the caller must wait
--          25 bucket count n   26 .. 25+n  capacity of bucket 0 .. n-1
-- Returns  { kind, session, replaced, in_use or count, retry ms, closed [, waiting] }:
--          in_use is the pool's seats held after a new session opened, and
--          before a 'full', 'queue_full' or 'queue_timeout' refusal
--          kind = 'reused' | 'opened' | 'full' | 'subject' | 'revoked' | 'abandoned'
--                 | 'queued' (session = {ticket, its number}, count = callers
--                 ahead) | 'queue_full' (waiting = callers waiting)
--                 | 'queue_timeout' (the caller's ticket lapsed)
--          retry ms is -1 when no seat the caller could use frees by time
--          The caller's ticket leaves the line with every answer but 'queued'.
--
-- The revocation markers (written into every pool's slot by mark_revoked)
-- are checked first: an instance that missed a revocation message must
-- still not reuse or open a session for a revoked token or identity.
local now = now_ms(ARGV[1])
local tag, identity = ARGV[2], ARGV[3]
local idle, absolute, linger = tonumber(ARGV[9]), tonumber(ARGV[10]), tonumber(ARGV[11])
local reserved, subject_max, policy = tonumber(ARGV[12]), tonumber(ARGV[13]), ARGV[14]
local h = history_of(ARGV[19])
local over = tonumber(ARGV[20])
local hold = holds_of(ARGV[21])
local queue = queue_of(ARGV[22])
local ticket = ARGV[23] ~= '' and ARGV[23] or nil
local n = tonumber(ARGV[25])
local caps = {}
for b = 0, n - 1 do
    caps[b] = tonumber(ARGV[26 + b])
end

-- Every answer but 'queued' takes the caller's ticket out of the line.
local function done(reply)
    if ticket then
        redis.call('ZREM', tag .. ':q', ticket)
        redis.call('ZREM', tag .. ':qd', ticket)
    end
    return reply
end

if ARGV[15] == '1' then
    local issued = tonumber(ARGV[16])
    local function in_force(key)
        local lapse = key and redis.call('GET', key)
        return lapse and tonumber(lapse) > now
    end
    local subject = redis.call('GET', KEYS[3])
    local subject_revoked = false
    if subject then
        local not_before, lapse = string.match(subject, '^(%d+):(%d+)$')
        subject_revoked = lapse and tonumber(lapse) > now
            and (issued < 0 or issued < tonumber(not_before))
    end
    if in_force(KEYS[2]) or in_force(KEYS[5]) or subject_revoked then
        history_refused(tag, h, now, 'revoked')
        return done({'revoked', {}, {}, 0, 0, {}})
    end
end

local closed = {}
purge(tag, n, now, idle, closed, h, hold)
if queue or ticket then
    purge_queue(tag, h, now)
end

local function link(session)
    if KEYS[4] then
        redis.call('SADD', KEYS[4], session[1])
        extend(KEYS[4], tonumber(session[11]) - now)
    end
end

-- The subject's live sessions of both layouts, least recently used first;
-- index entries whose session is gone are dropped on the way.
local function subject_members()
    local members = {}
    local ukey = tag .. ':u:' .. ARGV[8]
    for _, id in ipairs(redis.call('SMEMBERS', ukey)) do
        local m = load_id(tag, id, idle)
        if alive(m, now) then
            table.insert(members, m)
        elseif not m then
            redis.call('SREM', ukey, id)
        end
    end
    local legacy = tag .. ':u:' .. ARGV[18]
    for _, hex in ipairs(redis.call('ZRANGE', legacy, 0, -1)) do
        local m = legacy_load(tag, hex)
        if alive(m, now) then
            table.insert(members, m)
        elseif not m then
            redis.call('ZREM', legacy, hex)
        end
    end
    table.sort(members, function(a, b)
        if a[9] ~= b[9] then
            return tonumber(a[9]) < tonumber(b[9])
        end
        return a[1] < b[1]
    end)
    return members
end

local s = find_alive(tag, identity, ARGV[17], now, idle)
-- The identity's held seat: its session comes back under its id, unless its
-- absolute lifetime is over (then the seat frees for the admission below).
if not s and (hold[1] > 0 or hold[2] > 0) then
    local slot = string.sub(identity, 1, SLOT)
    local raw = redis.call('HGET', tag .. ':l', slot)
    if raw then
        local held = cmsgpack.unpack(raw)
        local v = cmsgpack.unpack(held[2])
        local bkey = tag .. ':b:' .. v[3]
        -- A subject at its cap gets no second session this way; its seat
        -- frees and the admission below applies the cap.
        local below_cap = subject_max == 0 or #subject_members() < subject_max
        if held[1] > now and v[9] > now and below_cap then
            redis.call('HDEL', tag .. ':l', slot)
            redis.call('ZREM', bkey, 'h:' .. slot)
            redis.call('HSET', tag .. ':s', slot, held[2])
            redis.call('ZADD', bkey, math.min(now + idle, v[9]), v[1])
            if subject_max > 0 then
                redis.call('SADD', tag .. ':u:' .. v[7], v[1])
            end
            s = load_slot(tag, slot, idle)
        else
            end_hold(tag, h, bkey, 'h:' .. slot, math.min(held[1], now), now)
        end
    end
end
if s then
    slide(tag, s, now, idle)
    link(s)
    return done({'reused', s, {}, 0, 0, closed})
end

-- An admission whose caller already gave up (abandon ran first) opens
-- nothing under the id it proposed.
if redis.call('EXISTS', tag .. ':ab:' .. ARGV[4]) == 1 then
    return done({'abandoned', {}, {}, 0, 0, closed})
end

-- Seats held now: only sessions alive at `now` count, so expired ones the
-- bounded purge has not reached yet never make a pool look full.
local used = {}
for b = 0, n - 1 do
    used[b] = redis.call('ZCOUNT', tag .. ':b:' .. b, '(' .. now, '+inf')
end

-- Callers waiting ahead of this one: its rank in the line, or (a newcomer)
-- the whole line. Shared and overdraft seats go to them first.
local ahead, lapsed = 0, false
if ticket then
    local rank = redis.call('ZRANK', tag .. ':q', ticket)
    if rank then
        ahead = rank
    else
        lapsed = true
    end
elseif queue then
    ahead = redis.call('ZCARD', tag .. ':q')
end

local function seats_in_use()
    local in_use = 0
    for b = 0, n - 1 do
        in_use = in_use + used[b]
    end
    return in_use
end
-- Time until the earliest seat the caller could use frees by time, or -1.
local function retry_ms()
    local earliest = nil
    local usable = {0}
    if reserved >= 1 then
        table.insert(usable, reserved)
    end
    if over > 0 then
        table.insert(usable, over)
    end
    for _, b in ipairs(usable) do
        local first = redis.call('ZRANGEBYSCORE', tag .. ':b:' .. b, '(' .. now, '+inf', 'WITHSCORES', 'LIMIT', 0, 1)
        if first[2] and (not earliest or tonumber(first[2]) < earliest) then
            earliest = tonumber(first[2])
        end
    end
    return earliest and (earliest - now) or -1
end

-- A ticket that lapsed (written into the history when it was dropped) gets
-- no seat, even a free one: its caller has been told it waited too long.
if lapsed then
    return {'queue_timeout', {}, {}, seats_in_use(), retry_ms(), closed}
end

local function choose()
    if reserved >= 1 and used[reserved] and used[reserved] < caps[reserved] then
        return reserved
    end
    if common_free(used, caps, over) <= ahead then
        return nil
    end
    if used[0] < caps[0] then
        return 0
    end
    -- Beyond the limit, up to the overdraft.
    if over > 0 and used[over] < caps[over] then
        return over
    end
    return nil
end

local replaced = {}
if subject_max > 0 then
    local members = subject_members()
    if #members >= subject_max then
        if policy ~= 'replace' then
            local earliest = nil
            for _, m in ipairs(members) do
                if not earliest or expires(m) < earliest then
                    earliest = expires(m)
                end
            end
            history_refused(tag, h, now, 'subject_limit')
            return done({'subject', {}, {}, #members, earliest and (earliest - now) or -1, closed})
        end
        -- The least recently used one makes room.
        local victim = members[1]
        if victim then
            local vb = tonumber(victim[3])
            -- A bucket no longer configured (a reserved group removed) holds
            -- no counted seat.
            if used[vb] then
                used[vb] = used[vb] - 1
            end
            if choose() ~= nil then
                remove(tag, victim)
                revoke(tag, victim)
                victim[12] = 'replaced'
                history_closed(tag, h, victim, now, 'replaced', now)
                replaced = victim
            elseif used[vb] then
                used[vb] = used[vb] + 1
            end
        end
    end
end

local bucket = choose()
if bucket == nil then
    if ticket then
        local number = redis.call('ZSCORE', tag .. ':q', ticket)
        return {'queued', {ticket, number}, {}, ahead, retry_ms(), closed}
    end
    if queue then
        if ahead < queue[2] then
            local number = redis.call('INCR', tag .. ':qn')
            redis.call('ZADD', tag .. ':q', number, ARGV[24])
            redis.call('ZADD', tag .. ':qd', now + queue[1], ARGV[24])
            extend(tag .. ':q', queue[1] + 60000)
            extend(tag .. ':qd', queue[1] + 60000)
            return {'queued', {ARGV[24], tostring(number)}, {}, ahead, retry_ms(), closed}
        end
        history_refused(tag, h, now, 'queue_full')
        return {'queue_full', {}, {}, seats_in_use(), retry_ms(), closed, ahead}
    end
    history_refused(tag, h, now, 'pool_full')
    return {'full', {}, {}, seats_in_use(), retry_ms(), closed}
end

s = {ARGV[4], identity, tostring(bucket), ARGV[5], ARGV[6], ARGV[7], ARGV[8],
     tostring(now), tostring(now), tostring(now + idle), tostring(now + absolute)}
persist(tag, s, now, linger, subject_max > 0)
link(s)
local held = 1
for b = 0, n - 1 do
    held = held + used[b]
end
history_opened(tag, h, now, held, ARGV[8], bucket, used[bucket] + 1)
-- A waiter that got its seat: the next in line may find one free too.
if ticket then
    used[bucket] = used[bucket] + 1
    done(nil)
    if common_free(used, caps, over) > 0 and redis.call('EXISTS', tag .. ':q') == 1 then
        wake(tag)
    end
end
return {'opened', s, replaced, held, 0, closed}
