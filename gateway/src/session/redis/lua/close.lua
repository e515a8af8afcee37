-- close: close an open session by id (either layout) and free its seat.
--
-- KEYS[1]  T:s   KEYS[2]  T:i:<session id> (layout 1)
-- ARGV     1 now ms (0 = Redis TIME)   2 tag T   3 session id   4 reason
--          5 idle ms   6 HISTORY   7 HOLD (see common.lua)
-- Returns  the closed session with its reason as 12th field, or nil when it
--          was not open (an expired one is left for the sweeper to report).
local now = now_ms(ARGV[1])
local s = alive(load_any_id(ARGV[2], ARGV[3], tonumber(ARGV[5])), now)
if not s then
    return nil
end
s[12] = ARGV[4]
close_session(ARGV[2], history_of(ARGV[6]), holds_of(ARGV[7]), s, now, s[12], now)
revoke(ARGV[2], s)
return s
