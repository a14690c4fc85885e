--[[
  The answer cache before a job's upstream call, in one step: a stored answer, a stored 400,
  or the single-flight claim (this job leads the upstream call, or another one does).

  KEYS[1]  entry (string, JSON)
  KEYS[2]  negative entry (string, JSON)
  KEYS[3]  flight (string: the leading job's id)
  KEYS[4]  stats hash
  ARGV[1]  job id
  ARGV[2]  flight TTL in ms (how long a leader may hold its claim)
  ARGV[3]  when the job was submitted (ms): an answer stored after it was coalesced

  Returns { "hit", entry } | { "negative", entry } | { "lead" } | { "follow", leader's TTL ms }.
  Counts hits, coalesced, tokens and nano-USD saved, negative hits and misses in the stats hash.
]]
local entry = redis.call("GET", KEYS[1])
if entry then
  local ok, e = pcall(cjson.decode, entry)
  if ok and type(e) == "table" then
    local coalesced = tonumber(e.stored_at or 0) > tonumber(ARGV[3])
    redis.call("HINCRBY", KEYS[4], coalesced and "coalesced" or "hits", 1)
    local u = e.usage
    if type(u) == "table" then
      local saved = (tonumber(u.input_tokens) or 0) + (tonumber(u.output_tokens) or 0)
      if saved > 0 then
        redis.call("HINCRBY", KEYS[4], "tokens_saved", saved)
      end
      local usd = tonumber(u.cost_usd)
      if usd and usd > 0 then
        redis.call("HINCRBY", KEYS[4], "nano_usd_saved", math.floor(usd * 1e9 + 0.5))
      end
    end
    return { "hit", entry }
  end
end
local negative = redis.call("GET", KEYS[2])
if negative then
  redis.call("HINCRBY", KEYS[4], "negative_hits", 1)
  return { "negative", negative }
end
if redis.call("SET", KEYS[3], ARGV[1], "PX", tonumber(ARGV[2]), "NX") then
  redis.call("HINCRBY", KEYS[4], "misses", 1)
  return { "lead" }
end
return { "follow", redis.call("PTTL", KEYS[3]) }
