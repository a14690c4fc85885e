--[[
  fair-queue.lua's helpers and its calls' own values. The program is fair-lib.lua, this file,
  then fair-queue.lua (the ops), which Redis loads once as a function library (lua-library.ts):
  these functions are made once, not at every call. begin() (at the end) sets a call's own
  values; a pick sets its own (ARGV[7..12], its answer, its counts) before it uses them.
]]
local KEYS, ARGV, op, LATER, EXPRESS, MAIN

-- A tenant's and its tier's weights (at least 0.001), read once per script call: only saveMeta
-- writes them (enqueue, wait), and a pick calls it never (the listings of its due entries read
-- the facts saved before).
local tenantWeight, tierWeight
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

-- A pick's lock duration, lock token base, queues its process consumes, records' key prefix,
-- running TTL and status channel (ARGV[7..12]: set by the pick).
local LOCK_MS, TOKEN, SERVES, RECORD, RUN_TTL, CHANNEL
-- Per queue, read once per call: the events stream's bound when its jobs start directly, else
-- false (see "Direct starts").
local direct
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
local starts, hash, mark
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
    rcall("PUBLISH", CHANNEL .. jobId, jobId .. " running")
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

-- A pick's answer so far.
local out
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

local function nextDue()
  local first = rcall("ZRANGE", LATER, "0", "0", "WITHSCORES")
  return tonumber(first[2]) or 0
end

-- Sets a call's own values and forgets the last call's (the library's helpers outlive calls).
local function begin(keys, args)
  KEYS, ARGV, rcall = keys, args, redis.call
  op = args[1]
  setClock(args[2])
  FQ, BULL = args[3], args[4]
  STATE, TIERS, META = keys[1], keys[2], keys[3]
  LATER, EXPRESS = keys[4], keys[5]
  MAIN = space(nil)
  tenantWeight, tierWeight = {}, {}
  LOCK_MS, TOKEN, SERVES, RECORD, RUN_TTL, CHANNEL = nil, nil, nil, nil, nil, nil
  direct, starts, hash, mark, out = nil, nil, nil, nil, nil
end
