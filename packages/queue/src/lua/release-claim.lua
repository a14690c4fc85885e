--[[
  Deletes an Idempotency-Key claim, but only if it still holds the value the caller saw (a
  claim whose job record is gone is released so a retry can take the key over).

  KEYS[1]  idempotency record (string)
  ARGV[1]  the value the caller read

  Returns 1 when deleted, 0 when the key holds something else (or nothing).
]]
if redis.call("GET", KEYS[1]) == ARGV[1] then
  return redis.call("DEL", KEYS[1])
end
return 0
