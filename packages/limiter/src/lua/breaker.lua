--[[
  A circuit breaker shared by every worker: one hash per provider (or provider and model).

  KEYS[1]  breaker hash
  ARGV[1]  op: "acquire" (may a call go now?) or "record" (how did a call end?)
  ARGV[2]  now, ms ("" = Redis TIME: the fleet shares Redis's clock, not each worker's)
  ARGV[3]  window_ms       rolling window over which the failure rate is measured
  ARGV[4]  min_calls       calls in the window before the rate counts
  ARGV[5]  failure_rate    0..1; at or above it the breaker opens
  ARGV[6]  open_ms         first open period; doubles on each re-open
  ARGV[7]  max_open_ms     cap on the open period
  ARGV[8]  probes          calls let through while half-open
  ARGV[9]  probe_ttl_ms    a probe not reported within this time is given up (its worker died)
  ARGV[10] outcome         record only: "success", "failure" or "release" (no verdict, e.g. cancelled)
  ARGV[11] was_probe       record only: "1" when the call was a half-open probe

  Fields: state (closed|open|half_open), open_until, opens (consecutive opens), probes (in
  flight), probe_deadline, and counters "s:<bucket>" / "f:<bucket>" in 10 buckets per window.

  Returns { allowed (1|0), state, open_until or retry-at ms, probe (1|0), now ms }.
  The hash expires when untouched for twice the longer of window and max open period.
]]
local key = KEYS[1]
local op = ARGV[1]
local now = tonumber(ARGV[2])
if not now then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local window = tonumber(ARGV[3])
local min_calls = tonumber(ARGV[4])
local rate = tonumber(ARGV[5])
local open_ms = tonumber(ARGV[6])
local max_open = tonumber(ARGV[7])
local max_probes = tonumber(ARGV[8])
local probe_ttl = tonumber(ARGV[9])
local bucket_ms = math.max(1, math.floor(window / 10))

local state = redis.call("HGET", key, "state") or "closed"
local ttl = 2 * math.max(window, max_open)

local function open_now()
  local opens = (tonumber(redis.call("HGET", key, "opens")) or 0) + 1
  local period = math.min(max_open, open_ms * 2 ^ (opens - 1))
  local until_ms = now + period
  redis.call("DEL", key)
  redis.call("HSET", key, "state", "open", "open_until", until_ms, "opens", opens, "probes", 0)
  redis.call("PEXPIRE", key, ttl)
  return { 0, "open", until_ms, 0, now }
end

if op == "acquire" then
  if state == "open" then
    local until_ms = tonumber(redis.call("HGET", key, "open_until")) or 0
    if now < until_ms then
      return { 0, "open", until_ms, 0, now }
    end
    state = "half_open"
    redis.call("HSET", key, "state", "half_open", "probes", 0)
  end
  if state == "half_open" then
    local probes = tonumber(redis.call("HGET", key, "probes")) or 0
    local deadline = tonumber(redis.call("HGET", key, "probe_deadline")) or 0
    if probes >= max_probes and now >= deadline then
      probes = 0
    end
    if probes < max_probes then
      redis.call("HSET", key, "probes", probes + 1, "probe_deadline", now + probe_ttl)
      redis.call("PEXPIRE", key, ttl)
      return { 1, "half_open", 0, 1, now }
    end
    return { 0, "half_open", deadline, 0, now }
  end
  return { 1, "closed", 0, 0, now }
end

-- op == "record"
local outcome = ARGV[10]
local was_probe = ARGV[11] == "1"

if was_probe and state == "half_open" then
  if outcome == "success" then
    redis.call("DEL", key)
    redis.call("HSET", key, "state", "closed", "opens", 0)
    redis.call("PEXPIRE", key, ttl)
    return { 1, "closed", 0, 0, now }
  end
  if outcome == "failure" then
    return open_now()
  end
  local probes = tonumber(redis.call("HGET", key, "probes")) or 1
  redis.call("HSET", key, "probes", math.max(0, probes - 1))
  return { 1, "half_open", 0, 0, now }
end
if state ~= "closed" or outcome == "release" then
  -- Late results of calls made before the breaker opened do not move it.
  return { state == "closed" and 1 or 0, state, tonumber(redis.call("HGET", key, "open_until")) or 0, 0, now }
end

local current = math.floor(now / bucket_ms)
local field = (outcome == "failure" and "f:" or "s:") .. current
redis.call("HINCRBY", key, field, 1)
local calls, failures = 0, 0
local all = redis.call("HGETALL", key)
local stale = {}
for i = 1, #all, 2 do
  local name = all[i]
  local kind, idx = string.match(name, "^([sf]):(%d+)$")
  if kind then
    idx = tonumber(idx)
    if idx <= current - 10 then
      stale[#stale + 1] = name
    else
      local n = tonumber(all[i + 1])
      calls = calls + n
      if kind == "f" then
        failures = failures + n
      end
    end
  end
end
if #stale > 0 then
  redis.call("HDEL", key, unpack(stale))
end
if calls >= min_calls and failures / calls >= rate then
  return open_now()
end
if not redis.call("HGET", key, "state") then
  redis.call("HSET", key, "state", "closed")
end
redis.call("PEXPIRE", key, ttl)
return { 1, "closed", 0, 0, now }
