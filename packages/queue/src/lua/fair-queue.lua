--[[
  The fleet-wide fair order of job starts: start-time fair queueing over a hierarchy,
  tier -> tenant -> the tenant's own jobs (priority, then age).

  New jobs wait parked in their BullMQ queue's delayed set (until their start deadline, a safety
  net) and are listed here. "pick" chooses the next job in the fair order and moves it to active
  for the picking worker as BullMQ's own fetch would (see "Direct starts"), or into its BullMQ
  queue's wait list exactly as BullMQ's own promote does, for a worker's getNextJob to take it;
  BullMQ runs the rest of the job's lifecycle (lock renewal, stall recovery, retries, completion).

  Every backlogged tier and tenant has a pass (its virtual time). The smallest pass is served
  next; serving a job of cost c adds c / weight to its tier's pass and to its tenant's pass. The
  pass of the one served is the system virtual time; a tier or tenant that comes back from idle
  starts at that time (no banked credit), so an idle tenant's share is never saved up.

  Waiting rooms: a job that found no capacity on a provider's model (the key pool said "wait")
  waits in that resource's room, a fair order of its own, and the key pool's appointment becomes
  a ticket: when a ticket is due, the room's fairest job (not the one that got the appointment)
  goes to the express line, which picks serve before anything else. One ticket frees one job, so
  nothing polls, and the freed capacity goes in the fair order instead of the arrival order.

  Admission reads (create-job.lua): every job listed anywhere here (start order, a room, not yet
  due, express) has a meta entry; n:<tier> / nt:<tenant> count them (jobs accepted and not
  started). ws:<tier> sums the weights of the tier's backlogged tenants in the start order
  (we:<tenant>: the weight each entered with). cap:<tier> is the tier's measured start rate
  (jobs/s) while it had work waiting: starts are counted from c0:<tier> (cn:<tier> of them) and
  folded into cap every second or more; c0 is 0 while the tier has nothing waiting, so idle
  time never dilutes the rate.

  KEYS[1]  state hash: <space>V, <space>V:<tier>, <space>P:<tier>, <space>p:<tenant> (virtual
           times and passes; <space> is "" for the start order, "r:<resource>|" for a room),
           W:<tier> / w:<tenant> (weights), seq (arrival counter), and the admission fields above
  KEYS[2]  backlogged tiers of the start order (zset by pass)
  KEYS[3]  meta hash: job id -> "tier|tenant|queue|cost|priority|listed_ms"
  KEYS[4]  later (zset by due time): job ids not yet due, and tickets "t|<resource>|<id>|<n>"
  KEYS[5]  express (list): job ids freed by a ticket, served first
  Derived keys (same hash tag), for a space's key prefix S (<fq> for the start order,
  <fq>:r:<resource> for a room): S:tiers (rooms only), S:tier:<tier>, S:lane:<tenant>; and
  <fq>:starts:<10 s> (starts per tenant, expiring after 70 s); and the BullMQ keys
  <bull>:<queue>:{delayed,wait,meta,marker,events,active} and <bull>:<queue>:<job id>; and a
  started job's record, <records prefix><job id> (see "Running mark").

  (fair-lib.lua, the functions this script shares with create-job.lua, is prepended to it.)
  ARGV[1]  op: "enqueue" | "wait" | "pick" | "forget" | "wake"
  ARGV[2]  now in ms ("" = Redis TIME)
  ARGV[3]  <fq> key prefix
  ARGV[4]  <bull> BullMQ key prefix
  enqueue: ARGV[5] job id, [6] tier, [7] tenant, [8] queue, [9] cost (> 0), [10] priority rank
           (0 high, 1 normal, 2 low), [11] may start in (ms from now; 0 = now), [12] tier weight,
           [13] tenant weight
           -> { 1 }
  wait:    ARGV[5..10] as enqueue, [11] the ticket is due in (ms from now), [12] tier weight,
           [13] tenant weight, [14] resource ("provider/model")
           -> { 1, ticket due at (ms) }
  pick:    ARGV[5] how many stale entries (jobs gone) to skip at most per job, [6] how many jobs
           to start at most (1 when absent): the next ones in the fair order, as that many picks
           one after another would; [7] lock duration in ms, [8] lock token base, [9] the queues
           the picking process consumes ("|a|b|"): with them, a started job of such a queue is
           moved to active and locked for the picker (see "Direct starts"); without them ("" or
           absent) every started job goes to its queue's wait list; [10] the job records' key
           prefix ("<prefix>:job:"), [11] the TTL in ms of a running record, [12] the pub/sub
           channel of status changes: with them, a job started directly for the first time is
           also marked running (see "Running mark"); without them ("" or absent) it is not
           -> { 1, now, more (1: jobs still listed and due), next due time in ms when none are
                (0 = nothing waiting, or more is 1), then per job started: queue, job id,
                tenant, tier, cost, listed_ms, the BullMQ job hash as HGETALL answers it when the
                job was started directly (its lock token: the token base, ":", its position
                among the starts from 1), else 0, and the running mark's answer (as
                transition.lua's: { applied (1|0|-1), status, cancel_requested, attempt_log })
                when the job was marked running, else 0 } or
              { 0, next due time in ms (0 = nothing waiting), now }
  forget:  ARGV[5] job id -> { 1 } (the entry is dropped when its turn comes)
  wake:    ARGV[5] resource, [6] most tickets to add -> { tickets added }: one ticket due now
           for every job in the resource's room (the limits changed: each asks the key pool again)

  Direct starts. BullMQ's fetch (moveToActive) after a promote to the wait list costs a second
  script call per job, and the "look now" mark it leaves wakes a blocked worker for nothing. A
  picker that says which queues it consumes and how long a lock lasts has its jobs moved to
  active here, with what BullMQ 6.7.0's moveToActive writes for a job it takes from the wait list
  (prepareJobForProcessing: the lock with the token, the "active" event, processedOn, the
  attempts-started counter; the job goes to the head of the active list, as RPOPLPUSH puts it),
  and the picker hands the job hash to BullMQ's worker as its fetch would (ManagedWorker.adopt;
  direct-start.int.test.ts compares the two ways key by key). A queue that BullMQ would not fetch
  from as simply (paused, a global concurrency, a rate limit in its meta) is promoted to the wait
  list as before, for BullMQ's own fetch to decide.

  Running mark. A job's first start directly (BullMQ's attempts-started counter is 1 after it)
  also moves its record to "running" here, as the runner's transition.lua call would: a record
  that is not final gets status "running" and started_at (now), the running TTL, and the status
  message; its cancel flag and attempt log are answered, as transition.lua answers them. That
  call was one more script call per job. A job past its start deadline (the end of its parking,
  timestamp + delay, as the producer parks it) is not marked: the runner expires it. A job started
  before (handed back to wait for capacity, and picked again) is not marked either: the runner
  checks what it must first and marks it itself (job-runner.ts).
]]
rcall = redis.call
local op = ARGV[1]
now = tonumber(ARGV[2])
if not now then
  local t = rcall("TIME")
  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
nowText = string.format("%d", now)
FQ, BULL = ARGV[3], ARGV[4]
STATE, TIERS, META = KEYS[1], KEYS[2], KEYS[3]
local LATER, EXPRESS = KEYS[4], KEYS[5]
local MAIN = space(nil)

-- A tenant's and its tier's weights (at least 0.001), read once per script call: only saveMeta
-- writes them (enqueue, wait), and a pick calls it never (the listings of its due entries read
-- the facts saved before).
local tenantWeight, tierWeight = {}, {}
local function weights(tenant, tier)
  local wt, Wt = tenantWeight[tenant], tierWeight[tier]
  if not wt or not Wt then
    local w = rcall("HMGET", STATE, "w:" .. tenant, "W:" .. tier)
    wt, Wt = math.max(tonumber(w[1]) or 0, 0.001), math.max(tonumber(w[2]) or 0, 0.001)
    tenantWeight[tenant], tierWeight[tier] = wt, Wt
  end
  return wt, Wt
end

-- Takes the next job of a space in its fair order. `usable(jobId, meta)` says whether it can be
-- served (its BullMQ job is still there); a job that cannot is dropped without a charge. Returns
-- the job id, its fields and the tenant, or nil when the space is empty or only stale entries
-- were found.
local function take(s, usable, skips)
  for _ = 0, skips do
    local t = rcall("ZRANGE", s.tiers, "0", "0", "WITHSCORES")
    if #t == 0 then
      return nil
    end
    local tier, P = t[1], tonumber(t[2])
    local tierSet = s.keys .. ":tier:" .. tier
    local u = rcall("ZRANGE", tierSet, "0", "0", "WITHSCORES")
    if #u == 0 then
      rcall("ZREM", s.tiers, tier)
    else
      local tenant, p = u[1], tonumber(u[2])
      local lane = s.keys .. ":lane:" .. tenant
      local jobId = rcall("ZRANGE", lane, "0", "0")[1]
      local meta = jobId and rcall("HGET", META, jobId)
      if jobId then
        rcall("ZREM", lane, jobId)
      end
      local f = meta and split(meta)
      local served = f ~= nil and usable(jobId, f)
      if jobId and not served and rcall("HDEL", META, jobId) == 1 and f then
        count(f[1], f[2], -1)
      end
      -- The new passes as text, formatted once for the state hash and the zsets both (Redis
      -- would format a Lua number argument again: ~4,500 instructions each, callgrind).
      local ps, Ps
      if served then
        local cost = tonumber(f[4]) or 1
        local wt, Wt = weights(tenant, tier)
        p = p + cost / wt
        P = P + cost / Wt
        ps, Ps = string.format("%.17g", p), string.format("%.17g", P)
        -- The start tags of the one served become the virtual times of both levels (the scores'
        -- text as Redis gave it), and its new passes are written with them: one HSET.
        rcall("HSET", STATE, s.field .. "V", t[2], s.field .. "V:" .. tier, u[2],
          s.field .. "p:" .. tenant, ps, s.field .. "P:" .. tier, Ps)
      end
      if rcall("ZCARD", lane) == 0 then
        rcall("ZREM", tierSet, tenant)
        if s.field == "" then
          if rcall("ZCARD", tierSet) == 0 then
            rcall("HSET", STATE, "ws:" .. tier, "0")
          else
            -- The weight it entered with, negated as text (weights are positive numbers).
            rcall("HINCRBYFLOAT", STATE, "ws:" .. tier, "-" .. (rcall("HGET", STATE, "we:" .. tenant) or "0"))
          end
        end
      elseif served then
        rcall("ZADD", tierSet, ps, tenant)
      end
      if rcall("ZCARD", tierSet) == 0 then
        rcall("ZREM", s.tiers, tier)
      elseif served then
        rcall("ZADD", s.tiers, Ps, tier)
      end
      if served then
        return jobId, f, tenant
      end
    end
  end
  return nil
end

if op == "enqueue" then
  local jobId = ARGV[5]
  local delay = tonumber(ARGV[11]) or 0
  if delay > 0 then
    saveMeta(jobId, ARGV[6], ARGV[7], ARGV[8], ARGV[9], ARGV[10], ARGV[12], ARGV[13])
    rcall("ZADD", LATER, now + delay, jobId)
  else
    listNow(jobId, ARGV[6], ARGV[7], ARGV[8], ARGV[9], ARGV[10], ARGV[12], ARGV[13])
  end
  return { 1 }
end

if op == "wait" then
  local jobId, resource = ARGV[5], ARGV[14]
  saveMeta(jobId, ARGV[6], ARGV[7], ARGV[8], ARGV[9], ARGV[10], ARGV[12], ARGV[13])
  -- Its pick was no start after all: it waits again for capacity.
  measure(ARGV[6], -1)
  activate(space(resource), jobId, ARGV[6], ARGV[7], tonumber(ARGV[10]) or 1)
  local at = now + math.max(0, tonumber(ARGV[11]) or 0)
  -- Every ticket is its own member: a job that waits again before an earlier ticket of its own
  -- is due (another ticket freed it meanwhile) adds a ticket instead of moving that one, so
  -- the room never holds more jobs than tickets.
  local n = rcall("HINCRBY", STATE, "seq", "1")
  rcall("ZADD", LATER, at, "t|" .. resource .. "|" .. jobId .. "|" .. n)
  -- Wake a blocked worker now: its next pick learns when the ticket is due and sets an alarm.
  wakeForListing(ARGV[8])
  return { 1, at }
end

if op == "wake" then
  local room = space(ARGV[5])
  local jobs = 0
  for _, tier in ipairs(rcall("ZRANGE", room.tiers, "0", "-1")) do
    for _, tenant in ipairs(rcall("ZRANGE", room.keys .. ":tier:" .. tier, "0", "-1")) do
      jobs = jobs + rcall("ZCARD", room.keys .. ":lane:" .. tenant)
    end
  end
  jobs = math.min(jobs, tonumber(ARGV[6]) or 0)
  for _ = 1, jobs do
    local n = rcall("HINCRBY", STATE, "seq", "1")
    rcall("ZADD", LATER, nowText, "t|" .. ARGV[5] .. "|wake|" .. n)
  end
  return { jobs }
end

if op == "forget" then
  local meta = rcall("HGET", META, ARGV[5])
  if meta and rcall("HDEL", META, ARGV[5]) == 1 then
    local f = split(meta)
    count(f[1], f[2], -1)
  end
  rcall("ZREM", LATER, ARGV[5])
  return { 1 }
end

-- op == "pick"
local LOCK_MS, TOKEN, SERVES = ARGV[7] or "", ARGV[8] or "", ARGV[9] or ""
local RECORD, RUN_TTL, CHANNEL = ARGV[10] or "", ARGV[11] or "", ARGV[12] or ""
-- Per queue, read once per call: the events stream's bound when its jobs start directly, else
-- false (see "Direct starts").
local direct = {}
local function directly(queue)
  local d = direct[queue]
  if d == nil then
    d = false
    if LOCK_MS ~= "" and string.find(SERVES, "|" .. queue .. "|", 1, true) then
      local m = rcall("HMGET", BULL .. ":" .. queue .. ":meta", "paused", "concurrency", "max", "opts.maxLenEvents")
      if not m[1] and not m[2] and not m[3] then
        d = m[4] or "10000"
      end
    end
    direct[queue] = d
  end
  return d
end
-- Jobs started by this call so far; the job hash of the one promote just started directly, and
-- its running mark.
local starts, hash, mark = 0, 0, 0
local FINAL = { succeeded = true, failed = true, cancelled = true, expired = true }
-- Marks a job's record running (see "Running mark"); returns what transition.lua would.
local function markRunning(jobId)
  local rec = RECORD .. jobId
  local cur = rcall("HMGET", rec, "status", "cancel_requested", "attempt_log")
  local status = cur[1]
  if not status then
    return { -1, "", "", "" }
  end
  if FINAL[status] then
    return { 0, status, cur[2] or "", cur[3] or "" }
  end
  rcall("HSET", rec, "status", "running", "started_at", nowText)
  rcall("PEXPIRE", rec, RUN_TTL)
  if status ~= "running" then
    rcall("PUBLISH", CHANNEL, jobId .. " running")
  end
  return { 1, "running", cur[2] or "", cur[3] or "" }
end
-- Moves a parked job into its BullMQ queue's wait list, as BullMQ's promote script does, or
-- straight to active for the picker (see "Direct starts").
local function promote(jobId, f)
  local q = BULL .. ":" .. f[3]
  if rcall("ZREM", q .. ":delayed", jobId) ~= 1 then
    return false
  end
  local maxLen = directly(f[3])
  if maxLen then
    local jobKey = q .. ":" .. jobId
    -- The end of its parking (its start deadline), read before the start resets the delay.
    local parking = RUN_TTL ~= "" and rcall("HMGET", jobKey, "timestamp", "delay")
    rcall("LPUSH", q .. ":active", jobId)
    rcall("SET", jobKey .. ":lock", TOKEN .. ":" .. string.format("%d", starts + 1), "PX", LOCK_MS)
    rcall("XADD", q .. ":events", "MAXLEN", "~", maxLen, "*", "event", "active", "jobId", jobId, "prev", "delayed")
    rcall("HSET", jobKey, "delay", "0", "processedOn", nowText)
    local ats = rcall("HINCRBY", jobKey, "ats", "1")
    hash = rcall("HGETALL", jobKey)
    mark = 0
    if parking and ats == 1 and now <= (tonumber(parking[1]) or 0) + (tonumber(parking[2]) or 0) then
      mark = markRunning(jobId)
    end
    return true
  end
  hash, mark = 0, 0
  rcall("LPUSH", q .. ":wait", jobId)
  -- No marker poke (BullMQ's promote wakes a blocked worker): the picker fetches the job right
  -- after this, and a woken worker elsewhere would only race it for the job. Should the picker's
  -- process die in between, a blocked worker finds the job at its next wake-up (within BullMQ's
  -- drainDelay).
  local maxLen = rcall("HGET", q .. ":meta", "opts.maxLenEvents") or "10000"
  rcall("XADD", q .. ":events", "MAXLEN", "~", maxLen, "*", "event", "waiting",
    "jobId", jobId, "prev", "delayed")
  rcall("HSET", q .. ":" .. jobId, "delay", "0")
  return true
end
-- A room's job is still usable while its BullMQ job waits parked.
local function parked(jobId, f)
  return rcall("ZSCORE", BULL .. ":" .. f[3] .. ":delayed", jobId) ~= false
end

local skips = tonumber(ARGV[5]) or 20
local due = rcall("ZRANGEBYSCORE", LATER, "-inf", nowText, "LIMIT", "0", "100")
for _, entry in ipairs(due) do
  rcall("ZREM", LATER, entry)
  local resource = string.match(entry, "^t|(.*)|[^|]*|[^|]*$")
  if resource then
    local jobId = take(space(resource), parked, skips)
    if jobId then
      rcall("RPUSH", EXPRESS, jobId)
    end
  else
    activateListed(MAIN, entry)
  end
end

local want = math.max(1, tonumber(ARGV[6]) or 1)
local out = { 1, now, 0, 0 }
local function started(jobId, f, tenant)
  count(f[1], tenant, -1)
  measure(f[1], 1)
  -- Starts per tenant in 10 s buckets, for the operators' share of the last minute.
  local bucket = FQ .. ":starts:" .. string.format("%d", math.floor(now / 10000))
  -- The tenant's first start in the bucket (the bucket may be new) sets its TTL.
  if rcall("HINCRBY", bucket, tenant, "1") == 1 then
    rcall("PEXPIRE", bucket, "70000")
  end
  local n = #out
  out[n + 1], out[n + 2], out[n + 3], out[n + 4], out[n + 5], out[n + 6], out[n + 7], out[n + 8] =
    f[3], jobId, tenant, f[1], f[4], f[6], hash, mark
  starts = starts + 1
end

-- Jobs freed by a ticket hold capacity: they go first, without a second charge.
local budget = skips * want
while starts < want and budget >= 0 do
  local jobId = rcall("LPOP", EXPRESS)
  if not jobId then
    break
  end
  budget = budget - 1
  local meta = rcall("HGET", META, jobId)
  rcall("HDEL", META, jobId)
  local f = meta and split(meta)
  if f and promote(jobId, f) then
    started(jobId, f, f[2])
  elseif f then
    count(f[1], f[2], -1)
  end
end

while starts < want do
  local jobId, f, tenant = take(MAIN, promote, skips)
  if not jobId then
    break
  end
  rcall("HDEL", META, jobId)
  started(jobId, f, tenant)
end
local function nextDue()
  local first = rcall("ZRANGE", LATER, "0", "0", "WITHSCORES")
  return tonumber(first[2]) or 0
end
if #out > 4 then
  -- Whether more jobs are listed now: a picker that started some wakes another only then. With
  -- none, when the next one (a ticket, a job listed for later) is due: the picker sleeps until
  -- then, or until a listing wakes it.
  if rcall("EXISTS", TIERS, EXPRESS) > 0 then
    out[3] = 1
  else
    out[4] = nextDue()
  end
  return out
end
return { 0, nextDue(), now }
