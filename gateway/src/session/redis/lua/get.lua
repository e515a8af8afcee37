-- get: an open session by id (either layout).
--
-- KEYS[1]  T:s   KEYS[2]  T:i:<session id> (layout 1)
-- ARGV     1 now ms (0 = Redis TIME)   2 tag T   3 session id   4 idle ms
-- Returns  the session or nil.
return alive(load_any_id(ARGV[2], ARGV[3], tonumber(ARGV[4])), now_ms(ARGV[1]))
