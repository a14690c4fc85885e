--[[
  The key pool: every provider key's usage in rolling windows, its calls in flight, its
  cooldown and health, shared by every worker. One call per question, atomic.

  Windows. Usage is counted in sub-buckets: 60 per minute window (fields "r:<n>", "i:<n>",
  "o:<n>" for requests, input tokens, output tokens; "mlo" is the oldest live bucket) and 144
  per day window ("d:<n>" requests; "dlo"). Running sums sit in "r", "i", "o", "d". Total
  tokens ("t", what a tpm limit counts) are input plus output: they are not stored apart (a
  window written before this was so may hold "t" fields; a reservation drops them). A bucket
  leaves the window only when all of it is older than the window (plus window_margin_ms), so
  the sum over any true rolling window never exceeds what was counted: the limiter may
  under-use a key by part of one bucket, never over-use it.

  A scope is one window hash plus one zset of slots (calls in flight: member = reservation
  id, score = the time the slot expires if its worker dies without releasing it). Every key
  has a scope per model and a key-wide one; both must have room. The key-wide scope counts only
  while a key-wide limit is in force (state field "kc": see pool-reserve.lua). Window hash fields besides
  the buckets: "cool" (cooling down until, ms), "hl:<dim>" (a limit the provider reported),
  "adj:<dim>" / "adj_until:<dim>" (usage the provider reported that we had not counted,
  charged until the provider's own reset time).

  Key state hash (one per key, kept 7 days after its last change): "disabled" (reason),
  "disabled_at", "probe_at", "ema" (call duration, ms), counters "ok", "err", "n429",
  "last_status", "last_at", "m:<model>" (last use of a model on this key), "kc" (until when the
  key-wide scope counts, ms).

  The key pool is one Lua program, these files joined in this order (lua-library.ts in
  @switchyard/queue): pool.lua (this file: the window helpers every op uses), then
  pool-reserve.lua, pool-settle.lua and pool-admin.lua (probe, enable, inspect), each made the
  body of a function. ARGV[1] names the op; each op's file runs only its own and returns, and the
  last one answers an op no file knows. Redis loads the program once as a function library
  (FUNCTION LOAD; FCALL calls it): these helpers are made once, not at every call, which is what
  an EVAL script pays (~66,000 instructions per call, 18% of a job's reserve and settle). On a
  Redis without functions (before 7.0) the same program runs as an EVAL script.
]]
-- A call's own values, set by begin() (at the end of this file) at the start of every call;
-- everything else here is made once, when Redis loads the key pool as a function library.
local KEYS, ARGV, op, now, now_text_cache

-- now as text for Redis (formatted once: see suffix below).
local function now_text()
  now_text_cache = now_text_cache or tostring(now)
  return now_text_cache
end

local DAY = 86400000
local DB = DAY / 144
-- The dimensions limits name (r t i o) and the ones stored (r i o: t is i + o).
local MIN_DIMS = { 'r', 't', 'i', 'o' }
local STORED_DIMS = { 'r', 'i', 'o' }
local STATE_TTL = 7 * DAY

local W, MB, MARGIN, cur_m, cur_d
local function set_window(window_ms, margin_ms)
  W = tonumber(window_ms)
  MB = W / 60
  MARGIN = tonumber(margin_ms)
  cur_m = math.floor(now / MB)
  cur_d = math.floor(now / DB)
end

local function num(v, default)
  return tonumber(v) or default
end

-- Head field names per dimension, made once (joining strings in the hot loops made new ones).
local HL = { r = 'hl:r', t = 'hl:t', i = 'hl:i', o = 'hl:o' }
local ADJ = { r = 'adj:r', t = 'adj:t', i = 'adj:i', o = 'adj:o' }
local ADJ_UNTIL = { r = 'adj_until:r', t = 'adj_until:t', i = 'adj_until:i', o = 'adj_until:o' }

-- A window hash's fields other than its buckets ("head": running sums, oldest buckets, cooldown,
-- reported limits, adjustments) are read once per script call and kept here; every write to one
-- of them goes through hset/hincr/hdel below, so the copy stays exact. (Reading them one HGET at
-- a time was most of the ~50 calls a reservation made.) A reservation reads the whole head with
-- one HMGET; a settlement reads only the oldest buckets ("mlo", "dlo": what trimming needs) of a
-- window whose limits it does not look at: each field of an HMGET costs ~2,500 instructions.
local REST = { 'cool', 'r', 't', 'i', 'o', 'd', 'hl:r', 'hl:t', 'hl:i', 'hl:o',
  'adj:r', 'adj:t', 'adj:i', 'adj:o', 'ht' }
-- A window hash holds its buckets (up to ~250 fields at a minute's steady use) and each call reads
-- and writes ~30 of them. Redis keeps a hash of up to 128 short fields as a listpack, where every
-- field lookup scans the whole list: with a few dozen buckets that scanning was ~30% of the key
-- pool's Redis time (callgrind). One value longer than Redis's listpack bound (64 bytes by
-- default, hash-max-listpack-value) makes Redis keep the hash as a hash table from then on.
local HT = 'kept as a hash table: this value is longer than hash-max-listpack-value (64 bytes)'
local heads -- per call (begin)
local function fill_rest(c, v, o)
  c.cool, c.r, c.t, c.i, c.o, c.d = v[o + 1] or nil, v[o + 2] or nil, v[o + 3] or nil, v[o + 4] or nil,
    v[o + 5] or nil, v[o + 6] or nil
  c['hl:r'], c['hl:t'], c['hl:i'], c['hl:o'] = v[o + 7] or nil, v[o + 8] or nil, v[o + 9] or nil, v[o + 10] or nil
  c['adj:r'], c['adj:t'], c['adj:i'], c['adj:o'] = v[o + 11] or nil, v[o + 12] or nil, v[o + 13] or nil,
    v[o + 14] or nil
  c.ht = v[o + 15] or nil
  c['.all'] = true
end
-- The head of window h: its oldest buckets, and every other head field too when `all` (or when
-- they were read already). The field ".all" says the whole head is here.
local function load(h, all)
  local c = heads[h]
  if c and (not all or c['.all']) then return c end
  if not c then
    local v = all and redis.call('HMGET', h, 'mlo', 'dlo', unpack(REST)) or redis.call('HMGET', h, 'mlo', 'dlo')
    -- One constructor naming every field sizes the table once (absent fields stay nil); filling
    -- it a field at a time made Lua grow and rehash it several times per window.
    c = { mlo = v[1] or nil, dlo = v[2] or nil, cool = nil, r = nil, t = nil, i = nil, o = nil, d = nil,
      ['hl:r'] = nil, ['hl:t'] = nil, ['hl:i'] = nil, ['hl:o'] = nil, ['adj:r'] = nil, ['adj:t'] = nil,
      ['adj:i'] = nil, ['adj:o'] = nil, ht = nil, ['adj_until:r'] = nil, ['adj_until:t'] = nil,
      ['adj_until:i'] = nil, ['adj_until:o'] = nil, ['.all'] = nil }
    heads[h] = c
    if all then fill_rest(c, v, 2) end
  else
    -- Values this call wrote meanwhile went to Redis too: what is read back is the same.
    fill_rest(c, redis.call('HMGET', h, unpack(REST)), 0)
  end
  return c
end
local function head(h) return heads[h] or load(h, false) end
local function full(h) return load(h, true) end
-- The cached table that holds head field f of window h, read when first needed.
local function of(h, f)
  local c = heads[h]
  if c and (c['.all'] or f == 'mlo' or f == 'dlo') then return c end
  return load(h, f ~= 'mlo' and f ~= 'dlo')
end
local function hget(h, f) return of(h, f)[f] end
-- A field read apart from the head, once per call (an adjustment's end: only read when the
-- adjustment exists, which is rare).
local function hextra(h, f)
  local c = head(h)
  local v = c[f]
  if v == nil then
    v = tonumber(redis.call('HGET', h, f)) or false
    c[f] = v
  end
  return v or nil
end
-- A numeric head field as a number (nil when absent); parsed once per call (tonumber is a strtod).
local function hnum(h, f)
  -- of(h, f) inlined: hnum runs ~40 times per call, and each Lua function call costs.
  local c = heads[h]
  if not (c and (c['.all'] or f == 'mlo' or f == 'dlo')) then c = load(h, f ~= 'mlo' and f ~= 'dlo') end
  local v = c[f]
  if type(v) == 'string' then
    v = tonumber(v)
    c[f] = v
  end
  return v
end
local function hset(h, f, v)
  redis.call('HSET', h, f, v)
  head(h)[f] = v
end
local function hincr(h, f, amount, text)
  local n = redis.call('HINCRBY', h, f, text or amount)
  head(h)[f] = n
  return n
end

-- A bucket's field suffix (":<n>"). Every number Redis or Lua turns into text costs a float
-- formatting ("%.17g" or "%.14g": ~4,500 instructions, as much as a whole HINCRBY); the few
-- bucket numbers a call uses are formatted once, and amounts go to Redis as the text they came as.
local suffix_text -- per call (begin)
local function suffix(idx)
  local s = suffix_text[idx]
  if not s then
    s = ':' .. string.format('%d', idx)
    suffix_text[idx] = s
  end
  return s
end

-- Drops the buckets that have left the window and takes them off the running sums.
local function trim_one(h, dims, lof, bucket, span, reach)
  local cutoff = math.floor((now - span - MARGIN) / bucket)
  local lo = hnum(h, lof)
  if not lo or lo >= cutoff then return end
  for idx = lo, math.min(cutoff - 1, lo + reach) do
    for _, d in ipairs(dims) do
      local f = d .. suffix(idx)
      local v = tonumber(redis.call('HGET', h, f))
      if v then
        hincr(h, d, -v)
        redis.call('HDEL', h, f)
      end
    end
  end
  hset(h, lof, cutoff)
end

local function trim(h)
  trim_one(h, STORED_DIMS, 'mlo', MB, W, 70)
  trim_one(h, { 'd' }, 'dlo', DB, DAY, 150)
end

-- A window written when total tokens were stored apart ("t" and "t:<n>", before input plus
-- output stood for them): those fields go, once (the head was read whole: "t" is in it).
local function drop_stored_total(h)
  if hget(h, 't') == nil then return end
  local gone = { 't' }
  for _, f in ipairs(redis.call('HKEYS', h)) do
    if string.sub(f, 1, 2) == 't:' then gone[#gone + 1] = f end
  end
  redis.call('HDEL', h, unpack(gone))
  head(h).t = nil
end

-- What the window counts of dim d: total tokens are input plus output.
local function counted_of(h, d)
  if d == 't' then return num(hnum(h, 'i'), 0) + num(hnum(h, 'o'), 0) end
  return num(hnum(h, d), 0)
end

-- When will `need` of dim d have left the window? (oldest buckets first)
local function free_at(h, d, need)
  local day = d == 'd'
  local lo = num(hnum(h, day and 'dlo' or 'mlo'), day and cur_d or cur_m)
  local last = day and cur_d or cur_m
  local acc = 0
  for idx = lo, last do
    if d == 't' then
      local v = redis.call('HMGET', h, 'i' .. suffix(idx), 'o' .. suffix(idx))
      acc = acc + num(v[1], 0) + num(v[2], 0)
    else
      acc = acc + num(redis.call('HGET', h, d .. suffix(idx)), 0)
    end
    if acc >= need then
      if day then return (idx + 1) * DB + DAY + MARGIN end
      return (idx + 1) * MB + W + MARGIN
    end
  end
  return now + (day and DAY or W) + MARGIN
end

-- The limit in force: the configured one, or the provider's reported one when that is lower.
local function effective(h, d, configured)
  local hl = hnum(h, HL[d])
  if hl and hl > 0 and (configured == 0 or hl < configured) then return hl end
  return configured
end

-- Usage the provider reported beyond ours, while its reset time has not passed.
local function adj(h, d)
  local a = hnum(h, ADJ[d])
  if not a then return 0 end
  if num(hextra(h, ADJ_UNTIL[d]), 0) <= now then
    redis.call('HDEL', h, ADJ[d], ADJ_UNTIL[d])
    local c = head(h)
    c[ADJ[d]], c[ADJ_UNTIL[d]] = nil, nil
    return 0
  end
  return a
end

local function add(h, d, idx, amount, text)
  if amount == 0 then return end
  local f = d .. suffix(idx)
  local day = d == 'd'
  local lof = day and 'dlo' or 'mlo'
  local lo = hnum(h, lof)
  if not lo then
    lo = math.floor((now - (day and DAY or W) - MARGIN) / (day and DB or MB))
    hset(h, lof, lo)
  end
  if idx < lo then return end -- that bucket has left the window: nothing to correct
  if amount < 0 then
    local v = num(redis.call('HGET', h, f), 0)
    if -amount > v then amount, text = -v, nil end
    if amount == 0 then return end
  end
  local n = redis.call('HINCRBY', h, f, text or amount)
  hincr(h, d, amount, text)
  -- True when this write opened the bucket.
  return n == amount
end

local ttl_text -- per call (begin)
local function touch(h)
  ttl_text = ttl_text or tostring(DAY + DB + W + MARGIN)
  redis.call('PEXPIRE', h, ttl_text)
end

-- Sets a call's own values and forgets the last call's (the library's helpers outlive calls).
local function begin(keys, args)
  KEYS, ARGV = keys, args
  op = args[1]
  now = tonumber(args[2])
  if not now then
    local t = redis.call('TIME')
    now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  end
  now_text_cache = args[2] ~= '' and args[2] or nil
  heads, suffix_text, ttl_text = {}, {}, nil
  W, MB, MARGIN, cur_m, cur_d = nil, nil, nil, nil, nil
end
