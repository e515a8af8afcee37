-- abandon: the caller of an admission was told 503 (its call timed out), yet
-- Redis may run or have run the admission. Undo a session it opened that
-- nobody has used since (last seen = created), and mark the proposed id so
-- an admission that runs later cannot open a session under it. A session
-- reused since (the client called again and got it) is kept.
--
-- KEYS[1]  T:i:<proposed session id>   KEYS[2]  T:ab:<proposed session id>
-- ARGV     1 now ms (0 = Redis TIME)   2 tag T   3 proposed session id
--          4 how long the mark lives, ms
-- Returns  the closed session with reason 'abandoned' as 12th field, or nil.
local now = now_ms(ARGV[1])
local identity = redis.call('GET', KEYS[1])
if identity then
    local s = load_alive(ARGV[2], identity, now)
    if s and s[1] == ARGV[3] and s[8] == s[9] then
        remove(ARGV[2], s)
        revoke(ARGV[2], s)
        s[12] = 'abandoned'
        return s
    end
    return nil
end
redis.call('SET', KEYS[2], '1', 'PX', tonumber(ARGV[4]))
return nil
