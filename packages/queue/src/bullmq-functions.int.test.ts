import { Queue, QueueEvents, Worker } from "bullmq";
import { moveToFinished } from "bullmq/dist/cjs/scripts/moveToFinished-14.js";
import { Redis } from "ioredis";
import { deleteKeysUnder, runToCompletion, testRedisUrl, uniquePrefix } from "@switchyard/testing";
import { bullmqProgram, useBullmqFunctions } from "./bullmq-functions";
import { bullSnapshot } from "./bullmq-run.test-util";
import { Keys } from "./keys";
import type { LuaMode } from "./lua-library";

/**
 * BullMQ's completion and fetch (moveToFinished, moveToActive) run as function libraries on a
 * real Redis 7, through BullMQ's own Queue and Worker: BullMQ calls the libraries (the internal
 * hook: its "<name>:<version>" command on the client, defined only when absent), and a queue run
 * that way ends exactly as one on BullMQ's own EVAL scripts, key by key. Fails when a BullMQ
 * release changes the hook or the scripts' shape.
 */
describe("BullMQ's per-job scripts as function libraries", () => {
  const plain = new Redis(testRedisUrl(), { maxRetriesPerRequest: null });
  const prefixes: string[] = [];
  afterAll(async () => {
    await deleteKeysUnder(plain, prefixes);
    plain.disconnect();
  });

  it("keeps BullMQ's helpers apart from its main code", () => {
    const program = bullmqProgram(moveToFinished);
    const helpers = program.shared.match(/^local (function \w+|\w+ = function)/gm) ?? [];
    expect(helpers.length).toBeGreaterThanOrEqual(30);
    expect(program.shared).not.toMatch(/^local rcall = redis\.call/m);
    const [body] = program.bodies;
    expect(body).toMatch(/^local jobIdKey = KEYS\[12\]/);
    expect(body).not.toMatch(/^local function /m);
  });

  /**
   * Runs 20 jobs through a BullMQ Worker (fetch and completion: moveToActive, moveToFinished
   * with the next fetch) on a fresh prefix; with `mode`, on a connection whose scripts run as
   * libraries. Answers the prefix and how often the libraries were called.
   */
  const run = async (mode?: LuaMode) => {
    const prefix = uniquePrefix();
    prefixes.push(prefix);
    const connection = new Redis(testRedisUrl(), { maxRetriesPerRequest: null });
    const libs = mode ? useBullmqFunctions(connection, new Keys(prefix).luaLibraries(), mode) : [];
    const calls = libs.map((lib) => jest.spyOn(lib, "call"));
    const queue = new Queue("q", { connection, prefix });
    // BullMQ closes the connections it makes, not one it is given: this one is closed below.
    const eventsConnection = plain.duplicate();
    const events = new QueueEvents("q", { connection: eventsConnection, prefix });
    await events.waitUntilReady();
    const worker = new Worker("q", async (job) => ({ echo: job.data as unknown }), {
      connection,
      prefix,
      concurrency: 1,
      autorun: false,
    });
    const ids = Array.from({ length: 20 }, (_, i) => `job_${i}`);
    try {
      // All added before the worker runs: the events stream's order is then the same every run.
      for (const id of ids) await queue.add("chat", { id }, { jobId: id });
      await runToCompletion(worker, queue, ids.length);
    } finally {
      await worker.close();
      await events.close();
      await queue.close();
      connection.disconnect();
      eventsConnection.disconnect();
    }
    return { prefix, ids, calls: calls.map((c) => c.mock.calls.length), modes: libs.map((l) => l.mode) };
  };

  it.each(["function", "script"] as const)(
    "ends a queue run as BullMQ's own scripts do, with BullMQ calling the libraries (as a %s)",
    async (mode) => {
      const ours = await run(mode);
      const theirs = await run();
      expect(ours.modes).toEqual([mode, mode]);
      // Every job's completion went through the library (moveToFinished: the first library), and
      // the worker's first fetch through the second (moveToActive; later ones ride on the
      // completion, which fetches the next job).
      expect(ours.calls[0]).toBeGreaterThanOrEqual(ours.ids.length);
      expect(ours.calls[1]).toBeGreaterThanOrEqual(1);
      const a = await bullSnapshot(plain, ours.prefix, ours.ids);
      const b = await bullSnapshot(plain, theirs.prefix, theirs.ids);
      expect(a.jobs).toEqual(b.jobs);
      expect(a.completed).toEqual(b.completed);
      expect(a.keys).toEqual(b.keys);
      expect(a.meta).toEqual(b.meta);
      expect(a.events.map((e) => e[1])).toEqual(b.events.map((e) => e[1]));
    },
  );
});
