--[[
  Admits a new job: checks its Idempotency-Key, its tier's and tenant's admission bounds and its
  tenant's quota, then writes the job record, claims the key and reserves the job's estimated
  usage, all in one step. A crash can never leave a claimed key without its record, and a burst
  of concurrent submissions can never pass a bound or a quota together.

  KEYS[1]  job record hash
  KEYS[2]  idempotency record (string); ignored when ARGV[2] is "0"
  KEYS[3]  fair queue state hash (counts, weight sums and start rates: see fair-queue.lua)
  KEYS[4]  the tenant's lane in the fair queue (zset: priority rank * 2^40 + arrival)
  KEYS[5]  the tier's backlogged tenants in the fair queue (zset)
  KEYS[6]  the tenant's usage for the UTC day (hash)
  KEYS[7]  the tenant's usage for the UTC month (hash)
  ARGV[1]  record TTL in ms
  ARGV[2]  idempotency TTL in ms ("0": no Idempotency-Key)
  ARGV[3]  idempotency record value (JSON: fingerprint and job id)
  ARGV[4]  tier, [5] tenant, [6] priority rank (0 high, 1 normal, 2 low), [7] tenant weight
  ARGV[8]  tier max_waiting, [9] tier max wait (ms), [10] tenant max_waiting, [11] tenant max
           wait (ms), [12] degrade when the wait is over (ms); -1: no such bound
  ARGV[13] requests per day, [14] tokens per day, [15] nano-USD per day, [16] nano-USD per
           month; -1: no such quota
  ARGV[17] estimated tokens, [18] estimated nano-USD; [19], [20] the same for the degraded route
  ARGV[21] usage TTL in ms
  ARGV[22] now in ms ("" = Redis TIME)
  ARGV[23] the record's "degraded" field when degraded (JSON: route and cap)
  ARGV[24] "1": list the job in the fair queue now (its BullMQ job is parked already, or ARGV[30]
           parks it here), unless it is degraded (the caller updates its payload, parks and lists
           it); "0": do not list it
  ARGV[25] fair queue key prefix, [26] BullMQ key prefix, [27] queue, [28] cost, [29] tier weight
  ARGV[30] "1": park the job's BullMQ job here, as BullMQ's addDelayedJob would (see park below),
           when it is listed; "": its BullMQ job is parked by the caller
  ARGV[31] BullMQ job name, [32] its data (JSON), [33] its options (JSON, as BullMQ stores them),
           [34] its timestamp (ms), [35] its delay (ms), [36] timestamp + delay
  KEYS[8]  the fair queue's backlogged tiers (zset), KEYS[9] its job facts (hash)
  ARGV[37] job id, [38] model, [39] priority, [40] created_at (ms), [41] trace id: the record's
           fields every job has (its tenant and queue are ARGV[5] and ARGV[27]; its status is
           "queued" and its attempts 0); ARGV[42..] field, value pairs of the optional ones.
           Field names are the script's own constants: every argument is a Lua string made per
           call (~600 instructions each, callgrind), and the client encodes each one too.

  (fair-lib.lua is prepended: the listing is the fair queue's own.)

  Parking the BullMQ job here saves the submission a round trip and BullMQ's client-side work
  (~13% of the API's CPU per submission), and makes the record, the parked job and the listing
  one atomic step. It writes what BullMQ 6.7.0's addDelayedJob writes for a new job with a
  custom id, less the delay marker (see park below); BullMQ is pinned and
  packages/queue/src/park.int.test.ts compares the two key by key.

  Returns
    { 1, estimated wait in ms (-1: not measured yet), degraded (0|1), listed (0|1) }   written
    { 0, <idempotency record value> }        the key was claimed already (nothing written)
    { 2, bound, retry after ms, estimated wait in ms }   refused by an admission bound
    { 3, quota }                              refused by the tenant's quota
]]
local LANE, TIERSET, DAY, MONTH = KEYS[4], KEYS[5], KEYS[6], KEYS[7]
STATE, TIERS, META = KEYS[3], KEYS[8], KEYS[9]
FQ, BULL = ARGV[25], ARGV[26]
-- Bounds, quotas and TTLs are compared as the text they came as where that is enough ("-1": no
-- such bound, "0": no Idempotency-Key): Lua's tonumber parses a string twice (~1,600
-- instructions, callgrind), and most of these are never needed as numbers.
local idem = ARGV[2] ~= "0"
if idem then
  local prior = rcall("GET", KEYS[2])
  if prior then
    return { 0, prior }
  end
end
setClock(ARGV[22])
local tier, tenant, rank, weight = ARGV[4], ARGV[5], tonumber(ARGV[6]), tonumber(ARGV[7])

-- The estimated wait before this job starts: jobs of its own tenant ahead of it, at the
-- tenant's weighted share of its tier's measured start rate, and never longer than the whole
-- tier's backlog at the tier's rate.
local counts = rcall("HMGET", STATE, "n:" .. tier, "cap:" .. tier, "c0:" .. tier, "cn:" .. tier, "ws:" .. tier,
  "nt:" .. tenant)
local waiting = tonumber(counts[1]) or 0
local rate = tonumber(counts[2]) or 0
local c0 = tonumber(counts[3]) or 0
if c0 > 0 and now - c0 > 2000 then
  -- Starts have been slow since c0: the rate now is at most what was seen since then.
  local recent = ((tonumber(counts[4]) or 0) + 1) * 1000 / (now - c0)
  if rate <= 0 or recent < rate then
    rate = recent
  end
end
local est = 0
if waiting > 0 then
  if rate <= 0 then
    est = -1
  else
    local ahead = rcall("ZCOUNT", LANE, "-inf", string.format("(%d", (rank + 1) * PRIORITY_SPAN))
    local sum = tonumber(counts[5]) or 0
    if not rcall("ZRANK", TIERSET, tenant) then
      sum = sum + weight
    end
    local share = math.min(1, weight / math.max(sum, weight))
    est = math.floor(math.min((ahead + 1) / share, waiting + 1) / rate * 1000)
  end
end

local function refuse(bound, retry)
  return { 2, bound, math.max(1000, math.ceil(retry)), est }
end
-- The bound at ARGV[i], or nil when there is none.
local function limitAt(i)
  if ARGV[i] == "-1" then
    return nil
  end
  return tonumber(ARGV[i])
end
local over = limitAt(8)
if over and waiting >= over then
  return refuse("tier_max_waiting", rate > 0 and (waiting - over + 1) / rate * 1000 or 5000)
end
over = limitAt(9)
if over and est > over then
  return refuse("tier_max_wait_seconds", est - over)
end
over = limitAt(10)
local mine = tonumber(counts[6]) or 0
if over and mine >= over then
  return refuse("tenant_max_waiting", rate > 0 and (mine - over + 1) / rate * 1000 or 5000)
end
over = limitAt(11)
if over and est > over then
  return refuse("tenant_max_wait_seconds", est - over)
end
local degraded = 0
over = limitAt(12)
if over and est > over then
  degraded = 1
end

-- The quota: refused once the day's (month's) usage, reservations included, has reached it.
-- Numbers go to Redis as the text they came as: Redis turns a Lua number argument into text
-- with a float formatting that costs about as much as an HINCRBY (callgrind).
local tokens, nano = ARGV[17], ARGV[18]
if degraded == 1 then
  tokens, nano = ARGV[19], ARGV[20]
end
local day = rcall("HMGET", DAY, "r", "t", "c")
local limits = { { 13, day[1], "requests_per_day" }, { 14, day[2], "tokens_per_day" }, { 15, day[3], "usd_per_day" } }
for _, l in ipairs(limits) do
  local cap = limitAt(l[1])
  if cap and (tonumber(l[2]) or 0) >= cap then
    return { 3, l[3] }
  end
end
local cap = limitAt(16)
if cap and (tonumber(rcall("HGET", MONTH, "c")) or 0) >= cap then
  return { 3, "usd_per_month" }
end

local usage_ttl = ARGV[21]
rcall("HINCRBY", DAY, "r", "1")
rcall("HINCRBY", DAY, "t", tokens)
rcall("HINCRBY", DAY, "c", nano)
rcall("PEXPIRE", DAY, usage_ttl, "NX")
-- The month counts only what its quota reads: USD.
rcall("HINCRBY", MONTH, "c", nano)
rcall("PEXPIRE", MONTH, usage_ttl, "NX")

if idem then
  rcall("SET", KEYS[2], ARGV[3], "PX", ARGV[2])
end
local fields = { "id", ARGV[37], "tenant", tenant, "queue", ARGV[27], "model", ARGV[38], "priority", ARGV[39],
  "status", "queued", "attempts", "0", "created_at", ARGV[40], "trace_id", ARGV[41], "q_d", DAY, "q_m", MONTH,
  "q_t", tokens, "q_c", nano }
if degraded == 1 then
  fields[#fields + 1] = "degraded"
  fields[#fields + 1] = ARGV[23]
  fields[#fields + 1] = "degraded_ms"
  fields[#fields + 1] = string.format("%d", math.max(est, 0))
end
for i = 42, #ARGV do
  fields[#fields + 1] = ARGV[i]
end
rcall("HSET", KEYS[1], unpack(fields))
rcall("PEXPIRE", KEYS[1], ARGV[1])

-- BullMQ 6.7.0's addDelayedJob for a new job with a custom id, step for step (its includes
-- storeJob, getOrSetMaxEvents and getDelayedScore; not addDelayMarkerIfNeeded): the id counter,
-- the job hash, the "added" event, the delayed set (the due time in the score's upper bits, a
-- counter within the millisecond in its lower 12) and the "delayed" event.
local function park(jobId, queue, name, data, opts, timestamp, delay, due)
  local q = BULL .. ":" .. queue .. ":"
  local delayedKey, eventsKey, metaKey = q .. "delayed", q .. "events", q .. "meta"
  rcall("INCR", q .. "id")
  local maxEvents = rcall("HGET", metaKey, "opts.maxLenEvents")
  if not maxEvents then
    maxEvents = 10000
    rcall("HSET", metaKey, "opts.maxLenEvents", maxEvents)
  end
  rcall("HMSET", q .. jobId, "name", name, "data", data, "opts", opts, "timestamp", timestamp, "delay", delay,
    "priority", "0")
  rcall("XADD", eventsKey, "*", "event", "added", "jobId", jobId, "name", name)
  local at = tonumber(due)
  -- Scores below 2^53 as %d text: Redis would format a Lua number argument as %.17g.
  local minScore, maxScore = at * 0x1000, (at + 1) * 0x1000 - 1
  local score = minScore
  local last = rcall("ZREVRANGEBYSCORE", delayedKey, string.format("%d", maxScore), string.format("%d", minScore),
    "WITHSCORES", "LIMIT", "0", "1")
  local top = tonumber(last[2])
  if top ~= nil then
    score = top >= maxScore and maxScore or top + 1
  end
  rcall("ZADD", delayedKey, string.format("%d", score), jobId)
  rcall("XADD", eventsKey, "MAXLEN", "~", maxEvents, "*", "event", "delayed", "jobId", jobId, "delay", due)
  -- No delay marker (BullMQ's addDelayMarkerIfNeeded): it would wake a blocked worker for every
  -- submission only to learn a due time that is the job's start deadline, a safety net for a
  -- listing that was lost (a job released then is expired by its runner). Workers find such a
  -- job within their drain delay: their blocked wait times out and they look.
end

local listed = 0
if ARGV[24] == "1" and degraded == 0 then
  local jobId = ARGV[37]
  if ARGV[30] == "1" then
    park(jobId, ARGV[27], ARGV[31], ARGV[32], ARGV[33], ARGV[34], ARGV[35], ARGV[36])
  end
  listNow(jobId, tier, tenant, ARGV[27], ARGV[28], ARGV[6], ARGV[29], ARGV[7])
  listed = 1
end
return { 1, est, degraded, listed }
