-- find: the identity's open session, without sliding it.
--
-- KEYS[1]  T:s:<identity>
-- ARGV     1 now ms (0 = Redis TIME)   2 tag T   3 identity
-- Returns  the session or nil.
return load_alive(ARGV[2], ARGV[3], now_ms(ARGV[1]))
