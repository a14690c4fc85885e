import { Command, Redis } from "ioredis";
import { testRedisUrl, uniquePrefix } from "@switchyard/testing";

/**
 * patches/ioredis@5.11.1.patch (pnpm-workspace.yaml's patchedDependencies): ioredis's Command
 * copies its arguments with a loop instead of Array.prototype.flat (V8's generic path on Node 20,
 * ~80 ns per argument) unless one of them is an array or a hole. An install that lost the patch,
 * or an ioredis that no longer takes it, fails here; the arguments must come out as flat() made
 * them either way.
 */
describe("ioredis's Command, as patched", () => {
  const redis = new Redis(testRedisUrl());
  afterAll(() => redis.disconnect());
  afterEach(() => jest.restoreAllMocks());

  it("copies flat arguments without Array.prototype.flat", () => {
    const flat = jest.spyOn(Array.prototype, "flat");
    const args = ["k", "a", "2", "b", "7"];
    const cmd = new Command("rpush", args);
    expect(flat).not.toHaveBeenCalled();
    expect(cmd.args).toEqual(args);
    expect(cmd.args).not.toBe(args);
  });

  it("still flattens nested arrays and drops holes as flat() does", () => {
    const flat = jest.spyOn(Array.prototype, "flat");
    expect(new Command("rpush", ["k", ["a", "b"], "c"]).args).toEqual(["k", "a", "b", "c"]);
    const holey = new Array<string>(3);
    holey[0] = "k";
    holey[2] = "c";
    expect(new Command("rpush", holey).args).toEqual(["k", "c"]);
    expect(flat).toHaveBeenCalledTimes(2);
  });

  it("sends what it was given to a real Redis", async () => {
    const key = `${uniquePrefix()}:list`;
    await redis.call("rpush", [key, "a", "b", "c"]);
    await redis.rpush(key, "d", 5);
    expect(await redis.lrange(key, 0, -1)).toEqual(["a", "b", "c", "d", "5"]);
    await redis.del(key);
  });
});
