--[[
  Writes a new delivery record and indexes it, unless it exists already (a fan-out repeated
  after a crash must not reset a delivery that is under way or done).

  KEYS[1]  delivery record hash
  KEYS[2]  the endpoint's (or tenant's per-job URL) delivery index, a sorted set by time
  KEYS[3]  the job's set of delivery ids
  ARGV[1]  TTL in ms for all three
  ARGV[2]  now (ms), the index score
  ARGV[3]  delivery id
  ARGV[4]  how many deliveries the index keeps (the newest)
  ARGV[5..] field, value pairs of the record

  Returns 1 when written, 0 when the record existed.
]]
if redis.call("EXISTS", KEYS[1]) == 1 then
  return 0
end
local fields = {}
for i = 5, #ARGV do
  fields[#fields + 1] = ARGV[i]
end
redis.call("HSET", KEYS[1], unpack(fields))
redis.call("PEXPIRE", KEYS[1], ARGV[1])
redis.call("ZADD", KEYS[2], ARGV[2], ARGV[3])
redis.call("ZREMRANGEBYRANK", KEYS[2], 0, -tonumber(ARGV[4]) - 1)
redis.call("PEXPIRE", KEYS[2], ARGV[1])
redis.call("SADD", KEYS[3], ARGV[3])
redis.call("PEXPIRE", KEYS[3], ARGV[1])
return 1
