--[[
  The key pool's settlement of a call (pool.lua's helpers come first in the same program).

  settle    KEYS: state, key window, key slots, model window, model slots, share window, book
            ARGV: op, now, then one MessagePack array (see pool-reserve.lua):
                  reservation id, minute bucket, day bucket, reserved in, reserved out,
                  used in (-1 unknown), used out (-1 unknown), outcome, cool until (ms, 0 none),
                  cool scope (key|model), duration ms (-1 unknown), reason, probe_interval_ms,
                  window_ms, margin_ms, header scope (key|model), default reset ms, then for
                  r t i o: configured limit, reported limit (-1), reported remaining (-1),
                  reported reset ms (-1), then key-wide counted (0|1: the reservation's answer)
            outcome: ok | error | rate_limited (refund tokens, cool down) |
                     disabled (refund tokens, take the key out with the reason)
            Returns {cooling until, disabled (0|1)}
]]
if op == 'settle' then
  local state, kw, ks, mw, ms, share_h, book = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7]
  local a = cmsgpack.unpack(ARGV[3])
  local res_id = a[1]
  local idx_m, idx_d = a[2], a[3]
  local rin, rout = a[4], a[5]
  local uin, uout = a[6], a[7]
  local outcome = a[8]
  local cool_until, cool_scope = a[9], a[10]
  local duration, reason, probe_interval = a[11], a[12], a[13]
  set_window(a[14], a[15])
  local hdr_scope = a[16]
  local default_reset = a[17]

  redis.call('ZREM', ks, res_id)
  redis.call('ZREM', ms, res_id)
  -- The window whose limits the provider's headers correct is read whole (one HMGET); of the
  -- others only what trimming needs. A missing hash stays missing; the share window is looked at
  -- only when the job had a share (without one, KEYS[6] names no window). The key-wide window is
  -- corrected when the reservation counted in it (see pool-reserve.lua); one rebuilt since from
  -- the per-model windows holds the reservation in a later bucket, which stays uncorrected (the
  -- limiter may under-use a key, never over-use it). Its slot is released either way: a rebuild
  -- copies the per-model slots.
  local hh = hdr_scope == 'model' and mw or kw
  full(hh)
  local windows = a[34] == 0 and { mw } or { kw, mw }
  if redis.call('EXISTS', share_h) == 1 then windows[#windows + 1] = share_h end
  for _, h in ipairs(windows) do trim(h) end

  local din, dout = 0, 0
  if uin >= 0 and uout >= 0 then
    din, dout = uin - rin, uout - rout
    if rin + rout > 0 then
      local fill = num(redis.call('HGET', book, 'fill'), 1)
      fill = fill * 0.9 + 0.1 * math.min(2, (uin + uout) / (rin + rout))
      redis.call('HSET', book, 'fill', tostring(math.max(0.05, fill)))
      -- Renewed once half of its TTL is gone, not by every settlement.
      if redis.call('PTTL', book) < 5 * W then redis.call('PEXPIRE', book, string.format('%d', 10 * W)) end
    end
  elseif outcome == 'rate_limited' or outcome == 'disabled' then
    din, dout = -rin, -rout -- refused upstream: no tokens were spent (the request still counts)
  end
  -- Whole numbers: '%d' is a cheap integer formatting, where tostring is a float one ('%.14g').
  local din_text, dout_text = string.format('%d', din), string.format('%d', dout)
  for _, h in ipairs(windows) do
    -- A window the reservation wrote to has its oldest minute bucket ("mlo", read for trimming
    -- above); one without it is gone (expired or deleted by hand) and is not recreated here
    -- without its TTL. (The share window exists: checked above.)
    if h == share_h or hnum(h, 'mlo') ~= nil then
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
    local at = 17 + (j - 1) * 4
    -- A dimension the provider reported nothing of (limit and remaining -1) changes nothing.
    if a[at + 2] ~= -1 or a[at + 3] ~= -1 then
      local configured = a[at + 1]
      local rlimit = a[at + 2]
      local rremaining = a[at + 3]
      local rreset = a[at + 4]
      if rlimit > 0 and hnum(hh, HL[d]) ~= rlimit then
        hset(hh, HL[d], rlimit)
        wrote = true
      end
      local L = effective(hh, d, configured)
      if L > 0 and rremaining >= 0 then
        local extra = adj(hh, d)
        local ours = L - counted_of(hh, d) - extra
        if rremaining < ours then
          local until_ms = now + (rreset >= 0 and rreset or default_reset)
          hset(hh, ADJ[d], extra + ours - rremaining)
          hset(hh, ADJ_UNTIL[d], until_ms)
          wrote = true
        end
      end
    end
  end
  -- A window this call may have created gets its TTL; one in use has it (renewed by the
  -- reservations, with the first of each second).
  if wrote then touch(hh) end
  if counted == 1 then redis.call('PEXPIRE', state, STATE_TTL) end
  return { cooling, disabled }
end
