--[[
  Writes a new job record and, when the submission carried an Idempotency-Key, claims that key
  for it, in one step: a crash can never leave a claimed key without its job record.

  KEYS[1]  job record hash
  KEYS[2]  idempotency record (string); ignored when ARGV[2] is "0"
  ARGV[1]  record TTL in ms
  ARGV[2]  idempotency TTL in ms ("0": no Idempotency-Key)
  ARGV[3]  idempotency record value (JSON: fingerprint and job id)
  ARGV[4..] field, value pairs of the record

  Returns { 1 } when written, or { 0, <idempotency record value> } when the key was already
  claimed (nothing written).
]]
local idem_ttl = tonumber(ARGV[2])
if idem_ttl > 0 then
  local prior = redis.call("GET", KEYS[2])
  if prior then
    return { 0, prior }
  end
  redis.call("SET", KEYS[2], ARGV[3], "PX", idem_ttl)
end
local fields = {}
for i = 4, #ARGV do
  fields[#fields + 1] = ARGV[i]
end
redis.call("HSET", KEYS[1], unpack(fields))
redis.call("PEXPIRE", KEYS[1], tonumber(ARGV[1]))
return { 1 }
