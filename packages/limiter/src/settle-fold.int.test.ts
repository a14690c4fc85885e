import { Queue, Worker } from "bullmq";
import { Redis } from "ioredis";
import { configSchema, type ProviderConfig } from "@switchyard/core";
import {
  admitAlways,
  FinishFold,
  JobStore,
  Keys,
  useBullmqFunctions,
  type FoldedStep,
  type TransitionFields,
} from "@switchyard/queue";
import { deleteKeysUnder, runToCompletion, testRedisUrl, uniquePrefix } from "@switchyard/testing";
import { KeyPool, POOL_PROGRAM } from "./key-pool";

/**
 * The key pool's settlement of a succeeded call, folded into the job's final write (FinishFold
 * with the pool's program: finish.lua runs it first, then the transition, then BullMQ's
 * completion), through BullMQ's own Worker on a real Redis with explicit clock values: the pool
 * ends exactly as when each settlement is its own call before the write, key by key, with no
 * settlement call of its own. A settlement that fails in Redis fails alone.
 */
const T0 = 1_800_000_000_000;
const JOBS = 8;

function provider(): ProviderConfig {
  const cfg = configSchema.parse({
    providers: [
      {
        id: "up",
        type: "openai",
        base_url: "http://127.0.0.1:1/v1",
        keys: [
          { id: "a", secret: "sk-a", rpm: 100, tpm: 10_000 },
          { id: "b", secret: "sk-b", rpm: 100, tpm: 10_000 },
        ],
        timeout_ms: 1000,
      },
    ],
    models: { m: { provider: "up" } },
    tenants: [{ id: "acme", tier: "paid", api_keys: ["sk-paid-0001"] }],
  });
  const p = cfg.providers[0];
  if (!p) throw new Error("no provider");
  return p;
}

describe.each(["function", "script"] as const)(
  "a key's settlement in a job's final write (as a %s)",
  (mode) => {
    const plain = new Redis(testRedisUrl(), { maxRetriesPerRequest: null });
    const prefixes: string[] = [];
    afterAll(async () => {
      await deleteKeysUnder(plain, prefixes);
      plain.disconnect();
    });
    const fields = (id: string): TransitionFields => ({
      finished_at: T0 + 5,
      attempts: 1,
      result: { output_text: `answer to ${id}`, finish_reason: "stop", provider: "up", model: "m" },
      usage: { input_tokens: 7, output_tokens: 3 },
      error: null,
    });

    /**
     * JOBS jobs, one at a time: each reserves a key at its own clock value and settles it with
     * the real usage: folded into its final write, or as its own call before the write. `broken`
     * gives every folded settlement keys that do not fit the pool's program. Answers the prefix,
     * the settlement calls made apart and the errors the fold heard of.
     */
    const run = async (folded: boolean, broken = false) => {
      const prefix = uniquePrefix();
      prefixes.push(prefix);
      const keys = new Keys(prefix);
      const connection = new Redis(testRedisUrl(), { maxRetriesPerRequest: null });
      const store = new JobStore(connection, keys, mode);
      const pool = new KeyPool(connection, keys, mode);
      const errors: string[] = [];
      const fold = new FinishFold(store, {
        before: POOL_PROGRAM,
        onStepError: (id, message) => errors.push(`${id}: ${message}`),
      });
      useBullmqFunctions(connection, keys.luaLibraries(), mode, folded ? fold : undefined);
      const apart = jest.spyOn(pool, "runSettle");
      const p = provider();
      const queue = new Queue("q", { connection, prefix });
      const worker = new Worker(
        "q",
        async (job) => {
          const id = job.id ?? "";
          const at = T0 + 1000 * Number(id.slice(4));
          const r = await pool.reserve({
            provider: p,
            model: "m",
            tenant: { id: "acme", tier: "paid" },
            tokensIn: 50,
            tokensOut: 50,
            returning: false,
            now: at,
          });
          if (!r.granted) throw new Error(`no key for ${id}: ${r.reason}`);
          const settled = pool.settleCall(r.reservation, {
            kind: "ok",
            usage: { input_tokens: 7, output_tokens: 3 },
            durationMs: 20,
            now: at + 20,
          });
          const step: FoldedStep = {
            keys: broken ? settled.keys.slice(0, 2) : settled.keys,
            args: settled.args,
            run: async () => {
              await pool.runSettle(settled);
            },
          };
          const call = store.transitionCall(id, "succeeded", fields(id), 60_000);
          if (folded) fold.defer(id, call, step);
          else {
            await step.run();
            await store.runTransition(call.keys, call.args);
          }
          return { status: "succeeded" };
        },
        { connection, prefix, concurrency: 1, autorun: false },
      );
      const ids = Array.from({ length: JOBS }, (_, i) => `job_${i}`);
      try {
        for (const id of ids) {
          await store.create(
            { id, tenantId: "acme", queue: "q", model: "m", priority: "normal", createdAt: T0, traceId: "t" },
            3_600_000,
            undefined,
            admitAlways("acme", "paid", T0),
            T0,
          );
          await queue.add("chat", { id }, { jobId: id });
        }
        await runToCompletion(worker, queue, JOBS);
      } finally {
        await worker.close();
        await queue.close();
        connection.disconnect();
      }
      const statuses = await Promise.all(ids.map((id) => plain.hget(keys.job(id), "status")));
      return { prefix, statuses, apart: apart.mock.calls.length, errors, pending: fold.size };
    };

    /** Every key of the pool under `prefix`, its type and contents, the prefix masked. */
    const poolState = async (prefix: string) => {
      const state: Record<string, unknown> = {};
      for (const key of (await plain.keys(`${prefix}:kp:*`)).sort()) {
        const name = key.slice(prefix.length);
        const type = await plain.type(key);
        state[name] =
          type === "hash"
            ? await plain.hgetall(key)
            : type === "zset"
              ? await plain.zrange(key, 0, -1, "WITHSCORES")
              : type;
        expect(await plain.pttl(key)).toBeGreaterThan(0);
      }
      return state;
    };

    it("leaves the pool as a settlement of its own before the write does, with no call of its own", async () => {
      const ours = await run(true);
      const theirs = await run(false);
      expect(ours.apart).toBe(0);
      expect(theirs.apart).toBe(JOBS);
      expect(ours.errors).toEqual([]);
      expect(ours.pending).toBe(0);
      expect(ours.statuses).toEqual(theirs.statuses);
      expect(new Set(ours.statuses)).toEqual(new Set(["succeeded"]));
      const a = await poolState(ours.prefix);
      const b = await poolState(theirs.prefix);
      expect(a).toEqual(b);
      // Settled: the real usage counted (7 + 3 per call, not the 100 reserved), no slot held.
      const window = a[":kp:up:a:w:m"] as Record<string, string>;
      expect(Number(window.i) + Number((a[":kp:up:b:w:m"] as Record<string, string>).i)).toBe(7 * JOBS);
      expect(Object.keys(a).filter((k) => k.endsWith(":s:m") || k.endsWith(":s"))).toEqual([]);
    });

    it("fails a settlement alone: the write and BullMQ's completion still go, and the error is heard", async () => {
      const ours = await run(true, true);
      expect(new Set(ours.statuses)).toEqual(new Set(["succeeded"]));
      expect(ours.errors).toHaveLength(JOBS);
      expect(ours.errors[0]).toMatch(/^job_0: /);
      expect(ours.pending).toBe(0);
    });
  },
);
