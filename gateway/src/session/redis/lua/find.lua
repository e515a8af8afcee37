-- find: the identity's open session, without sliding it.
--
-- KEYS[1]  T:s
-- ARGV     1 now ms (0 = Redis TIME)   2 tag T   3 identity (base64url)
--          4 identity hex (layout 1)   5 idle ms
-- Returns  the session or nil.
return find_alive(ARGV[2], ARGV[3], ARGV[4], now_ms(ARGV[1]), tonumber(ARGV[5]))
