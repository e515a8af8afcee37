-- mark_revoked: write a revocation's marker into one pool's slot, where the
-- admit script checks it, until the revocation lapses.
--
-- KEYS[1]  T:rt:<token key> (a token, or `sid:<sid key>`): value = lapse ms
--          or T:rs:<subject key>: value = `<not-before ms>:<lapse ms>`
-- ARGV     1 now ms (0 = Redis TIME)   2 lapse ms
--          3 not-before ms of a subject revocation ('' for a token)
-- Two revocations of one subject keep the later not-before and the later
-- lapse: stricter than either, never weaker.
local now = now_ms(ARGV[1])
local lapse = tonumber(ARGV[2])
if lapse <= now then
    return 0
end
local value
local held = redis.call('GET', KEYS[1])
if ARGV[3] == '' then
    if held and tonumber(held) > lapse then
        lapse = tonumber(held)
    end
    value = tostring(lapse)
else
    local not_before = tonumber(ARGV[3])
    if held then
        local held_nb, held_lapse = string.match(held, '^(%d+):(%d+)$')
        if held_nb and tonumber(held_nb) > not_before then
            not_before = tonumber(held_nb)
        end
        if held_lapse and tonumber(held_lapse) > lapse then
            lapse = tonumber(held_lapse)
        end
    end
    value = string.format('%d:%d', not_before, lapse)
end
redis.call('SET', KEYS[1], value, 'PX', math.floor(lapse - now))
return 1
