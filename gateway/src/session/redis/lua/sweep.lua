-- sweep: close the pool's expired sessions (the periodic sweeper), so seat
-- counts and `closed (idle)` audit events are true without traffic.
--
-- KEYS[1]  T:b:0 (declares the pool's slot)
-- ARGV     1 now ms (0 = Redis TIME)   2 tag T   3 bucket count n   4 idle ms
--          5 HISTORY   6 HOLD (see common.lua)
-- Returns  the closed sessions, each with its reason as 12th field.
local out = {}
purge(ARGV[2], tonumber(ARGV[3]), now_ms(ARGV[1]), tonumber(ARGV[4]), out, history_of(ARGV[5]),
    holds_of(ARGV[6]))
return out
