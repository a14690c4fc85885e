--[[
  A call's KEYS and ARGV, and redis.call as the local rcall (the shared part before this file
  declares it), for a program with no other per-call values to set (lua-library.ts): create-job,
  and BullMQ's scripts (bullmq-functions.ts). A function library's function gets its keys and
  arguments as arguments, and is loaded where redis.call does not exist yet.
]]
local KEYS, ARGV
local function begin(keys, args)
  KEYS, ARGV, rcall = keys, args, redis.call
end
