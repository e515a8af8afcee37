-- audit: append audit events to the capped stream, many in one call.
--
-- KEYS[1]  {<prefix>}:audit
-- ARGV     1 approximate cap of the stream (XADD ... MAXLEN ~)
--          2.. per event: its field count k, then k field/value pairs
-- Returns  how many events were appended
local cap = ARGV[1]
local i, added = 2, 0
while i <= #ARGV do
    local k = tonumber(ARGV[i])
    redis.call('XADD', KEYS[1], 'MAXLEN', '~', cap, '*', unpack(ARGV, i + 1, i + 2 * k))
    i = i + 1 + 2 * k
    added = added + 1
end
return added
