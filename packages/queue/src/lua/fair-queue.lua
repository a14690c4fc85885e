--[[
  The fleet-wide fair order of job starts: start-time fair queueing over a hierarchy,
  tier -> tenant -> the tenant's own jobs (priority, then age).

  New jobs wait parked in their BullMQ queue's delayed set (until their start deadline, a safety
  net) and are listed here. "pick" chooses the next job in the fair order and moves it into its
  BullMQ queue's wait list exactly as BullMQ's own promote does, so a worker's getNextJob takes it
  and BullMQ runs the job's whole lifecycle (lock, stall recovery, retries, completion).

  Every backlogged tier and tenant has a pass (its virtual time). The smallest pass is served
  next; serving a job of cost c adds c / weight to its tier's pass and to its tenant's pass. The
  pass of the one served is the system virtual time; a tier or tenant that comes back from idle
  starts at that time (no banked credit), so an idle tenant's share is never saved up.

  KEYS[1]  state hash: V (virtual time across tiers), V:<tier> (within a tier), P:<tier> (tier
           pass), p:<tenant> (tenant pass), W:<tier> / w:<tenant> (weights), seq (arrival counter)
  KEYS[2]  backlogged tiers (zset by pass)
  KEYS[3]  meta hash: job id -> "tier|tenant|queue|cost|priority|enqueued_ms"
  KEYS[4]  later (zset: job id by the time it may start)
  Derived keys (same hash tag): <fq>:tier:<tier> (backlogged tenants by pass),
  <fq>:lane:<tenant> (the tenant's listed jobs by priority, then arrival), <fq>:starts:<10 s>
  (starts per tenant, expiring after 70 s), and the BullMQ keys
  <bull>:<queue>:{delayed,wait,meta,marker,events} and <bull>:<queue>:<job id>.

  ARGV[1]  op: "enqueue" | "pick" | "forget"
  ARGV[2]  now in ms ("" = Redis TIME)
  ARGV[3]  <fq> key prefix
  ARGV[4]  <bull> BullMQ key prefix
  enqueue: ARGV[5] job id, [6] tier, [7] tenant, [8] queue, [9] cost (> 0), [10] priority rank
           (0 high, 1 normal, 2 low), [11] may start in (ms from now; 0 = now), [12] tier weight,
           [13] tenant weight
           -> { 1 }
  pick:    ARGV[5] how many stale entries (jobs gone) to skip at most
           -> { 1, queue, job id, tenant, tier, cost, enqueued_ms, now } or
              { 0, next start time in ms (0 = nothing listed), now }
  forget:  ARGV[5] job id -> { 1 } (the entry is dropped when its turn comes)
]]
local rcall = redis.call
local op = ARGV[1]
local now = tonumber(ARGV[2])
if not now then
  local t = rcall("TIME")
  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local FQ = ARGV[3]
local BULL = ARGV[4]
local STATE, TIERS, META, LATER = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local PRIORITY_SPAN = 1099511627776 -- 2^40 arrivals per priority band

local function num(field)
  return tonumber(rcall("HGET", STATE, field)) or 0
end

local function split(meta)
  local out, start = {}, 1
  while true do
    local i = string.find(meta, "|", start, true)
    if not i then
      out[#out + 1] = string.sub(meta, start)
      return out
    end
    out[#out + 1] = string.sub(meta, start, i - 1)
    start = i + 1
  end
end

-- Lists a job in its tenant's lane; a tier or tenant that was idle starts at the current
-- virtual time of its level.
local function activate(jobId)
  local meta = rcall("HGET", META, jobId)
  if not meta then
    return
  end
  local f = split(meta)
  local tier, tenant, prio = f[1], f[2], tonumber(f[5]) or 1
  local seq = rcall("HINCRBY", STATE, "seq", 1)
  rcall("ZADD", FQ .. ":lane:" .. tenant, prio * PRIORITY_SPAN + seq, jobId)
  local tierSet = FQ .. ":tier:" .. tier
  if not rcall("ZSCORE", tierSet, tenant) then
    local p = math.max(num("p:" .. tenant), num("V:" .. tier))
    rcall("HSET", STATE, "p:" .. tenant, tostring(p))
    rcall("ZADD", tierSet, p, tenant)
  end
  if not rcall("ZSCORE", TIERS, tier) then
    local P = math.max(num("P:" .. tier), num("V"))
    rcall("HSET", STATE, "P:" .. tier, tostring(P))
    rcall("ZADD", TIERS, P, tier)
  end
end

if op == "enqueue" then
  local jobId = ARGV[5]
  local tier, tenant = ARGV[6], ARGV[7]
  rcall("HSET", META, jobId, table.concat({ tier, tenant, ARGV[8], ARGV[9], ARGV[10], now }, "|"))
  rcall("HSET", STATE, "W:" .. tier, ARGV[12], "w:" .. tenant, ARGV[13])
  local delay = tonumber(ARGV[11]) or 0
  if delay > 0 then
    rcall("ZADD", LATER, now + delay, jobId)
  else
    activate(jobId)
    -- Wake a worker blocked on the queue's marker, as BullMQ does when a job is added.
    rcall("ZADD", BULL .. ":" .. ARGV[8] .. ":marker", 0, "0")
  end
  return { 1 }
end

if op == "forget" then
  rcall("HDEL", META, ARGV[5])
  rcall("ZREM", LATER, ARGV[5])
  return { 1 }
end

-- op == "pick"
local due = rcall("ZRANGEBYSCORE", LATER, "-inf", now, "LIMIT", 0, 100)
for _, jobId in ipairs(due) do
  rcall("ZREM", LATER, jobId)
  activate(jobId)
end

-- Moves a parked job into its BullMQ queue's wait list, as BullMQ's promote script does.
local function promote(queue, jobId)
  local q = BULL .. ":" .. queue
  if rcall("ZREM", q .. ":delayed", jobId) ~= 1 then
    return false
  end
  rcall("LPUSH", q .. ":wait", jobId)
  local attrs = rcall("HMGET", q .. ":meta", "paused", "concurrency", "opts.maxLenEvents")
  local maxed = attrs[1] ~= false
  if not maxed and attrs[2] then
    maxed = rcall("LLEN", q .. ":active") >= tonumber(attrs[2])
  end
  if not maxed then
    rcall("ZADD", q .. ":marker", 0, "0")
  end
  rcall("XADD", q .. ":events", "MAXLEN", "~", tonumber(attrs[3]) or 10000, "*", "event", "waiting",
    "jobId", jobId, "prev", "delayed")
  rcall("HSET", q .. ":" .. jobId, "delay", 0)
  return true
end

local skips = tonumber(ARGV[5]) or 20
for _ = 0, skips do
  local t = rcall("ZRANGE", TIERS, 0, 0, "WITHSCORES")
  if #t == 0 then
    break
  end
  local tier, P = t[1], tonumber(t[2])
  local tierSet = FQ .. ":tier:" .. tier
  local u = rcall("ZRANGE", tierSet, 0, 0, "WITHSCORES")
  if #u == 0 then
    rcall("ZREM", TIERS, tier)
  else
    local tenant, p = u[1], tonumber(u[2])
    local lane = FQ .. ":lane:" .. tenant
    local head = rcall("ZRANGE", lane, 0, 0)
    local jobId = head[1]
    local meta = jobId and rcall("HGET", META, jobId)
    if jobId then
      rcall("ZREM", lane, jobId)
      rcall("HDEL", META, jobId)
    end
    local served = false
    local f
    if meta then
      f = split(meta)
      served = promote(f[3], jobId)
    end
    if served then
      -- The start tags of the one served are the virtual times of both levels.
      rcall("HSET", STATE, "V", tostring(P), "V:" .. tier, tostring(p))
      local cost = tonumber(f[4]) or 1
      p = p + cost / math.max(num("w:" .. tenant), 0.001)
      P = P + cost / math.max(num("W:" .. tier), 0.001)
      rcall("HSET", STATE, "p:" .. tenant, tostring(p), "P:" .. tier, tostring(P))
    end
    if rcall("ZCARD", lane) == 0 then
      rcall("ZREM", tierSet, tenant)
    elseif served then
      rcall("ZADD", tierSet, p, tenant)
    end
    if rcall("ZCARD", tierSet) == 0 then
      rcall("ZREM", TIERS, tier)
    elseif served then
      rcall("ZADD", TIERS, P, tier)
    end
    if served then
      -- Starts per tenant in 10 s buckets, for the operators' share of the last minute.
      local bucket = FQ .. ":starts:" .. math.floor(now / 10000)
      rcall("HINCRBY", bucket, tenant, 1)
      rcall("PEXPIRE", bucket, 70000)
      return { 1, f[3], jobId, tenant, tier, f[4], f[6], now }
    end
  end
end
local nextAt = rcall("ZRANGE", LATER, 0, 0, "WITHSCORES")
return { 0, tonumber(nextAt[2]) or 0, now }
