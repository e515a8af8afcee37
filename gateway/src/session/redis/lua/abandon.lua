-- abandon: the caller of an admission was told 503 (its call timed out), yet
-- Redis may run or have run the admission. Undo a session it opened that
-- nobody has used since (its seat still has the score it was opened with),
-- and mark the proposed id so an admission that runs later cannot open a
-- session under it. A session reused since (the client called again and got
-- it) is kept.
--
-- KEYS[1]  T:s   KEYS[2]  T:ab:<proposed session id>
-- ARGV     1 now ms (0 = Redis TIME)   2 tag T   3 proposed session id
--          4 how long the mark lives, ms   5 idle ms   6 HISTORY (see common.lua)
-- Returns  the closed session with reason 'abandoned' as 12th field, or nil.
local now = now_ms(ARGV[1])
local idle = tonumber(ARGV[5])
local s = load_id(ARGV[2], ARGV[3], idle)
if s then
    local opened_with = math.min(tonumber(s[8]) + idle, tonumber(s[11]))
    if alive(s, now) and expires(s) <= opened_with then
        remove(ARGV[2], s)
        revoke(ARGV[2], s)
        s[12] = 'abandoned'
        history_closed(ARGV[2], history_of(ARGV[6]), s, now, 'abandoned', now)
        return s
    end
    return nil
end
redis.call('SET', KEYS[2], '1', 'PX', tonumber(ARGV[4]))
return nil
