--[[
  The key pool's probes, re-enabling and inspection (pool.lua's helpers come first in the same
  program); an op no file knows is an error.

  probe     KEYS: state hash of each key; ARGV: op, now, probe_interval_ms
            Claims the disabled keys whose probe is due. Returns their 1-based indexes.

  enable    KEYS: state hash; ARGV: op, now. Puts a key back in the pool.

  inspect   KEYS: window hash, slots zset; ARGV: op, now, window_ms, margin_ms
            Returns {r, t, i, o, d, in flight, cool, hl:r, hl:t, hl:i, hl:o} (r..o include
            live adjustments)
]]
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
  for _, d in ipairs(MIN_DIMS) do table.insert(out, num(hnum(h, HL[d]), 0)) end
  return out
end

return redis.error_reply('unknown op ' .. tostring(op))
