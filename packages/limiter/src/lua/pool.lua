--[[
  The key pool: every provider key's usage in rolling windows, its calls in flight, its
  cooldown and health, shared by every worker. One call per question, atomic.

  Windows. Usage is counted in sub-buckets: 60 per minute window (fields "r:<n>", "i:<n>",
  "o:<n>" for requests, input tokens, output tokens; "mlo" is the oldest live bucket) and 144
  per day window ("d:<n>" requests; "dlo"). Running sums sit in "r", "i", "o", "d". Total
  tokens ("t", what a tpm limit counts) are input plus output: they are not stored apart (a
  window written before this was so may hold "t" fields; a reservation drops them). A bucket leaves the window only when all of it is older than the
  window (plus window_margin_ms), so the sum over any true rolling window never exceeds what
  was counted: the limiter may under-use a key by part of one bucket, never over-use it.

  A scope is one window hash plus one zset of slots (calls in flight: member = reservation
  id, score = the time the slot expires if its worker dies without releasing it). Every key
  has a key-wide scope and one per model; both must have room. Window hash fields besides
  the buckets: "cool" (cooling down until, ms), "hl:<dim>" (a limit the provider reported),
  "adj:<dim>" / "adj_until:<dim>" (usage the provider reported that we had not counted,
  charged until the provider's own reset time).

  Key state hash (one per key, kept 7 days after its last change): "disabled" (reason),
  "disabled_at", "probe_at", "ema" (call duration, ms), counters "ok", "err", "n429",
  "last_status", "last_at", "m:<model>" (last use of a model on this key).

  Ops and their KEYS/ARGV:

  reserve   KEYS: book hash, share window hash, then per candidate key 5 keys:
                  state, key window, key slots, model window, model slots
            ARGV: op, now ("" = Redis TIME), reservation id, model, tokens_in, tokens_out,
                  slot_ttl_ms, window_ms, margin_ms, returning (0|1),
                  share rpm, tpm, itpm, otpm (0 = no share), n_keys,
                  then per key 12 limits: key-wide rpm tpm itpm otpm rpd max_concurrency,
                  per-model rpm tpm itpm otpm rpd max_concurrency (0 = unlimited)
            Returns {1, key index (1-based), minute bucket, day bucket, now}
                 or {0, come back at (ms), reason, now}
                    reason: limited | cooling | share | disabled | too_large

  settle    KEYS: state, key window, key slots, model window, model slots, share window, book
            ARGV: op, now, reservation id, minute bucket, day bucket, reserved in, reserved out,
                  used in (-1 unknown), used out (-1 unknown), outcome, cool until (ms, 0 none),
                  cool scope (key|model), duration ms (-1 unknown), reason, probe_interval_ms,
                  window_ms, margin_ms, header scope (key|model), default reset ms, then for
                  r t i o: configured limit, reported limit (-1), reported remaining (-1),
                  reported reset ms (-1)
            outcome: ok | error | rate_limited (refund tokens, cool down) |
                     disabled (refund tokens, take the key out with the reason)
            Returns {cooling until, disabled (0|1)}

  probe     KEYS: state hash of each key; ARGV: op, now, probe_interval_ms
            Claims the disabled keys whose probe is due. Returns their 1-based indexes.

  enable    KEYS: state hash; ARGV: op, now. Puts a key back in the pool.

  inspect   KEYS: window hash, slots zset; ARGV: op, now, window_ms, margin_ms
            Returns {r, t, i, o, d, in flight, cool, hl:r, hl:t, hl:i, hl:o} (r..o include
            live adjustments)
]]
local op = ARGV[1]
local now = tonumber(ARGV[2])
if not now then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- now as text for Redis (formatted once: see suffix below).
local now_text_cache = ARGV[2] ~= '' and ARGV[2] or nil
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
local heads = {}
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
local suffix_text = {}
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
  local hl = hnum(h, 'hl:' .. d)
  if hl and hl > 0 and (configured == 0 or hl < configured) then return hl end
  return configured
end

-- Usage the provider reported beyond ours, while its reset time has not passed.
local function adj(h, d)
  local a = hnum(h, 'adj:' .. d)
  if not a then return 0 end
  if num(hextra(h, 'adj_until:' .. d), 0) <= now then
    redis.call('HDEL', h, 'adj:' .. d, 'adj_until:' .. d)
    local c = head(h)
    c['adj:' .. d], c['adj_until:' .. d] = nil, nil
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

local ttl_text
local function touch(h)
  ttl_text = ttl_text or tostring(DAY + DB + W + MARGIN)
  redis.call('PEXPIRE', h, ttl_text)
end

if op == 'reserve' then
  local res_id, model = ARGV[3], ARGV[4]
  local tin, tout = tonumber(ARGV[5]), tonumber(ARGV[6])
  local slot_ttl = tonumber(ARGV[7])
  set_window(ARGV[8], ARGV[9])
  local returning = ARGV[10] == '1'
  local share = { tonumber(ARGV[11]), tonumber(ARGV[12]), tonumber(ARGV[13]), tonumber(ARGV[14]) }
  local n = tonumber(ARGV[15])
  local costs = { 1, tin + tout, tin, tout, 1 }
  local names = { 'r', 't', 'i', 'o', 'd' }
  local book, share_h = KEYS[1], KEYS[2]

  -- The tier's or tenant's share of the pool, when it has one.
  local share_on = share[1] + share[2] + share[3] + share[4] > 0
  if share_on then
    full(share_h)
    drop_stored_total(share_h)
    trim(share_h)
    local free, spacing, blocked = 0, 2, false
    for j = 1, 4 do
      local L = share[j]
      if L > 0 then
        local used = counted_of(share_h, names[j])
        if costs[j] > L then return { 0, 0, 'too_large', now } end
        if used + costs[j] > L then
          blocked = true
          free = math.max(free, free_at(share_h, names[j], used + costs[j] - L))
        end
        spacing = math.max(spacing, costs[j] * W / L)
      end
    end
    if blocked then
      local at = math.max(free, now)
      if not returning then
        at = math.max(at, num(redis.call('HGET', share_h, 'book'), 0))
        redis.call('HSET', share_h, 'book', math.floor(at + spacing))
        touch(share_h)
      end
      return { 0, math.floor(at), 'share', now }
    end
  end

  local best, best_head, best_busy = nil, -1, 0
  local last_use = {}
  local pool_free, usable, cooling_only, impossible_all = nil, 0, true, true
  local ema_sum, conc_sum, conc_keys, conc_open = 0, 0, 0, false
  local sums = { 0, 0, 0, 0 }
  local open = { false, false, false, false }
  local probe_at = nil
  for k = 1, n do
    local base = 2 + (k - 1) * 5
    local state = KEYS[base + 1]
    local scopes = { { KEYS[base + 2], KEYS[base + 3], 0 }, { KEYS[base + 4], KEYS[base + 5], 6 } }
    local lbase = 15 + (k - 1) * 12
    local st = redis.call('HMGET', state, 'disabled', 'probe_at', 'ema', 'm:' .. model)
    last_use[k] = num(st[4], 0)
    if st[1] then
      local p = num(st[2], now)
      if not probe_at or p < probe_at then probe_at = p end
    else
      usable = usable + 1
      local ema = num(st[3], 1000)
      local fit, head, free, impossible, cooling = true, 1, 0, false, false
      local eff = { 0, 0, 0, 0 }
      local conc_k = 0
      for _, sc in ipairs(scopes) do
        local h, z, off = sc[1], sc[2], sc[3]
        full(h) -- its limits are read below: the whole head in one HMGET
        drop_stored_total(h)
        trim(h)
        local cool = num(hnum(h, 'cool'), 0)
        if cool > now then
          fit, cooling = false, true
          free = math.max(free, cool)
        end
        for j = 1, 5 do
          local L = tonumber(ARGV[lbase + off + j])
          if j <= 4 then L = effective(h, names[j], L) end
          if L > 0 then
            if j <= 4 and (eff[j] == 0 or L < eff[j]) then eff[j] = L end
            if costs[j] > L then
              impossible = true
            else
              local counted = counted_of(h, names[j])
              local extra = j <= 4 and adj(h, names[j]) or 0
              local used = counted + extra
              if used + costs[j] > L then
                fit = false
                if counted + costs[j] > L then
                  free = math.max(free, free_at(h, names[j], counted + costs[j] - L))
                else
                  free = math.max(free, num(hextra(h, 'adj_until:' .. names[j]), now))
                end
              elseif (L - used - costs[j]) / L < head then
                head = (L - used - costs[j]) / L
              end
            end
          end
        end
        local conc = tonumber(ARGV[lbase + off + 6])
        redis.call('ZREMRANGEBYSCORE', z, '-inf', now_text())
        if conc > 0 then
          if conc_k == 0 or conc < conc_k then conc_k = conc end
          local busy = redis.call('ZCARD', z)
          if busy >= conc then
            fit = false
            free = math.max(free, now + math.max(20, math.floor(ema / conc)))
          elseif (conc - busy - 1) / conc < head then
            head = (conc - busy - 1) / conc
          end
        end
      end
      if not impossible then
        impossible_all = false
        for j = 1, 4 do
          if eff[j] == 0 then open[j] = true else sums[j] = sums[j] + eff[j] end
        end
        if conc_k == 0 then
          conc_open = true
        else
          conc_sum, ema_sum, conc_keys = conc_sum + conc_k, ema_sum + ema, conc_keys + 1
        end
        if fit then
          -- Calls in flight break ties between keys; with one key there is nothing to break.
          local busy = n > 1 and redis.call('ZCARD', KEYS[base + 3]) or 0
          if head > best_head or (head == best_head and busy < best_busy) then
            best, best_head, best_busy = k, head, busy
          end
        else
          if not cooling then cooling_only = false end
          if not pool_free or free < pool_free then pool_free = free end
        end
      end
    end
  end

  if best then
    local base = 2 + (best - 1) * 5
    local targets = { KEYS[base + 2], KEYS[base + 4] }
    if share_on then table.insert(targets, share_h) end
    for _, h in ipairs(targets) do
      if not hget(h, 'ht') then hset(h, 'ht', HT) end
      -- A window's TTL (a day and more) is renewed with the first request of each second.
      if add(h, 'r', cur_m, 1, '1') then touch(h) end
      add(h, 'i', cur_m, tin, ARGV[5])
      add(h, 'o', cur_m, tout, ARGV[6])
      if h ~= share_h then add(h, 'd', cur_d, 1, '1') end
    end
    local slot_until, slot_ttl_text = tostring(now + slot_ttl), tostring(slot_ttl + W)
    for _, z in ipairs({ KEYS[base + 3], KEYS[base + 5] }) do
      redis.call('ZADD', z, slot_until, res_id)
      redis.call('PEXPIRE', z, slot_ttl_text)
    end
    -- The key's last use of the model (for GET /admin/keys), at most once a second.
    if now - last_use[best] >= 1000 then
      local state = KEYS[base + 1]
      redis.call('HSET', state, 'm:' .. model, now_text())
      redis.call('PEXPIRE', state, STATE_TTL)
    end
    return { 1, best, cur_m, cur_d, now }
  end

  if usable == 0 then return { 0, probe_at or now, 'disabled', now } end
  if impossible_all then return { 0, 0, 'too_large', now } end

  -- No key has room: give the job an appointment. Appointments are spaced by what one job
  -- costs the pool, so waiting jobs come back one by one as capacity frees, not all at once.
  -- Token costs are estimates (max_tokens is an upper bound): scale them by how much of its
  -- reservation a call has really used lately ("fill"), so appointments follow real use.
  local fill = num(redis.call('HGET', book, 'fill'), 1)
  local spacing = 2
  for j = 1, 4 do
    local c = j == 1 and costs[j] or costs[j] * fill
    if not open[j] and sums[j] > 0 then spacing = math.max(spacing, c * W / sums[j]) end
  end
  if not conc_open and conc_sum > 0 then spacing = math.max(spacing, ema_sum / conc_keys / conc_sum) end
  -- Jobs back from an appointment that still do not fit queue on their own, shorter line
  -- ("front"), ahead of the main one ("at"); both are spaced, so no two share a moment.
  local at = math.max(pool_free or now, now)
  local line = returning and 'front' or 'at'
  at = math.max(at, num(redis.call('HGET', book, line), 0))
  redis.call('HSET', book, line, math.floor(at + spacing))
  local ttl = math.floor(at + spacing - now) + W
  if redis.call('PTTL', book) < ttl then redis.call('PEXPIRE', book, ttl) end
  return { 0, math.floor(at), cooling_only and 'cooling' or 'limited', now }
end

if op == 'settle' then
  local state, kw, ks, mw, ms, share_h, book = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7]
  local res_id = ARGV[3]
  local idx_m, idx_d = tonumber(ARGV[4]), tonumber(ARGV[5])
  local rin, rout = tonumber(ARGV[6]), tonumber(ARGV[7])
  local uin, uout = tonumber(ARGV[8]), tonumber(ARGV[9])
  local outcome = ARGV[10]
  local cool_until, cool_scope = tonumber(ARGV[11]), ARGV[12]
  local duration, reason, probe_interval = tonumber(ARGV[13]), ARGV[14], tonumber(ARGV[15])
  set_window(ARGV[16], ARGV[17])
  local hdr_scope = ARGV[18]
  local default_reset = tonumber(ARGV[19])

  redis.call('ZREM', ks, res_id)
  redis.call('ZREM', ms, res_id)
  -- The window whose limits the provider's headers correct is read whole (one HMGET); of the
  -- others only what trimming needs. A missing hash stays missing; the share window is looked at
  -- only when the job had a share (without one, KEYS[6] names no window).
  local hh = hdr_scope == 'model' and mw or kw
  full(hh)
  local windows = { kw, mw }
  if redis.call('EXISTS', share_h) == 1 then windows[3] = share_h end
  for _, h in ipairs(windows) do trim(h) end

  local din, dout = 0, 0
  if uin >= 0 and uout >= 0 then
    din, dout = uin - rin, uout - rout
    if rin + rout > 0 then
      local fill = num(redis.call('HGET', book, 'fill'), 1)
      fill = fill * 0.9 + 0.1 * math.min(2, (uin + uout) / (rin + rout))
      redis.call('HSET', book, 'fill', tostring(math.max(0.05, fill)))
      if redis.call('PTTL', book) < 10 * W then redis.call('PEXPIRE', book, 10 * W) end
    end
  elseif outcome == 'rate_limited' or outcome == 'disabled' then
    din, dout = -rin, -rout -- refused upstream: no tokens were spent (the request still counts)
  end
  local din_text, dout_text = tostring(din), tostring(dout)
  for k, h in ipairs(windows) do
    -- (the share window exists: checked above)
    if k == 3 or redis.call('EXISTS', h) == 1 then
      add(h, 'i', idx_m, din, din_text)
      add(h, 'o', idx_m, dout, dout_text)
    end
  end

  -- A counter at 1 means this call may have created the state hash: it gets its TTL then (the
  -- reservations renew it at least once a second while the key is used).
  local counted = redis.call('HINCRBY', state, outcome == 'ok' and 'ok' or 'err', '1')
  if outcome == 'ok' and duration >= 0 then
    local ema = num(redis.call('HGET', state, 'ema'), duration)
    redis.call('HSET', state, 'last_status', outcome, 'last_at', now_text(),
      'ema', string.format('%d', math.floor(ema * 0.8 + duration * 0.2)))
  else
    redis.call('HSET', state, 'last_status', outcome, 'last_at', now_text())
  end

  local cooling = 0
  if outcome == 'rate_limited' then
    redis.call('HINCRBY', state, 'n429', '1')
    local h = cool_scope == 'model' and mw or kw
    cooling = math.max(num(hnum(h, 'cool'), 0), cool_until)
    hset(h, 'cool', cooling)
    touch(h)
  end
  local disabled = 0
  if outcome == 'disabled' then
    disabled = 1
    redis.call('HSET', state, 'disabled', reason, 'disabled_at', now, 'probe_at', now + probe_interval)
  end

  -- What the provider reports corrects our view: a lower limit is learned, and usage we did
  -- not see (another client on the same key) is charged to the current bucket.
  -- The extra usage is kept apart and dropped at the provider's reset time, not a window later.
  local wrote = false
  for j, d in ipairs(MIN_DIMS) do
    local at = 19 + (j - 1) * 4
    local configured = tonumber(ARGV[at + 1])
    local rlimit = tonumber(ARGV[at + 2])
    local rremaining = tonumber(ARGV[at + 3])
    local rreset = tonumber(ARGV[at + 4])
    if rlimit > 0 and hnum(hh, 'hl:' .. d) ~= rlimit then
      hset(hh, 'hl:' .. d, rlimit)
      wrote = true
    end
    local L = effective(hh, d, configured)
    if L > 0 and rremaining >= 0 then
      local extra = adj(hh, d)
      local ours = L - counted_of(hh, d) - extra
      if rremaining < ours then
        local until_ms = now + (rreset >= 0 and rreset or default_reset)
        hset(hh, 'adj:' .. d, extra + ours - rremaining)
        hset(hh, 'adj_until:' .. d, until_ms)
        wrote = true
      end
    end
  end
  -- A window this call may have created gets its TTL; one in use has it (renewed by the
  -- reservations, with the first of each second).
  if wrote then touch(hh) end
  if counted == 1 then redis.call('PEXPIRE', state, STATE_TTL) end
  return { cooling, disabled }
end

if op == 'probe' then
  local interval = tonumber(ARGV[3])
  local due = {}
  for k, state in ipairs(KEYS) do
    if redis.call('HEXISTS', state, 'disabled') == 1 and num(redis.call('HGET', state, 'probe_at'), 0) <= now then
      redis.call('HSET', state, 'probe_at', now + interval)
      table.insert(due, k)
    end
  end
  return due
end

if op == 'enable' then
  redis.call('HDEL', KEYS[1], 'disabled', 'disabled_at', 'probe_at')
  redis.call('HSET', KEYS[1], 'enabled_at', now)
  redis.call('PEXPIRE', KEYS[1], STATE_TTL)
  return 1
end

if op == 'inspect' then
  set_window(ARGV[3], ARGV[4])
  local h, z = KEYS[1], KEYS[2]
  full(h)
  trim(h)
  redis.call('ZREMRANGEBYSCORE', z, '-inf', now)
  local out = {}
  for _, d in ipairs(MIN_DIMS) do table.insert(out, counted_of(h, d) + adj(h, d)) end
  table.insert(out, num(hnum(h, 'd'), 0))
  table.insert(out, redis.call('ZCARD', z))
  table.insert(out, num(hnum(h, 'cool'), 0))
  for _, d in ipairs(MIN_DIMS) do table.insert(out, num(hnum(h, 'hl:' .. d), 0)) end
  return out
end

return redis.error_reply('unknown op ' .. tostring(op))
