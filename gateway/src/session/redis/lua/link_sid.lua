-- link_sid: link a session to an identity provider session (`sid`) for
-- back-channel logout, until a time.
--
-- KEYS[1]  {<prefix>}:sid:<sid key>   SET of session ids
-- ARGV     1 now ms (0 = Redis TIME)   2 session id   3 lapse ms
local now = now_ms(ARGV[1])
redis.call('SADD', KEYS[1], ARGV[2])
extend(KEYS[1], tonumber(ARGV[3]) - now)
return 1
