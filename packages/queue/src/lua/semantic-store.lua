--[[
  Keeps a prompt's embedding in its scope (route, parameters and, with scope tenant, tenant) for
  semantic lookups, bounded per scope: the oldest prompts beyond the bound go first, and the
  scope expires with its newest entry.

  KEYS[1]  vectors of the scope (hash: entry hash -> "<guard>\n<base64 float32 vector>")
  KEYS[2]  the scope's order (zset: entry hash by store time)
  ARGV[1]  entry hash
  ARGV[2]  value
  ARGV[3]  TTL in ms
  ARGV[4]  most prompts per scope
  ARGV[5]  now (ms)

  Returns { evicted }.
]]
redis.call("HSET", KEYS[1], ARGV[1], ARGV[2])
redis.call("ZADD", KEYS[2], tonumber(ARGV[5]), ARGV[1])
local evicted = 0
local over = redis.call("ZCARD", KEYS[2]) - tonumber(ARGV[4])
if over > 0 then
  local gone = redis.call("ZPOPMIN", KEYS[2], over)
  for i = 1, #gone, 2 do
    evicted = evicted + redis.call("HDEL", KEYS[1], gone[i])
  end
end
redis.call("PEXPIRE", KEYS[1], tonumber(ARGV[3]))
redis.call("PEXPIRE", KEYS[2], tonumber(ARGV[3]))
return { evicted }
