import { Redis } from "ioredis";
import { testRedisUrl, uniquePrefix } from "@switchyard/testing";
import { Keys } from "./keys";
import { LuaLibrary, type LuaProgram } from "./lua-library";

/**
 * A Lua program loaded as a function library on a real Redis 7: loaded by the first call that
 * finds it missing, again once it is deleted, the same answers as an EVAL script, a call's own
 * values not leaking into the next, fallback to EVAL where FUNCTION is not allowed, and the
 * deletion of a deployment's stale libraries (never another deployment's, never a fresh one).
 */
const COUNTER: LuaProgram = {
  family: "sy_test",
  shared: `
local KEYS, ARGV, op, seen
-- A helper made once: it counts into the call's own table.
local function note(x)
  seen[#seen + 1] = x
  return #seen
end
local function begin(keys, args)
  KEYS, ARGV = keys, args
  op = args[1]
  seen = {}
end
`,
  bodies: [
    `if op == 'incr' then
  note(ARGV[2])
  return redis.call('INCRBY', KEYS[1], ARGV[2])
end`,
    `if op == 'notes' then
  for i = 2, #ARGV do note(ARGV[i]) end
  return seen
end
return redis.error_reply('unknown op ' .. tostring(op))`,
  ],
};

describe("LuaLibrary", () => {
  const redis = new Redis(testRedisUrl());
  let keys: Keys;
  beforeEach(() => {
    keys = new Keys(uniquePrefix());
  });
  afterAll(() => redis.disconnect());

  const libraries = async (): Promise<string[]> => {
    const listed = (await redis.call("FUNCTION", "LIST", "LIBRARYNAME", "sy_test_*")) as unknown[];
    return listed.map((lib) => {
      const fields = lib as unknown[];
      return String(fields[fields.indexOf("library_name") + 1]);
    });
  };

  it("loads itself on the first call, again once deleted, and answers as the EVAL script does", async () => {
    const lib = new LuaLibrary(redis, COUNTER, keys.luaLibraries());
    const script = new LuaLibrary(redis, COUNTER, keys.luaLibraries(), "script");
    const k = `${keys.prefix}:n`;
    expect(await libraries()).not.toContain(lib.name);
    expect(await lib.call([k], ["incr", 5])).toBe(5);
    expect(lib.mode).toBe("function");
    expect(await libraries()).toContain(lib.name);
    expect(await script.call([k], ["incr", 2])).toBe(7);
    expect(script.mode).toBe("script");
    // Gone (FUNCTION FLUSH, a Redis restarted without persistence): the next call loads it again.
    await redis.call("FUNCTION", "DELETE", lib.name);
    expect(await lib.call([k], ["incr", 1])).toBe(8);
    expect(lib.mode).toBe("function");
    // A call's own table is new each call: the helper kept across calls does not carry it over.
    expect(await lib.call([], ["notes", "a", "b"])).toEqual(["a", "b"]);
    expect(await lib.call([], ["notes", "c"])).toEqual(["c"]);
    await expect(lib.call([], ["nope"])).rejects.toThrow("unknown op nope");
    await expect(script.call([], ["nope"])).rejects.toThrow("unknown op nope");
  });

  it("loads once for many calls that find it missing together", async () => {
    const lib = new LuaLibrary(redis, COUNTER, keys.luaLibraries());
    const k = `${keys.prefix}:n`;
    const answers = await Promise.all(Array.from({ length: 50 }, () => lib.call([k], ["incr", 1])));
    expect(answers.map(Number).sort((a, b) => a - b)).toEqual(Array.from({ length: 50 }, (_, i) => i + 1));
    const loads = await redis.hgetall(keys.luaLibraries());
    expect(Object.keys(loads)).toEqual([lib.name]);
    expect(await redis.pttl(keys.luaLibraries())).toBeGreaterThan(0);
  });

  it("runs as an EVAL script when the account may not use FUNCTION", async () => {
    const user = `lua-${keys.prefix.replace(/\W/g, "")}`;
    await redis.call("ACL", "SETUSER", user, "on", ">pw", "~*", "&*", "+@all", "-function");
    const limited = new Redis(testRedisUrl(), { username: user, password: "pw" });
    try {
      const lib = new LuaLibrary(limited, COUNTER, keys.luaLibraries());
      expect(await lib.call([`${keys.prefix}:n`], ["incr", 3])).toBe(3);
      expect(lib.mode).toBe("script");
      expect(await lib.call([`${keys.prefix}:n`], ["incr", 3])).toBe(6);
    } finally {
      limited.disconnect();
      await redis.call("ACL", "DELUSER", user);
    }
  });

  it("deletes its deployment's libraries not loaded for a day, and keeps fresh ones and other deployments'", async () => {
    // Three versions of the program in this deployment, one in another deployment.
    const version = (n: number, k: Keys = keys) =>
      new LuaLibrary(redis, { ...COUNTER, shared: `${COUNTER.shared}\n-- version ${n}` }, k.luaLibraries());
    const stale = version(1);
    const fresh = version(2);
    const other = version(1, new Keys(uniquePrefix()));
    for (const lib of [stale, fresh, other]) await lib.call([], ["notes"]);
    expect(await libraries()).toEqual(expect.arrayContaining([stale.name, fresh.name, other.name]));
    // The first version was last loaded two days ago.
    await redis.hset(keys.luaLibraries(), stale.name, String(Date.now() - 2 * 86_400_000));
    const current = version(3);
    await current.call([], ["notes"]);
    const left = await libraries();
    expect(left).toEqual(expect.arrayContaining([fresh.name, other.name, current.name]));
    expect(left).not.toContain(stale.name);
    expect(await redis.hexists(keys.luaLibraries(), stale.name)).toBe(0);
    // A process still running the deleted version loads it again.
    expect(await stale.call([], ["notes", "x"])).toEqual(["x"]);
    expect(await libraries()).toContain(stale.name);
  });
});
