--[[
  Moves a job record to a new status, unless it is already final.

  KEYS[1]  job record hash
  KEYS[2]  webhook outbox stream (terminal events to deliver)
  KEYS[3]  set of tenant ids that have webhook endpoints
  ARGV[1]  new status (queued | running | succeeded | failed | cancelled | expired)
  ARGV[2]  TTL in ms to set on the record (0 leaves the TTL alone)
  ARGV[3]  prefix of the job's pub/sub channel (+ job id) that hears "<jobId> <status>"
  ARGV[4]  job id (for the message)
  ARGV[5]  outbox cap (MAXLEN ~): a safety bound; entries are deleted once fanned out
  ARGV[6]  the job's real usage, for a final status: "<input>|<output>|<cached input>|<nano-USD>|
           <provider/model>" ("" = none: nothing was spent)
  ARGV[7..] field, value pairs to HSET with the status; an empty value deletes the field

  Returns { applied (1|0|-1), status after the call, cancel_requested ("1" or ""), attempt_log }
    (attempt_log: the job's attempt history as stored before this call, "" when none)
    -1: no such record (expired or never written); 0: already final, nothing changed.
  Final statuses never change again, so a late worker can never overwrite a cancel.
  A batch line's final status counts in its batch (record field batch: the batch hash).
  The move to a final status settles the usage reserved at admission (create-job.lua) with the
  real usage, once: the day's and month's counters named in the record (q_d, q_m) get the
  difference, and the day's per-model counters ("m|<provider/model>|r|i|o|ci|c") the real usage.
  The move to a final status and its webhook event are written together: an event is never
  lost between the two, whichever process (API or worker) ends the job.
]]
local final = ARGV[1] == "succeeded" or ARGV[1] == "failed" or ARGV[1] == "cancelled" or ARGV[1] == "expired"
-- What a final status settles (usage, batch, webhook) is read only for one (each HMGET field
-- costs ~2,500 instructions; the running mark of every job needs only the first three).
local current = final
    and redis.call("HMGET", KEYS[1], "status", "cancel_requested", "attempt_log", "tenant", "webhook_url",
      "q_d", "q_m", "q_t", "q_c", "sync", "batch")
  or redis.call("HMGET", KEYS[1], "status", "cancel_requested", "attempt_log")
local status = current[1]
if not status then
  return { -1, "", "", "" }
end
local cancel = current[2] or ""
local log = current[3] or ""
if status == "succeeded" or status == "failed" or status == "cancelled" or status == "expired" then
  return { 0, status, cancel, log }
end
local fields = { "status", ARGV[1] }
for i = 7, #ARGV, 2 do
  if ARGV[i + 1] == "" then
    redis.call("HDEL", KEYS[1], ARGV[i])
  else
    fields[#fields + 1] = ARGV[i]
    fields[#fields + 1] = ARGV[i + 1]
  end
end
redis.call("HSET", KEYS[1], unpack(fields))
local ttl = tonumber(ARGV[2])
if ttl and ttl > 0 then
  redis.call("PEXPIRE", KEYS[1], ARGV[2])
end
if ARGV[1] ~= status then
  redis.call("PUBLISH", ARGV[3] .. ARGV[4], ARGV[4] .. " " .. ARGV[1])
end
if final and current[6] then
  local a, b, c, d, label = string.match(ARGV[6], "^([^|]*)|([^|]*)|([^|]*)|([^|]*)|(.*)$")
  local input, output, cached, nano = tonumber(a) or 0, tonumber(b) or 0, tonumber(c) or 0, tonumber(d) or 0
  -- Amounts go to Redis as the text they came as: Redis turns a Lua number argument into text with
  -- a float formatting that costs about as much as the HINCRBY itself (callgrind).
  a, b, c, d = input ~= 0 and a or "0", output ~= 0 and b or "0", cached ~= 0 and c or "0", nano ~= 0 and d or "0"
  -- Counters live far longer than jobs; one gone by hand is not recreated without its TTL.
  local keys = {}
  for _, k in ipairs({ current[6], current[7] }) do
    if redis.call("EXISTS", k) == 1 then
      keys[#keys + 1] = k
    end
  end
  -- What the job used less what it reserved at admission, as %d text (whole numbers), formatted
  -- once for both counters.
  local dc = string.format("%d", nano - (tonumber(current[9]) or 0))
  for _, k in ipairs(keys) do
    -- The month keeps only what its quota reads (USD); the day keeps the whole picture.
    redis.call("HINCRBY", k, "c", dc)
    if k == current[6] then
      redis.call("HINCRBY", k, "t", string.format("%d", input + output - (tonumber(current[8]) or 0)))
    end
  end
  -- The real usage is kept per model only: the day's totals are their sums (usage-service.ts),
  -- so each job's usage costs four or five HINCRBYs, not eight or nine. A job that spent
  -- something always names its model (job-store.ts, Spent).
  if label and label ~= "" and keys[1] == current[6] then
    local k = current[6]
    redis.call("HINCRBY", k, "m|" .. label .. "|r", "1")
    redis.call("HINCRBY", k, "m|" .. label .. "|i", a)
    redis.call("HINCRBY", k, "m|" .. label .. "|o", b)
    if cached > 0 then
      redis.call("HINCRBY", k, "m|" .. label .. "|ci", c)
    end
    redis.call("HINCRBY", k, "m|" .. label .. "|c", d)
  end
end
-- A batch line's end counts in its batch, once (final statuses never change again).
if final and current[11] and redis.call("EXISTS", current[11]) == 1 then
  redis.call("HINCRBY", current[11], ARGV[1] == "succeeded" and "completed" or "failed", "1")
end
-- A job of the drop-in endpoints (sync) goes to the tenant's endpoints only if it named a URL.
if final and (current[5] or (current[10] ~= "1" and redis.call("SISMEMBER", KEYS[3], current[4] or "") == 1)) then
  redis.call("XADD", KEYS[2], "MAXLEN", "~", ARGV[5], "*", "job", ARGV[4], "status", ARGV[1])
end
return { 1, ARGV[1], cancel, log }
