--[[
  Deletes a tenant's webhook endpoint, and takes the tenant off the set of tenants whose job
  events go to the outbox when this was its last endpoint; atomic, so a concurrent create can
  never leave a tenant with endpoints off that set.

  KEYS[1]  endpoint hash
  KEYS[2]  the tenant's set of endpoint ids
  KEYS[3]  set of tenants with endpoints
  KEYS[4]  the endpoint's delivery index
  ARGV[1]  endpoint id
  ARGV[2]  tenant id

  Returns 1 when deleted, 0 when there is no such endpoint of this tenant.
]]
if redis.call("HGET", KEYS[1], "tenant") ~= ARGV[2] then
  return 0
end
redis.call("DEL", KEYS[1], KEYS[4])
redis.call("SREM", KEYS[2], ARGV[1])
if redis.call("SCARD", KEYS[2]) == 0 then
  redis.call("SREM", KEYS[3], ARGV[2])
end
return 1
