--[[
  Stores an answer in the cache and keeps the cache bounded: the entry expires after its TTL,
  and the oldest entries beyond max_entries are evicted. Indexes by tenant and by route allow
  purges.

  KEYS[1]  entry (string)
  KEYS[2]  index of every entry (zset: entry hash by store time)
  KEYS[3]  index of the tenant's entries (zset)
  KEYS[4]  index of the route's entries (zset)
  KEYS[5]  stats hash (fleet-wide counters)
  KEYS[6]  flight (string: the leading job's id)
  KEYS[7]  the flight's followers (list)
  ARGV[1]  value (JSON)
  ARGV[2]  TTL in ms
  ARGV[3]  entry hash (the member of the indexes)
  ARGV[4]  max entries
  ARGV[5]  entry key prefix (the evicted hashes' keys are <prefix><hash>)
  ARGV[6]  now (ms)
  ARGV[7]  the leading job's id when the storing job leads the key's flight ("" otherwise): the
           claim ends in the same step and the followers are returned, to be woken

  Returns { { route of each evicted entry }, follower, ... }.
]]
local ttl = tonumber(ARGV[2])
local max = tonumber(ARGV[4])
local now = tonumber(ARGV[6])
redis.call("SET", KEYS[1], ARGV[1], "PX", ttl)
for i = 2, 4 do
  redis.call("ZADD", KEYS[i], now, ARGV[3])
end
-- Entries that expired on their own leave the main index here, oldest first.
local evicted = {}
local over = redis.call("ZCARD", KEYS[2]) - max
if over > 0 then
  local gone = redis.call("ZPOPMIN", KEYS[2], over)
  for i = 1, #gone, 2 do
    local key = ARGV[5] .. gone[i]
    local value = redis.call("GET", key)
    if value then
      redis.call("DEL", key)
      -- The evicted entry's route, for the operators' evictions by route.
      evicted[#evicted + 1] = string.match(value, '"route":"([^"]*)"') or ""
    end
  end
end
-- The tenant's and route's indexes are views for purges, expiring. Every member they get, the
-- main index gets too, and the main index only loses members once it is over max: until then
-- neither can be over max, so they are trimmed only from then on.
for i = 3, 4 do
  if over > 0 then
    local extra = redis.call("ZCARD", KEYS[i]) - max
    if extra > 0 then
      redis.call("ZREMRANGEBYRANK", KEYS[i], 0, extra - 1)
    end
  end
  redis.call("PEXPIRE", KEYS[i], ttl)
end
redis.call("HINCRBY", KEYS[5], "stores", 1)
if #evicted > 0 then
  redis.call("HINCRBY", KEYS[5], "evictions", #evicted)
end
local out = { evicted }
if ARGV[7] ~= "" then
  if redis.call("GET", KEYS[6]) == ARGV[7] then
    redis.call("DEL", KEYS[6])
  end
  for _, f in ipairs(redis.call("LRANGE", KEYS[7], 0, -1)) do
    out[#out + 1] = f
  end
  redis.call("DEL", KEYS[7])
end
return out
