--[[
  Marks a job as wanted cancelled, unless it is already final.

  KEYS[1]  job record hash
  ARGV[1]  now (epoch ms), kept as cancel_requested_at

  Returns { applied (1|0|-1), current status }
    -1: no such record; 0: already final; 1: flag set (status unchanged: the caller or the
    worker holding the job finishes the cancel).
]]
local status = redis.call("HGET", KEYS[1], "status")
if not status then
  return { -1, "" }
end
if status == "succeeded" or status == "failed" or status == "cancelled" or status == "expired" then
  return { 0, status }
end
redis.call("HSET", KEYS[1], "cancel_requested", "1", "cancel_requested_at", ARGV[1])
return { 1, status }
