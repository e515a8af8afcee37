-- generation: the store's generation, a random id written once; a Redis that
-- lost its data (FLUSHALL, a restart without persistence) has none, gets a
-- new one, and every instance that sees the change ends its lease epoch.
--
-- KEYS[1]  {<prefix>}:generation  STRING
-- ARGV     1 the id to write when there is none
-- Returns  the generation in force.
local generation = redis.call('GET', KEYS[1])
if not generation then
    redis.call('SET', KEYS[1], ARGV[1])
    generation = ARGV[1]
end
return generation
