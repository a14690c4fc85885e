import { Queue, Worker } from "bullmq";
import { version as bullmqVersion } from "bullmq/dist/cjs/version.js";
import { Redis } from "ioredis";
import {
  deleteKeysUnder,
  eventually,
  runToCompletion,
  testRedisUrl,
  uniquePrefix,
} from "@switchyard/testing";
import { FinishFold, useBullmqFunctions } from "./bullmq-functions";
import { bullSnapshot } from "./bullmq-run.test-util";
import { admitAlways, dayPeriod, JobStore, type TransitionFields } from "./job-store";
import { Keys } from "./keys";
import type { LuaMode } from "./lua-library";

/**
 * A succeeded job's final transition folded into BullMQ's completion (FinishFold, finish.lua),
 * through BullMQ's own Worker on a real Redis: a queue run that way ends exactly as one where
 * the processor runs the transition itself before BullMQ completes, key by key (job records,
 * usage, BullMQ's job hashes, events and sets), with one script call per job instead of two.
 * Fails when a BullMQ release changes moveToFinished's arguments or its shape.
 */
describe("the final transition folded into BullMQ's completion", () => {
  const plain = new Redis(testRedisUrl(), { maxRetriesPerRequest: null });
  const prefixes: string[] = [];
  const T0 = Date.UTC(2026, 10, 23, 12, 0, 0);
  afterAll(async () => {
    await deleteKeysUnder(plain, prefixes);
    plain.disconnect();
  });

  const spent = {
    usage: { input_tokens: 12, output_tokens: 5, cost_usd: 0.000002 },
    label: "openai/gpt-4o-mini",
  };
  const fields = (id: string): TransitionFields => ({
    finished_at: T0 + 5,
    attempts: 1,
    result: {
      output_text: `answer to ${id}`,
      finish_reason: "stop",
      provider: "openai",
      model: "gpt-4o-mini",
    },
    usage: spent.usage,
    error: null,
  });

  /**
   * 12 jobs with records (admitted as the API admits them), processed by a BullMQ Worker that
   * ends each with a succeeded transition: deferred to the fold (`folded`) or run by the
   * processor itself. Answers the prefix, the ids and the script calls made.
   */
  const run = async (folded: boolean, mode: LuaMode = "function") => {
    const prefix = uniquePrefix();
    prefixes.push(prefix);
    const keys = new Keys(prefix);
    const connection = new Redis(testRedisUrl(), { maxRetriesPerRequest: null });
    const store = new JobStore(connection, keys, mode);
    const fold = new FinishFold(store);
    const libs = useBullmqFunctions(connection, keys.luaLibraries(), mode, folded ? fold : undefined);
    const calls = libs.map((lib) => jest.spyOn(lib, "call"));
    const transitions = jest.spyOn(store, "runTransition");
    const queue = new Queue("q", { connection, prefix });
    const worker = new Worker(
      "q",
      async (job) => {
        const id = job.id ?? "";
        const call = store.transitionCall(id, "succeeded", fields(id), 60_000, spent);
        if (folded) fold.defer(id, call);
        else await store.runTransition(call.keys, call.args);
        return { status: "succeeded" };
      },
      { connection, prefix, concurrency: 1, autorun: false },
    );
    const ids = Array.from({ length: 12 }, (_, i) => `job_${i}`);
    try {
      for (const id of ids) {
        const out = await store.create(
          { id, tenantId: "acme", queue: "q", model: "m", priority: "normal", createdAt: T0, traceId: "t" },
          3_600_000,
          undefined,
          { ...admitAlways("acme", "paid", T0), estimate: { tokens: 100, nanoUsd: 5_000 } },
          T0,
        );
        expect(out.kind).toBe("created");
        await queue.add("chat", { id }, { jobId: id, removeOnComplete: { count: 100 } });
      }
      await runToCompletion(worker, queue, ids.length);
    } finally {
      await worker.close();
      await queue.close();
      connection.disconnect();
    }
    return {
      prefix,
      ids,
      pending: fold.size,
      finishCalls: folded ? (calls[2]?.mock.calls.length ?? 0) : 0,
      bullCompletions: calls[0]?.mock.calls.length ?? 0,
      ownTransitions: transitions.mock.calls.length,
    };
  };

  /** The BullMQ side (bullSnapshot), the job records and the tenant's usage of the day. */
  const snapshot = async (prefix: string, ids: string[]) => {
    const keys = new Keys(prefix);
    const records: Record<string, Record<string, string>> = {};
    for (const id of ids) {
      // The usage keys a record names carry the run's own prefix.
      records[id] = Object.fromEntries(
        Object.entries(await plain.hgetall(keys.job(id))).map(([k, v]) => [k, v.replace(prefix, "P")]),
      );
      expect(await plain.pttl(keys.job(id))).toBeGreaterThan(59_000);
    }
    return {
      ...(await bullSnapshot(plain, prefix, ids)),
      records,
      usage: await plain.hgetall(keys.usage("acme", dayPeriod(T0))),
    };
  };

  it.each(["function", "script"] as const)(
    "ends a queue run as a transition before BullMQ's completion does, in one call per job (as a %s)",
    async (mode) => {
      const ours = await run(true, mode);
      const theirs = await run(false, mode);
      // Every completion carried its job's transition; none ran apart, none is left.
      expect(ours.finishCalls).toBe(ours.ids.length);
      expect(ours.bullCompletions).toBe(0);
      expect(ours.ownTransitions).toBe(0);
      expect(ours.pending).toBe(0);
      expect(theirs.bullCompletions).toBe(theirs.ids.length);
      expect(theirs.ownTransitions).toBe(theirs.ids.length);
      const a = await snapshot(ours.prefix, ours.ids);
      const b = await snapshot(theirs.prefix, theirs.ids);
      expect(a.records).toEqual(b.records);
      expect(Object.values(a.records).map((r) => r.status)).toEqual(ours.ids.map(() => "succeeded"));
      expect(a.usage).toEqual(b.usage);
      expect(a.usage["m|openai/gpt-4o-mini|r"]).toBe("12");
      expect(a.jobs).toEqual(b.jobs);
      expect(a.completed).toEqual(b.completed);
      expect(a.keys).toEqual(b.keys);
      expect(a.events.map((e) => e[1])).toEqual(b.events.map((e) => e[1]));
      expect(a.meta).toEqual(b.meta);
    },
  );

  it("writes the transition when BullMQ refuses the completion, and runs one BullMQ never asked for", async () => {
    const prefix = uniquePrefix();
    prefixes.push(prefix);
    const keys = new Keys(prefix);
    const connection = new Redis(testRedisUrl(), { maxRetriesPerRequest: null });
    const store = new JobStore(connection, keys);
    // A step's program: counts its calls in its one key.
    const counter = `${prefix}:steps`;
    const fold = new FinishFold(store, {
      before: {
        family: "test_step",
        shared: "local KEYS, ARGV\nlocal function begin(keys, args) KEYS, ARGV = keys, args end",
        bodies: ["return redis.call('INCRBY', KEYS[1], ARGV[1])"],
      },
    });
    const ranApart: string[] = [];
    const step = (id: string) => ({
      keys: [counter],
      args: [1],
      run: async () => {
        ranApart.push(id);
        await connection.incrby(counter, 1);
      },
    });
    useBullmqFunctions(connection, keys.luaLibraries(), undefined, fold);
    const queue = new Queue("q", { connection, prefix });
    try {
      for (const id of ["job_a", "job_b"])
        await store.create(
          { id, tenantId: "acme", queue: "q", model: "m", priority: "normal", createdAt: T0, traceId: "t" },
          3_600_000,
          undefined,
          admitAlways("acme", "paid", T0),
          T0,
        );
      await queue.add("chat", {}, { jobId: "job_a" });
      // job_a is waiting, not active: BullMQ's moveToFinished refuses it (-3: not in the active
      // list), after the transition ran in the same call.
      fold.defer(
        "job_a",
        store.transitionCall("job_a", "succeeded", fields("job_a"), 60_000, spent),
        step("job_a"),
      );
      const job = await queue.getJob("job_a");
      if (!job) throw new Error("no BullMQ job");
      await expect(job.moveToCompleted({ ok: true }, "no-such-token", false)).rejects.toThrow(/job_a/);
      expect(await plain.hget(keys.job("job_a"), "status")).toBe("succeeded");
      expect(fold.size).toBe(0);
      // Its step ran in the same call, not apart.
      expect(await plain.get(counter)).toBe("1");
      expect(ranApart).toEqual([]);

      // job_b's completion never came (its worker was closing): runPending runs it, its step
      // first, on its own.
      fold.defer(
        "job_b",
        store.transitionCall("job_b", "succeeded", fields("job_b"), 60_000, spent),
        step("job_b"),
      );
      await fold.runPending("job_b");
      expect(await plain.hget(keys.job("job_b"), "status")).toBe("succeeded");
      expect(fold.size).toBe(0);
      expect(ranApart).toEqual(["job_b"]);
      expect(await plain.get(counter)).toBe("2");
      await fold.runPending("job_b"); // nothing left: nothing runs twice
      expect(ranApart).toEqual(["job_b"]);

      // A fold with no program for steps runs a step at once, apart, and keeps the write.
      const bare = new FinishFold(store);
      bare.defer("job_c", store.transitionCall("job_c", "succeeded", fields("job_c"), 60_000), step("job_c"));
      expect(ranApart).toEqual(["job_b", "job_c"]);
      expect(bare.deferred("job_c")?.step).toBeUndefined();
      await eventually(
        () => plain.get(counter),
        (v) => v === "3",
        5_000,
        "job_c's step ran",
      );
      expect(await plain.hget(keys.usage("acme", dayPeriod(T0)), "m|openai/gpt-4o-mini|r")).toBe("2");

      // A completion without a deferred transition is BullMQ's own call.
      expect(`moveToFinished:${bullmqVersion}` in connection).toBe(true);
    } finally {
      await queue.close();
      connection.disconnect();
    }
  });
});
