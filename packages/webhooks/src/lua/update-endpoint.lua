--[[
  Changes an endpoint only while it exists, so a delivery finishing after the endpoint was
  deleted cannot leave a bare hash behind (it would have no TTL).

  KEYS[1]  endpoint hash
  ARGV[1]  "failing": note a failure (ARGV[2] = now in ms) and return since when it has failed
           "set": ARGV[2..] field, value pairs to set; a value of "" deletes the field

  Returns false when the endpoint does not exist; for "failing" the failing_since value, else 1.
]]
if redis.call("EXISTS", KEYS[1]) == 0 then
  return false
end
if ARGV[1] == "failing" then
  redis.call("HSETNX", KEYS[1], "failing_since", ARGV[2])
  return redis.call("HGET", KEYS[1], "failing_since")
end
for i = 2, #ARGV, 2 do
  if ARGV[i + 1] == "" then
    redis.call("HDEL", KEYS[1], ARGV[i])
  else
    redis.call("HSET", KEYS[1], ARGV[i], ARGV[i + 1])
  end
end
return 1
