import { createHash } from "node:crypto";
import { Redis } from "ioredis";
import type { JobView } from "@switchyard/core";
import { PAID_KEY, Stack, eventually, testConfig, type ConfigDoc } from "@switchyard/testing";
import { chat, clearFaults, getJob, mockStats, standingFault, submit, trail, waitFinal } from "./helpers";

/**
 * Regressions of the hardening issue, each against the real processes: a stale Idempotency-Key
 * claim is taken over, upstream text never carries a secret, an open circuit makes jobs wait
 * instead of failing them, and a SIGKILLed worker's job runs again within the default bounds.
 */
describe("hardening", () => {
  describe("idempotency and secrets", () => {
    let stack: Stack;
    let redis: Redis;
    beforeAll(async () => {
      stack = await Stack.start({ workers: 1 });
      redis = new Redis(stack.redisUrl);
    });
    afterAll(async () => {
      redis?.disconnect();
      await stack?.stop();
    });

    it("takes over an Idempotency-Key whose job record never appeared (a crash between the two)", async () => {
      // What an API killed between claiming the key and writing the record left behind.
      const idemKey = "order-crashed-1";
      const digest = createHash("sha256").update(idemKey).digest("hex");
      await redis.set(
        `${stack.prefix}:idem:paid-co:${digest}`,
        JSON.stringify({ fp: "f".repeat(64), job_id: "job_0000000000000000000000000000z" }),
        "PX",
        86_400_000,
      );
      const first = await submit(stack.apiUrl, PAID_KEY, chat("retry me"), { "idempotency-key": idemKey });
      expect(first.status).toBe(202);
      expect((await waitFinal(stack.apiUrl, PAID_KEY, first.body.id)).status).toBe("succeeded");
      const again = await submit(stack.apiUrl, PAID_KEY, chat("retry me"), { "idempotency-key": idemKey });
      expect(again.status).toBe(200);
      expect(again.body.id).toBe(first.body.id);
      expect(again.headers.get("idempotent-replayed")).toBe("true");
    });

    it("never shows a provider key an upstream echoed back, in the job, its events or the logs", async () => {
      const secrets = ["sk-upstream-1", "gm-upstream-1", "sk-ant-upstream-1"];
      const failed: JobView[] = [];
      for (const model of ["gpt-4o-mini", "gemini-2.5-flash", "claude-sonnet-4-6"]) {
        const res = await submit(
          stack.apiUrl,
          PAID_KEY,
          chat("[[mock:status=400,echo_key]] leak", { model }),
        );
        expect(res.status).toBe(202);
        failed.push(await waitFinal(stack.apiUrl, PAID_KEY, res.body.id));
      }
      for (const job of failed) {
        expect(job.status).toBe("failed");
        expect(job.error?.message).toMatch(/Invalid request made with key \[redacted\]/);
      }
      const shown =
        JSON.stringify(failed) + stack.api.output() + stack.workers.map((w) => w.output()).join("");
      for (const s of secrets) expect(shown).not.toContain(s);
    });
  });

  describe("an upstream outage is absorbed by the queue", () => {
    let stack: Stack;
    let redis: Redis;
    const OPEN_MS = 5_000;
    beforeAll(async () => {
      stack = await Stack.start({
        workers: 1,
        config: (mockUrl, prefix) => {
          const cfg = testConfig(mockUrl, prefix, { queue: { attempts: 1 } });
          const [openai] = cfg.providers as Record<string, unknown>[];
          openai!.breaker = {
            min_calls: 2,
            failure_rate: 0.5,
            window_ms: 60_000,
            open_ms: OPEN_MS,
            max_open_ms: OPEN_MS,
          };
          return cfg;
        },
      });
      redis = new Redis(stack.redisUrl);
    });
    afterAll(async () => {
      redis?.disconnect();
      await stack?.stop();
    });

    it("holds jobs while the only link's circuit is open, charging no attempt, and runs them when it closes", async () => {
      await standingFault(stack.mockUrl, { format: "openai", fault: "status=500" });
      for (const text of ["o1", "o2"]) {
        const res = await submit(stack.apiUrl, PAID_KEY, chat(text));
        const done = await waitFinal(stack.apiUrl, PAID_KEY, res.body.id);
        expect(trail(done.error?.attempts)).toEqual(["openai:failed:server"]);
      }
      const callsWhenOpened = (await mockStats(stack.mockUrl)).formats.openai ?? 0;
      // The circuit is open now: these wait in the queue instead of failing circuit_open.
      const waiting = await Promise.all(
        Array.from({ length: 6 }, (_, i) => submit(stack.apiUrl, PAID_KEY, chat(`wait ${i}`))),
      );
      const expiring = await submit(stack.apiUrl, PAID_KEY, chat("too late", { ttl_seconds: 1 }));
      // Each waiting job has been taken by the worker, found the circuit open and gone back.
      for (const w of waiting)
        await eventually(
          () => redis.hget(`${stack.prefix}:job:${w.body.id}`, "attempt_log"),
          (log) => (log ?? "").includes("circuit_open"),
          4_000,
          "the worker to find the circuit open",
        );
      for (const w of waiting) {
        const now = (await getJob(stack.apiUrl, PAID_KEY, w.body.id)).body;
        expect(now.status).toBe("queued");
        expect(now.attempts).toBe(0);
      }
      expect((await mockStats(stack.mockUrl)).formats.openai ?? 0).toBe(callsWhenOpened);
      await clearFaults(stack.mockUrl);

      for (const w of waiting) {
        const done = await waitFinal(stack.apiUrl, PAID_KEY, w.body.id, 30);
        expect(done.status).toBe("succeeded");
        expect(done.attempts).toBe(1);
        const t = trail(done.result?.attempts);
        expect(t[t.length - 1]).toBe("openai:succeeded");
        expect(t.slice(0, -1).every((a) => a === "openai:skipped:circuit_open")).toBe(true);
      }
      // Every accepted job ends: the one whose deadline passed while it waited expired.
      const late = await waitFinal(stack.apiUrl, PAID_KEY, expiring.body.id, 30);
      expect(late.status).toBe("expired");
      // One probe, then the rest: no call was made while the circuit was open.
      expect((await mockStats(stack.mockUrl)).formats.openai).toBe(callsWhenOpened + waiting.length);
    });
  });

  it("runs a SIGKILLed worker's job again within the default lock and stall settings", async () => {
    const stack = await Stack.start({
      workers: 1,
      config: (mockUrl, prefix): ConfigDoc => {
        const cfg = testConfig(mockUrl, prefix);
        const worker = cfg.worker as Record<string, unknown>;
        delete worker.lock_duration_ms;
        delete worker.stalled_interval_ms;
        return cfg;
      },
    });
    try {
      const res = await submit(
        stack.apiUrl,
        PAID_KEY,
        chat("[[mock:delay=30000,times=1,id=crash-default]] again"),
      );
      await eventually(
        () => getJob(stack.apiUrl, PAID_KEY, res.body.id),
        (r) => r.body.status === "running",
        10_000,
        "running",
      );
      const killedAt = Date.now();
      await stack.workers[0]?.kill();
      await stack.addWorker();
      // With the old defaults (30 s lock, 30 s stalled check) this took up to a minute.
      const done = await waitFinal(stack.apiUrl, PAID_KEY, res.body.id, 30);
      expect(done.status).toBe("succeeded");
      console.info(
        `SIGKILLed worker's job finished by another worker ${Date.now() - killedAt} ms after the kill`,
      );
    } finally {
      await stack.stop();
    }
  });
});
