import { Command, Redis } from "ioredis";
import { testRedisUrl, uniquePrefix } from "@switchyard/testing";

/**
 * patches/ioredis@5.11.1.patch (pnpm-workspace.yaml's patchedDependencies): ioredis's Command
 * copies its arguments with a loop instead of Array.prototype.flat (V8's generic path on Node 20,
 * ~80 ns per argument) unless one of them is an array or a hole; and a command with Buffer
 * arguments and ASCII strings is encoded as one latin1 string instead of piece by piece. An
 * install that lost the patch, or an ioredis that no longer takes it, fails here; the arguments
 * and the bytes sent must come out as unpatched ioredis made them either way.
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

  /** The command as RESP, spelled out: what unpatched ioredis writes. */
  const resp = (name: string, args: (string | Buffer)[]) =>
    Buffer.concat([
      Buffer.from(`*${args.length + 1}\r\n$${name.length}\r\n${name}\r\n`),
      ...args.flatMap((a) => {
        const b = typeof a === "string" ? Buffer.from(a, "utf8") : a;
        return [Buffer.from(`$${b.length}\r\n`), b, Buffer.from("\r\n")];
      }),
    ]);
  // Every byte value, as in a msgpack argument.
  const binary = Buffer.from(Array.from({ length: 256 }, (_, i) => i));

  it("encodes a command with Buffers and ASCII strings in one pass, byte for byte", () => {
    const args = ["k", binary, "", "value with spaces", Buffer.alloc(0), "42"];
    const alloc = jest.spyOn(Buffer, "allocUnsafe");
    const out = new Command("fcall", args).toWritable(undefined as never);
    // The general path (MixedBuffers) allocates its result with Buffer.allocUnsafe.
    expect(alloc).not.toHaveBeenCalled();
    expect(Buffer.isBuffer(out)).toBe(true);
    expect(Buffer.compare(out as Buffer, resp("fcall", args))).toBe(0);
  });

  it.each([
    ["a non-ASCII string", ["k", binary, "na\u00efve \u2713 \ud83d\ude00"]],
    ["Buffers over 64 KiB", ["k", Buffer.alloc(64 * 1024 + 1, 0xc3), "v"]],
  ])("takes the general path for %s, with the same bytes", (_what, args) => {
    const alloc = jest.spyOn(Buffer, "allocUnsafe");
    const out = new Command("fcall", args).toWritable(undefined as never);
    expect(alloc).toHaveBeenCalled();
    expect(Buffer.compare(out as Buffer, resp("fcall", args))).toBe(0);
  });

  it("round-trips binary and text arguments through a real Redis", async () => {
    const key = `${uniquePrefix()}:h`;
    const text = "na\u00efve \u2713";
    await redis.hset(key, "bin", binary, "ascii", "plain", "text", text);
    await redis.hset(key, "bin2", binary, "ascii2", "plain");
    expect(Buffer.compare((await redis.hgetBuffer(key, "bin")) ?? Buffer.alloc(0), binary)).toBe(0);
    expect(Buffer.compare((await redis.hgetBuffer(key, "bin2")) ?? Buffer.alloc(0), binary)).toBe(0);
    expect(await redis.hmget(key, "ascii", "text", "ascii2")).toEqual(["plain", text, "plain"]);
    await redis.del(key);
  });
});
