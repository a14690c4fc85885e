--[[
  The key pool's reservation (pool.lua's helpers come first in the same program).

  reserve   KEYS: book hash, share window hash, then per candidate key 5 keys:
                  state, key window, key slots, model window, model slots
            ARGV: op, now ("" = Redis TIME), then one MessagePack array (see below):
                  reservation id, model, tokens_in, tokens_out,
                  slot_ttl_ms, window_ms, margin_ms, returning (0|1),
                  share rpm, tpm, itpm, otpm (0 = no share), n_keys,
                  then per key 12 limits: key-wide rpm tpm itpm otpm rpd max_concurrency,
                  per-model rpm tpm itpm otpm rpd max_concurrency (0 = unlimited)
            Returns {1, key index (1-based), minute bucket, day bucket, now, key-wide counted (0|1)}
                 or {0, come back at (ms), reason, now}
                    reason: limited | cooling | share | disabled | too_large
  reserve_many  Several reservations in a row: KEYS are each one's keys as above, one after the
            other; ARGV: op, now, then one MessagePack array of each one's array as above.
            Returns an array of each one's answer, in order.

  The key-wide scope (window and slots) counts only while a key-wide limit is in force: usage is
  always counted per model, and a key used without key-wide limits (limits per model, or learned
  from the provider's headers, or none) would otherwise count every call twice. "kc" in the key's
  state hash says until when the key-wide scope counts: a reservation whose configuration gives
  the key a key-wide limit renews it (two windows ahead), and one that finds it passed or absent
  first rebuilds the key-wide window and slots from the per-model ones (in the loop below), so the
  key-wide counts are exact from the first call on, after a restart or when a configuration
  reload adds the limit. While "kc" lies ahead every reservation counts key-wide, whatever its
  own configuration says: processes that reload at different moments still count the same.

  The reservation's and the settlement's numbers come as one MessagePack array (cmsgpack), not as
  ARGV: Redis makes a string of every ARGV entry (~900 instructions each, ~60 per job) and each
  tonumber of one is a strtod; unpacked, they arrive as numbers.
]]

if op ~= 'reserve' and op ~= 'reserve_many' then return nil end -- not this file's op

-- One reservation: its keys are KEYS[kb + 1 ..], its values the array a (see above).
local function reserve_one(kb, a)
  local res_id, model = a[1], a[2]
  local tin, tout = a[3], a[4]
  -- As text for the HINCRBYs ('%d': a Lua number handed to Redis is formatted with '%.17g').
  local tin_text, tout_text = string.format('%d', tin), string.format('%d', tout)
  local slot_ttl = a[5]
  set_window(a[6], a[7])
  local returning = a[8] == 1
  local share = { a[9], a[10], a[11], a[12] }
  local n = a[13]
  local costs = { 1, tin + tout, tin, tout, 1 }
  local names = { 'r', 't', 'i', 'o', 'd' }
  local book, share_h = KEYS[kb + 1], KEYS[kb + 2]

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
  local last_use, key_on = {}, {}
  local pool_free, usable, cooling_only, impossible_all = nil, 0, true, true
  local ema_sum, conc_sum, conc_keys, conc_open = 0, 0, 0, false
  local sums = { 0, 0, 0, 0 }
  local open = { false, false, false, false }
  local probe_at = nil
  for k = 1, n do
    local base = kb + 2 + (k - 1) * 5
    local state = KEYS[base + 1]
    local lbase = 13 + (k - 1) * 12
    local st = redis.call('HMGET', state, 'disabled', 'probe_at', 'ema', 'm:' .. model, 'kc')
    last_use[k] = num(st[4], 0)
    if st[1] then
      local p = num(st[2], now)
      if not probe_at or p < probe_at then probe_at = p end
    else
      usable = usable + 1
      -- Does the key-wide scope count (see the top of this file)? ("0": no such limit.)
      local key_limited = false
      for j = lbase + 1, lbase + 6 do
        if a[j] ~= 0 then key_limited = true end
      end
      local kc = num(st[5], 0)
      if key_limited then
        if kc <= now then
          -- Rebuilds the key-wide window and slots from the per-model ones (the models the state
          -- hash names: each one used on the key within the state's TTL), bucket by bucket. (Written
          -- out here, not as a function: every function of the script is made again at every call.)
          local kw, ks = KEYS[base + 2], KEYS[base + 3]
          redis.call('DEL', kw, ks)
          heads[kw] = nil
          local cut_m = math.floor((now - W - MARGIN) / MB)
          local cut_d = math.floor((now - DAY - MARGIN) / DB)
          local totals = { r = 0, i = 0, o = 0, d = 0 }
          local buckets, order, slots = {}, {}, {}
          for _, f in ipairs(redis.call('HKEYS', state)) do
            if string.sub(f, 1, 2) == 'm:' then
              local m = string.sub(f, 3)
              local mw = kw .. ':' .. m
              full(mw)
              trim(mw)
              local all = redis.call('HGETALL', mw)
              for x = 1, #all, 2 do
                local name = all[x]
                local d = string.sub(name, 1, 1)
                if totals[d] and string.sub(name, 2, 2) == ':' then
                  local idx = tonumber(string.sub(name, 3))
                  if idx and idx >= (d == 'd' and cut_d or cut_m) then
                    local v = tonumber(all[x + 1]) or 0
                    if not buckets[name] then order[#order + 1] = name end
                    buckets[name] = (buckets[name] or 0) + v
                    totals[d] = totals[d] + v
                  end
                end
              end
              slots[#slots + 1] = ks .. ':' .. m
            end
          end
          if #order > 0 then
            local args = { 'mlo', string.format('%d', cut_m), 'dlo', string.format('%d', cut_d), 'ht', HT }
            for d, v in pairs(totals) do
              args[#args + 1] = d
              args[#args + 1] = string.format('%d', v)
            end
            for _, name in ipairs(order) do
              args[#args + 1] = name
              args[#args + 1] = string.format('%d', buckets[name])
            end
            redis.call('HSET', kw, unpack(args))
            touch(kw)
          end
          -- A slot's score is when it expires: the union keeps each model's calls in flight as they are.
          if #slots > 0 and redis.call('ZUNIONSTORE', ks, #slots, unpack(slots)) > 0 then
            redis.call('ZREMRANGEBYSCORE', ks, '-inf', now_text())
            redis.call('PEXPIRE', ks, string.format('%d', slot_ttl + W))
          end
        end
        if kc - now < W then
          redis.call('HSET', state, 'kc', string.format('%d', now + 2 * W))
          redis.call('PEXPIRE', state, STATE_TTL)
        end
      end
      key_on[k] = key_limited or kc > now
      local scopes = key_on[k] and { { KEYS[base + 2], KEYS[base + 3], 0 }, { KEYS[base + 4], KEYS[base + 5], 6 } }
        or { { KEYS[base + 4], KEYS[base + 5], 6 } }
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
          local L = a[lbase + off + j]
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
                  free = math.max(free, num(hextra(h, ADJ_UNTIL[names[j]]), now))
                end
              elseif (L - used - costs[j]) / L < head then
                head = (L - used - costs[j]) / L
              end
            end
          end
        end
        local conc = a[lbase + off + 6]
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
          local busy = n > 1 and redis.call('ZCARD', KEYS[base + (key_on[k] and 3 or 5)]) or 0
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
    local base = kb + 2 + (best - 1) * 5
    local on = key_on[best]
    local targets = on and { KEYS[base + 2], KEYS[base + 4] } or { KEYS[base + 4] }
    if share_on then table.insert(targets, share_h) end
    for _, h in ipairs(targets) do
      if not hget(h, 'ht') then hset(h, 'ht', HT) end
      -- A window's TTL (a day and more) is renewed with the first request of each second.
      if add(h, 'r', cur_m, 1, '1') then touch(h) end
      add(h, 'i', cur_m, tin, tin_text)
      add(h, 'o', cur_m, tout, tout_text)
      if h ~= share_h then add(h, 'd', cur_d, 1, '1') end
    end
    local slot_until, slot_ttl_text = string.format('%d', now + slot_ttl), string.format('%d', slot_ttl + W)
    for _, z in ipairs(on and { KEYS[base + 3], KEYS[base + 5] } or { KEYS[base + 5] }) do
      redis.call('ZADD', z, slot_until, res_id)
      redis.call('PEXPIRE', z, slot_ttl_text)
    end
    -- The key's last use of the model (for GET /admin/keys), at most once a second.
    if now - last_use[best] >= 1000 then
      local state = KEYS[base + 1]
      redis.call('HSET', state, 'm:' .. model, now_text())
      redis.call('PEXPIRE', state, STATE_TTL)
    end
    return { 1, best, cur_m, cur_d, now, on and 1 or 0 }
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

if op == 'reserve' then return reserve_one(0, cmsgpack.unpack(ARGV[3])) end

-- Several reservations in one call, one after the other, as that many calls in a row would make
-- them (KeyPool gathers the reservations a worker asks for in the same turn): each one's keys
-- follow the last one's (2 + 5 per candidate key), and each one's answer is an array in the
-- answer. The window heads read for one are kept for the next (see load in pool.lua). One that
-- fails in Redis or in Lua fails alone, as its own call would have: its answer is
-- {'error', message}, and the next one runs (the heads are read again: a failure may have left
-- the cached copy behind Redis).
if op == 'reserve_many' then
  local all = cmsgpack.unpack(ARGV[3])
  local out, kb = {}, 0
  for i = 1, #all do
    local a = all[i]
    local ok, r = pcall(reserve_one, kb, a)
    if ok then
      out[i] = r
    else
      if type(r) == 'table' then r = r.err end
      out[i] = { 'error', tostring(r) }
      heads = {}
    end
    kb = kb + 2 + 5 * a[13]
  end
  return out
end
