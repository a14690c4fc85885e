--[[
  Ends a single-flight: the leader gives up its claim and takes the list of jobs that waited for
  it, to wake them (they then find the stored answer, or one of them leads anew).

  KEYS[1]  flight (string: the leader's job id)
  KEYS[2]  followers (list)
  ARGV[1]  the leader's job id

  Returns the followers (empty when the claim was not this job's any more).
]]
if redis.call("GET", KEYS[1]) == ARGV[1] then
  redis.call("DEL", KEYS[1])
end
local followers = redis.call("LRANGE", KEYS[2], 0, -1)
redis.call("DEL", KEYS[2])
return followers
