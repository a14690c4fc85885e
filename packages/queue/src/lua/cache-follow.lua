--[[
  Registers a job that waits for the leader of a key's upstream call, unless the leader is
  already gone (then the caller wakes itself at once).

  KEYS[1]  flight (string: the leading job's id)
  KEYS[2]  followers (list)
  ARGV[1]  the follower's wake-up reference
  ARGV[2]  TTL of the list in ms

  Returns 1 when registered, 0 when nobody leads any more.
]]
if redis.call("EXISTS", KEYS[1]) == 0 then
  return 0
end
redis.call("RPUSH", KEYS[2], ARGV[1])
redis.call("PEXPIRE", KEYS[2], tonumber(ARGV[2]))
return 1
