--[[
  The fair queue's shared core: the state a listing touches and the functions that list a job.
  Not a script on its own: it comes first in the fair queue's program (fair-queue-lib.lua,
  fair-queue.lua) and in create-job's (begin.lua, create-job.lua: a new job is admitted,
  recorded and listed in one step), each a function library (lua-library.ts). The including
  program sets rcall (redis.call), STATE, TIERS and META (the fair queue's state hash,
  backlogged tiers zset and job facts hash: see fair-queue.lua), FQ and BULL (the fair queue's
  and BullMQ's key prefixes), and now (ms) and nowText (the same as %d text: setClock) at every
  call, before it calls any of these.

  Numbers go to Redis as text, and as the text they came as where they are not computed here:
  Redis formats a Lua number argument as %.17g (and Lua's own tostring and concatenation as
  %.14g), and Lua's tonumber parses a string twice, each about as costly as a small command
  (callgrind). For the same reason a member's presence in a sorted set is asked with ZRANK (an
  integer answer), not ZSCORE (a score formatted as %.17g text).
]]
-- redis.call, set at every call by the including program's begin() (a function library is
-- loaded where redis.call does not exist yet).
local rcall
local STATE, TIERS, META, FQ, BULL, now, nowText
local PRIORITY_SPAN = 1099511627776 -- 2^40 arrivals per priority band

-- Sets now (ms) and nowText from a call's argument, or from Redis's clock when it is "".
local function setClock(arg)
  now = tonumber(arg)
  if not now then
    local t = rcall("TIME")
    now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  end
  nowText = string.format("%d", now)
end

local function num(field)
  return tonumber(rcall("HGET", STATE, field)) or 0
end

-- Jobs accepted and not yet started, per tier and tenant (see "Admission reads").
local function count(tier, tenant, d)
  -- As text: Redis formats a Lua number argument as a float, as costly as the HINCRBY (callgrind).
  local dt = d == 1 and "1" or (d == -1 and "-1" or d)
  local n = rcall("HINCRBY", STATE, "n:" .. tier, dt)
  if n <= 0 then
    -- Nothing waiting: the busy period (and its rate measurement) ends; heal any drift.
    rcall("HSET", STATE, "n:" .. tier, "0", "c0:" .. tier, "0")
  elseif n == 1 and d > 0 then
    rcall("HSET", STATE, "c0:" .. tier, nowText, "cn:" .. tier, "0")
  end
  if rcall("HINCRBY", STATE, "nt:" .. tenant, dt) < 0 then
    rcall("HSET", STATE, "nt:" .. tenant, "0")
  end
end

-- Counts a start (d = 1) or a start taken back (d = -1) of the tier while it is busy; folds the
-- count into its rate every second.
local function measure(tier, d)
  local c0 = num("c0:" .. tier)
  if c0 <= 0 then
    return
  end
  local cn = rcall("HINCRBY", STATE, "cn:" .. tier, d > 0 and "1" or "-1")
  if cn < 0 then
    rcall("HSET", STATE, "cn:" .. tier, "0")
    cn = 0
  end
  local elapsed = now - c0
  if d > 0 and elapsed >= 1000 then
    local inst = cn * 1000 / elapsed
    local cap = num("cap:" .. tier)
    if cap > 0 then
      inst = 0.5 * cap + 0.5 * inst
    end
    rcall("HSET", STATE, "cap:" .. tier, string.format("%.17g", inst), "c0:" .. tier, nowText, "cn:" .. tier, "0")
  end
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

-- The later of two virtual times in the state hash, as its text (0 when neither is set).
local function later(a, b)
  local t = rcall("HMGET", STATE, a, b)
  local x, y = tonumber(t[1]) or 0, tonumber(t[2]) or 0
  if x >= y then
    return t[1] or "0"
  end
  return t[2] or "0"
end

-- The start order, or a resource's waiting room.
local function space(resource)
  if resource then
    local prefix = FQ .. ":r:" .. resource
    return { keys = prefix, tiers = prefix .. ":tiers", field = "r:" .. resource .. "|" }
  end
  return { keys = FQ, tiers = TIERS, field = "" }
end

-- Lists a job in its tenant's lane of a space; a tier or tenant that was idle there starts at
-- the current virtual time of its level.
local function activate(s, jobId, tier, tenant, prio)
  local seq = rcall("HINCRBY", STATE, "seq", "1")
  -- Whole numbers below 2^53 as %d: cheaper than the float formatting of a number argument.
  rcall("ZADD", s.keys .. ":lane:" .. tenant, string.format("%d", prio * PRIORITY_SPAN + seq), jobId)
  local tierSet = s.keys .. ":tier:" .. tier
  if not rcall("ZRANK", tierSet, tenant) then
    local p = later(s.field .. "p:" .. tenant, s.field .. "V:" .. tier)
    rcall("HSET", STATE, s.field .. "p:" .. tenant, p)
    rcall("ZADD", tierSet, p, tenant)
    if s.field == "" then
      local w = rcall("HGET", STATE, "w:" .. tenant) or "0"
      rcall("HSET", STATE, "we:" .. tenant, w)
      rcall("HINCRBYFLOAT", STATE, "ws:" .. tier, w)
    end
  end
  if not rcall("ZRANK", s.tiers, tier) then
    local P = later(s.field .. "P:" .. tier, s.field .. "V")
    rcall("HSET", STATE, s.field .. "P:" .. tier, P)
    rcall("ZADD", s.tiers, P, tier)
  end
end

-- The same for a job known by its id only (its facts are in META).
local function activateListed(s, jobId)
  local meta = rcall("HGET", META, jobId)
  if not meta then
    return
  end
  local f = split(meta)
  activate(s, jobId, f[1], f[2], tonumber(f[5]) or 1)
end

-- Records a job's facts (and its tier's and tenant's weights); a job new to the fair queue counts
-- as accepted and not started.
local function saveMeta(jobId, tier, tenant, queue, cost, rank, tierWeight, tenantWeight)
  local fresh = rcall("HSET", META, jobId, table.concat({ tier, tenant, queue, cost, rank, nowText }, "|"))
  rcall("HSET", STATE, "W:" .. tier, tierWeight, "w:" .. tenant, tenantWeight)
  if fresh == 1 then
    count(tier, tenant, 1)
  end
end

-- Wakes a worker blocked on a queue's marker for a listing: member "l" at score -1
-- (LISTED_MARKER in queues.ts), below BullMQ's own members, so the worker has a picker pick
-- instead of fetching from BullMQ's wait list (where nothing is until a pick moves a job there).
local function wakeForListing(queue)
  rcall("ZADD", BULL .. ":" .. queue .. ":marker", "-1", "l")
end

-- Lists a new job in the start order now, and wakes a worker blocked on its queue's marker.
-- Its BullMQ job must be parked already (a pick promotes it).
local function listNow(jobId, tier, tenant, queue, cost, rank, tierWeight, tenantWeight)
  saveMeta(jobId, tier, tenant, queue, cost, rank, tierWeight, tenantWeight)
  activate(space(nil), jobId, tier, tenant, tonumber(rank) or 1)
  wakeForListing(queue)
end
