import { createHash } from "node:crypto";
import type { Redis } from "ioredis";

/**
 * A Lua program of one shared part (its helpers) and one body per op, which Redis runs as a
 * function library: FUNCTION LOAD makes the helpers once, and each FCALL runs only a call's own
 * work. As an EVAL script Redis would make every helper function and table again at each call
 * (for the key pool, ~66,000 of the ~370,000 instructions a reserve or settle cost, callgrind).
 *
 * The shared part must define `begin(keys, args)`, which sets the call's own values (it should
 * declare `KEYS` and `ARGV` as locals and set them there) and forgets the last call's: whatever
 * the helpers keep outlives a call. Each body is one op's code as an EVAL script's would be: it
 * returns its answer when the op is its own and runs through otherwise; the last body answers
 * an op none knows.
 *
 * The library is loaded when a call finds it missing (a new version, a Redis restarted without
 * persistence, FUNCTION FLUSH), so nothing has to load it ahead. Its name carries a hash of its
 * code: processes of two versions (a rolling upgrade) each call their own. A Redis without
 * functions (before 7.0) or an account not allowed FUNCTION runs the same program as an EVAL
 * script, as fast as before functions existed.
 *
 * Libraries of the same family and deployment (key prefix) that no process has loaded for a day
 * are deleted when a new one is loaded (a process still calling one loads it again), so old
 * versions do not pile up.
 */
export interface LuaProgram {
  /** The library family: letters, digits and underscores (the version's hash is appended). */
  family: string;
  shared: string;
  bodies: readonly string[];
}

/**
 * A program as Lua: its shared part, each body made a function, and `local function run(keys,
 * args)`, which begins a call and runs the bodies in turn until one answers.
 */
function programRun(program: LuaProgram): string {
  const ops = program.bodies.map((body, i) => `local function op_${i + 1}()\n${body}\nend\n`).join("");
  const calls = program.bodies
    .map((_, i) =>
      i === program.bodies.length - 1
        ? `  return op_${i + 1}()`
        : `  local r${i + 1} = op_${i + 1}()\n  if r${i + 1} ~= nil then return r${i + 1} end`,
    )
    .join("\n");
  return `${program.shared}\n${ops}local function run(keys, args)\n  begin(keys, args)\n${calls}\nend\n`;
}

/**
 * A program as one Lua expression, a function of (keys, args), for another program to call:
 * its helpers are made once with that program's (in a function of their own, so its locals do
 * not count against the other program's), and each call runs it as an FCALL of it would.
 */
export function programFunction(program: LuaProgram): string {
  return `(function()\n${programRun(program)}return run\nend)()`;
}

/** Libraries not loaded for this long are deleted when another of their family is loaded. */
const STALE_MS = 24 * 60 * 60 * 1000;
/** The registry of load times lives at most this long after the last load. */
const REGISTRY_TTL_MS = 30 * 24 * 60 * 60 * 1000;

export type LuaMode = "function" | "script";

export class LuaLibrary {
  /** The library's and its one function's name: the family and a hash of the code. */
  readonly name: string;
  private readonly libraryCode: string;
  private readonly scriptCommand: string;
  private modeNow: LuaMode;
  private loading: Promise<void> | undefined;

  /**
   * registry: a hash of this family's libraries and when each was last loaded (ms), used to
   * delete the stale ones. mode "script" forces EVAL (tests of that path).
   */
  constructor(
    private readonly redis: Redis,
    program: LuaProgram,
    private readonly registry: string,
    mode: LuaMode = "function",
  ) {
    if (!/^[A-Za-z0-9_]+$/.test(program.family))
      throw new Error(`bad Lua library family '${program.family}'`);
    const main = programRun(program);
    // The deployment (its registry, named under its key prefix) and the code: deployments that
    // share a Redis never delete each other's libraries.
    const scope = createHash("sha1").update(registry).digest("hex").slice(0, 8);
    const hash = createHash("sha1").update(main).digest("hex").slice(0, 16);
    this.name = `${program.family}_${scope}_${hash}`;
    // The first line of each form is its own, so both number the program's lines alike.
    this.libraryCode = `#!lua name=${this.name}\n${main}redis.register_function('${this.name}', run)\n`;
    this.scriptCommand = `syLua_${this.name}`;
    if (!(this.scriptCommand in redis)) {
      redis.defineCommand(this.scriptCommand, {
        lua: `local SCRIPT_KEYS, SCRIPT_ARGV = KEYS, ARGV\n${main}return run(SCRIPT_KEYS, SCRIPT_ARGV)\n`,
      });
    }
    this.modeNow = mode;
  }

  /** How Redis runs the program: loaded as a function library, or as an EVAL script. */
  get mode(): LuaMode {
    return this.modeNow;
  }

  /** Runs the program with these keys and arguments; its answer as Redis gave it. */
  async call(keys: readonly string[], args: readonly (string | number | Buffer)[]): Promise<unknown> {
    if (this.modeNow === "function") {
      try {
        return await this.fcall(keys, args);
      } catch (err) {
        if (isReply(err, /function not found/i)) {
          await this.load();
          if (this.modeNow === "function") return await this.fcall(keys, args);
        } else if (isReply(err, /unknown command|NOPERM/i)) this.modeNow = "script";
        else throw err;
      }
    }
    const run = (this.redis as unknown as Record<string, (...a: unknown[]) => Promise<unknown>>)[
      this.scriptCommand
    ];
    if (!run) throw new Error(`Lua script command ${this.scriptCommand} is not defined`);
    return await run.call(this.redis, keys.length, ...keys, ...args);
  }

  private fcall(keys: readonly string[], args: readonly (string | number | Buffer)[]): Promise<unknown> {
    return this.redis.call("FCALL", this.name, keys.length, ...keys, ...args);
  }

  /** Loads the library (one load at a time per process), then deletes its stale relatives. */
  private load(): Promise<void> {
    this.loading ??= this.loadOnce().finally(() => {
      this.loading = undefined;
    });
    return this.loading;
  }

  private async loadOnce(): Promise<void> {
    try {
      await this.redis.call("FUNCTION", "LOAD", "REPLACE", this.libraryCode);
    } catch (err) {
      if (!isReply(err, /unknown command|unknown subcommand|NOPERM/i)) throw err;
      this.modeNow = "script";
      return;
    }
    // Best effort: the library is in; a stale one left now is deleted at the next load.
    await this.deleteStale().catch(() => undefined);
  }

  private async deleteStale(): Promise<void> {
    const now = Date.now();
    await this.redis
      .multi()
      .hset(this.registry, this.name, String(now))
      .pexpire(this.registry, REGISTRY_TTL_MS)
      .exec();
    const family = this.name.slice(0, this.name.lastIndexOf("_") + 1);
    const listed = await this.redis.call("FUNCTION", "LIST", "LIBRARYNAME", `${family}*`);
    const loadedAt = await this.redis.hgetall(this.registry);
    for (const name of libraryNames(listed)) {
      if (name === this.name || !name.startsWith(family)) continue;
      const at = Number(loadedAt[name]);
      if (Number.isFinite(at) && now - at < STALE_MS) continue;
      try {
        await this.redis.call("FUNCTION", "DELETE", name);
      } catch (err) {
        if (!isReply(err, /library not found/i)) throw err; // another process deleted it first
      }
      await this.redis.hdel(this.registry, name);
    }
  }
}

function isReply(err: unknown, pattern: RegExp): boolean {
  return err instanceof Error && err.name === "ReplyError" && pattern.test(err.message);
}

/** The library names in a FUNCTION LIST answer (RESP2: a flat name/value array per library). */
function libraryNames(listed: unknown): string[] {
  if (!Array.isArray(listed)) return [];
  const names: string[] = [];
  for (const lib of listed) {
    if (!Array.isArray(lib)) continue;
    for (let i = 0; i + 1 < lib.length; i += 2) {
      const field: unknown = lib[i];
      const value: unknown = lib[i + 1];
      if (field === "library_name" && typeof value === "string") names.push(value);
    }
  }
  return names;
}
