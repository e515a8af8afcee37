-- close_subject: close the open sessions of a subject in this pool, one page
-- of the pool's sessions per call. Pools keep no per-subject index unless
-- they cap sessions per subject, so this walks the pool's session hash with
-- HSCAN: rare calls (back-channel logouts without `sid`, the admin API) pay
-- for the memory every session saves. The layout 1 subject set is drained
-- on the first page.
--
-- KEYS[1]  T:s   KEYS[2]  T:u:<subject key hex> (layout 1)
-- ARGV     1 now ms (0 = Redis TIME)   2 tag T   3 reason   4 subject slot
--          5 HSCAN cursor ('0' to start)   6 idle ms   7 HISTORY   8 HOLD (see common.lua)
-- Returns  { next cursor ('0' when done), closed sessions each with its
--          reason as 12th field }.
local now, tag, reason, slot, idle = now_ms(ARGV[1]), ARGV[2], ARGV[3], ARGV[4], tonumber(ARGV[6])
local h, hold = history_of(ARGV[7]), holds_of(ARGV[8])
local out = {}
local function close(s)
    s[12] = reason
    close_session(tag, h, hold, s, now, reason, now)
    revoke(tag, s)
    table.insert(out, s)
end
if ARGV[5] == '0' then
    for _, hex in ipairs(redis.call('ZRANGE', KEYS[2], 0, -1)) do
        local s = alive(legacy_load(tag, hex), now)
        if s then
            close(s)
        end
    end
end
local page = redis.call('HSCAN', KEYS[1], ARGV[5], 'COUNT', 500)
local entries = page[2]
for i = 1, #entries - 1, 2 do
    local v = cmsgpack.unpack(entries[i + 1])
    if v[7] == slot then
        local s = alive(seated(tag, entries[i], v, idle), now)
        if s then
            close(s)
        end
    end
end
return {page[1], out}
