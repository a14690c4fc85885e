import type { Redis } from "ioredis";
import { moveToActive } from "bullmq/dist/cjs/scripts/moveToActive-11.js";
import { moveToFinished } from "bullmq/dist/cjs/scripts/moveToFinished-14.js";
import { version as bullmqVersion } from "bullmq/dist/cjs/version.js";
import { LuaLibrary, type LuaMode, type LuaProgram } from "./lua-library";
import beginLua from "./lua/begin.lua";

/**
 * BullMQ's per-job scripts as Redis function libraries. BullMQ 6.7.0 runs its Lua as EVAL
 * scripts, and each of its scripts carries its helpers (moveToFinished: 37 functions), which
 * Redis makes again at every call. Loaded as a library (lua-library.ts), BullMQ's own code runs
 * unchanged, its helpers made once: a job's completion costs ~42,000 fewer Redis instructions
 * (callgrind, raw BullMQ: 495,083 -> 452,694 per job).
 *
 * How BullMQ is made to call them (internals of the pinned version; bullmq-functions.int.test.ts
 * fails when they change): BullMQ runs a script as `client["<name>:<version>"](args)`, and
 * defines that command on the client only when the client has none (RedisConnection's
 * loadCommands). A connection given to useBullmqFunctions has both commands already, running
 * the libraries; BullMQ's Queue and Worker objects made on it use them. Another connection
 * (BullMQ's own duplicate for blocking waits) keeps BullMQ's EVAL scripts.
 */
const SCRIPTS: readonly BullScript[] = [moveToFinished, moveToActive];

export interface BullScript {
  name: string;
  content: string;
  keys: number;
}

/**
 * A BullMQ script as a program: its helper definitions (every top-level `local function`, or
 * `local name = function`, before the first other statement) are the shared part, made once; the
 * rest is the body. `local rcall = redis.call` becomes a local that begin.lua sets at every call
 * (a library is loaded where redis.call does not exist yet), with KEYS and ARGV (BullMQ's helpers
 * take their keys and arguments as parameters; its main code reads KEYS and ARGV).
 */
export function bullmqProgram(script: BullScript): LuaProgram {
  const lines = script.content.split("\n");
  let comment = false;
  let main = -1;
  let rcall = -1;
  for (let i = 0; i < lines.length && main < 0; i++) {
    const line = lines[i] ?? "";
    if (comment) {
      if (line.includes("]]")) comment = false;
      continue;
    }
    if (line.startsWith("--[[")) {
      comment = !line.includes("]]");
      continue;
    }
    if (line === "" || /^\s/.test(line) || line.startsWith("--") || /^(end|\]\])\b/.test(line)) continue;
    if (/^local rcall = redis\.call\s*$/.test(line)) {
      rcall = i;
      continue;
    }
    if (/^local function \w+\s*\(/.test(line) || /^local \w+ = function\s*\(/.test(line)) continue;
    main = i;
  }
  if (main < 0 || rcall < 0) throw new Error(`BullMQ's ${script.name} script is not shaped as expected`);
  const helpers = lines.slice(0, main);
  helpers[rcall] = "local rcall";
  return {
    family: `sy_bullmq_${script.name}`,
    shared: `${helpers.join("\n")}\n${beginLua}`,
    bodies: [lines.slice(main).join("\n")],
  };
}

type ScriptArg = string | number | Buffer;
const asArg = (v: unknown): ScriptArg => {
  if (typeof v === "string" || typeof v === "number" || Buffer.isBuffer(v)) return v;
  if (v === undefined || v === null) return ""; // as ioredis sends them
  throw new Error(`a BullMQ script argument of type ${typeof v}`);
};

/**
 * Makes BullMQ's moveToFinished and moveToActive run as function libraries on `connection`
 * (before any BullMQ object uses it). Returns the libraries (their mode, for tests).
 */
export function useBullmqFunctions(connection: Redis, registry: string, mode?: LuaMode): LuaLibrary[] {
  return SCRIPTS.map((script) => {
    const lib = new LuaLibrary(connection, bullmqProgram(script), registry, mode);
    const command = `${script.name}:${bullmqVersion}`;
    Object.defineProperty(connection, command, {
      configurable: true,
      writable: true,
      value: (args: unknown) => {
        const all = (Array.isArray(args) ? args : [args]).map(asArg);
        return lib.call(all.slice(0, script.keys).map(String), all.slice(script.keys));
      },
    });
    return lib;
  });
}
