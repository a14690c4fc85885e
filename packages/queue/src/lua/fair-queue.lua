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

  The program is fair-lib.lua (the functions this script shares with create-job.lua), then
  fair-queue-lib.lua (this script's helpers, and begin(), which sets op, now and the keys
  above), then this file (lua-library.ts).
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
           prefix ("<prefix>:job:"), [11] the TTL in ms of a running record, [12] the prefix of
           the jobs' pub/sub channels of status changes (+ job id): with them, a job started
           directly for the first time is also marked running (see "Running mark"); without them
           ("" or absent) it is not
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
LOCK_MS, TOKEN, SERVES = ARGV[7] or "", ARGV[8] or "", ARGV[9] or ""
RECORD, RUN_TTL, CHANNEL = ARGV[10] or "", ARGV[11] or "", ARGV[12] or ""
direct, starts, hash, mark = {}, 0, 0, 0
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
out = { 1, now, 0, 0 }
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
