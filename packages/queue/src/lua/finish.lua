--[[
  A succeeded job's final transition (transition.lua) and BullMQ's completion of its BullMQ job
  (BullMQ's moveToFinished), in one script call instead of two (bullmq-functions.ts, FinishFold).
  The program is BullMQ's moveToFinished helpers, begin.lua, transition.lua made the function
  transition(KEYS, ARGV), moveToFinished's main code made the function completeBullJob(), then
  this file.

  KEYS[1..3]   transition.lua's keys; KEYS[4..] moveToFinished's (BullMQ's own, as it sends them)
  ARGV[1]      how many of the arguments after it are transition.lua's (n)
  ARGV[2..n+1] transition.lua's arguments; ARGV[n+2..] moveToFinished's (BullMQ's own)

  Returns { transition.lua's answer, moveToFinished's answer }. The transition runs first, as
  the runner's own call did before BullMQ's: a job whose record is final already (a cancel won)
  keeps it, and BullMQ completes its job all the same.
]]
local keys, args = KEYS, ARGV
local n = tonumber(args[1]) or 0
local tk, ta, bk, ba = { keys[1], keys[2], keys[3] }, {}, {}, {}
for i = 4, #keys do
  bk[i - 3] = keys[i]
end
for i = 2, n + 1 do
  ta[i - 1] = args[i]
end
for i = n + 2, #args do
  ba[i - n - 1] = args[i]
end
local moved = transition(tk, ta)
begin(bk, ba)
return { moved, completeBullJob() }
