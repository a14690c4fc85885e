--[[
  A succeeded job's final transition (transition.lua) and BullMQ's completion of its BullMQ job
  (BullMQ's moveToFinished), in one script call instead of two (bullmq-functions.ts, FinishFold),
  with a step of another program before them when the worker has one to fold (the key pool's
  settlement of the job's upstream call). The program is BullMQ's moveToFinished helpers,
  begin.lua, transition.lua made the function transition(KEYS, ARGV), moveToFinished's main code
  made the function completeBullJob(), `before` (the other program as a function of keys and
  arguments, or nil), then this file.

  KEYS[1..s]         the step's keys (s = ARGV[1], 0 without a step); then transition.lua's 3;
                     then moveToFinished's (BullMQ's own, as it sends them)
  ARGV[1], [2], [3]  s, how many arguments the step has (a), how many transition.lua has (n)
  ARGV[4..]          the step's a arguments, transition.lua's n, then moveToFinished's

  Returns { transition.lua's answer, moveToFinished's answer, the step's error or false }. The
  step and the transition run first, as the worker's own calls did before BullMQ's: a job whose
  record is final already (a cancel won) keeps it, and BullMQ completes its job all the same. A
  step that fails (a Redis error, a Lua error) fails alone, as its own call did: its error is
  answered, and the rest runs.
]]
local keys, args = KEYS, ARGV
local s, a, n = tonumber(args[1]) or 0, tonumber(args[2]) or 0, tonumber(args[3]) or 0
local sk, sa, tk, ta, bk, ba = {}, {}, {}, {}, {}, {}
for i = 1, s do
  sk[i] = keys[i]
end
for i = 1, 3 do
  tk[i] = keys[s + i]
end
for i = s + 4, #keys do
  bk[i - s - 3] = keys[i]
end
for i = 1, a do
  sa[i] = args[3 + i]
end
for i = 1, n do
  ta[i] = args[3 + a + i]
end
for i = 4 + a + n, #args do
  ba[i - a - n - 3] = args[i]
end
local step_error = false
if s > 0 or a > 0 then
  -- A missing program (before is nil) fails here too, as "attempt to call a nil value".
  local ok, err = pcall(before, sk, sa)
  if not ok then
    if type(err) == 'table' then err = err.err end
    step_error = tostring(err)
  end
end
local moved = transition(tk, ta)
begin(bk, ba)
return { moved, completeBullJob(), step_error }
