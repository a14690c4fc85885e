import { join } from "node:path";
import {
  FREE_KEY,
  PAID_KEY,
  REPO_ROOT,
  Stack,
  eventually,
  freePort,
  startApp,
  testConfig,
} from "@switchyard/testing";
import type { JobView } from "@switchyard/core";
import { chat, getJob, submit, waitFinal } from "./helpers";

/** Crash recovery, graceful shutdown and tier scheduling across real worker processes. */
describe("workers", () => {
  it("finishes the job of a SIGKILLed worker on another worker", async () => {
    const stack = await Stack.start({ workers: 1 });
    try {
      const res = await submit(stack.apiUrl, PAID_KEY, chat("[[mock:delay=30000,times=1,id=crash]] survive"));
      await eventually(
        () => getJob(stack.apiUrl, PAID_KEY, res.body.id),
        (r) => r.body.status === "running",
        10_000,
        "running",
      );
      await stack.workers[0]?.kill();
      await stack.addWorker();
      const done = await waitFinal(stack.apiUrl, PAID_KEY, res.body.id, 30);
      expect(done.status).toBe("succeeded");
      expect(done.result?.output_text).toBe("Echo: survive");
      expect(stack.workers[1]?.output()).toMatch(/job stalled/);
    } finally {
      await stack.stop();
    }
  });

  it("on SIGTERM finishes running jobs within the grace period, then exits 0", async () => {
    const stack = await Stack.start({ workers: 1 });
    try {
      const res = await submit(stack.apiUrl, PAID_KEY, chat("[[mock:delay=800]] finish me"));
      await eventually(
        () => getJob(stack.apiUrl, PAID_KEY, res.body.id),
        (r) => r.body.status === "running",
        10_000,
        "running",
      );
      const code = await stack.workers[0]?.stop("SIGTERM");
      expect(code).toBe(0);
      expect((await getJob(stack.apiUrl, PAID_KEY, res.body.id)).body.status).toBe("succeeded");
    } finally {
      await stack.stop();
    }
  });

  it("on SIGTERM as soon as it says it is ready (the rest still starting), shuts down gracefully and exits 0", async () => {
    // "worker ready" is logged when the dispatcher starts taking jobs; the webhook parts start
    // after it. A signal in between used to find no handler and kill the process outright.
    const stack = await Stack.start({ workers: 1 });
    try {
      const code = await stack.workers[0]?.stop("SIGTERM");
      expect(code).toBe(0);
      expect(stack.workers[0]?.output()).toMatch(/shutting down/);
      expect(stack.workers[0]?.output()).toMatch(/"msg":"stopped"/);
    } finally {
      await stack.stop();
    }
  });

  it("on SIGTERM while still waiting for Redis (no job taken yet), exits 0 at once", async () => {
    const worker = startApp("worker", {
      REDIS_URL: `redis://127.0.0.1:${await freePort()}`, // nothing listens there
      SWITCHYARD_CONFIG: join(REPO_ROOT, "config", "demo.yaml"),
      METRICS_PORT: String(await freePort()),
    });
    await worker.waitForOutput(/config loaded/);
    expect(await worker.stop("SIGTERM", 5_000)).toBe(0);
    expect(worker.output()).toMatch(/stopped while starting, before taking any job/);
  });

  it("hands running jobs back when the grace period ends, and another worker finishes them", async () => {
    const stack = await Stack.start({
      workers: 1,
      config: (url, prefix) => testConfig(url, prefix, { worker: { shutdown_grace_ms: 200 } }),
    });
    try {
      const res = await submit(
        stack.apiUrl,
        PAID_KEY,
        chat("[[mock:hang,times=1,id=graceful]] hand me back"),
      );
      await eventually(
        () => getJob(stack.apiUrl, PAID_KEY, res.body.id),
        (r) => r.body.status === "running",
        10_000,
        "running",
      );
      expect(await stack.workers[0]?.stop("SIGTERM")).toBe(0);
      expect((await getJob(stack.apiUrl, PAID_KEY, res.body.id)).body.status).toBe("queued");
      await stack.addWorker();
      const done = await waitFinal(stack.apiUrl, PAID_KEY, res.body.id);
      expect(done.status).toBe("succeeded");
      expect(done.attempts).toBe(2); // two upstream calls were started, one of them charged
    } finally {
      await stack.stop();
    }
  });

  it("starts paid work before free work when both wait, without starving free work", async () => {
    // One slot, weights 3:1, and a backlog of both tiers queued before the worker starts.
    const stack = await Stack.start({
      workers: 0,
      config: (url, prefix) =>
        testConfig(url, prefix, { worker: { concurrency: 1, tier_weights: { paid: 3, free: 1 } } }),
    });
    try {
      const free = await Promise.all(
        [1, 2, 3, 4].map((i) => submit(stack.apiUrl, FREE_KEY, chat(`free ${i}`))),
      );
      const paid = await Promise.all(
        [1, 2, 3, 4, 5, 6].map((i) => submit(stack.apiUrl, PAID_KEY, chat(`paid ${i}`))),
      );
      await stack.addWorker();
      const finished: (JobView & { tier: string })[] = [];
      for (const r of paid)
        finished.push({ ...(await waitFinal(stack.apiUrl, PAID_KEY, r.body.id)), tier: "paid" });
      for (const r of free)
        finished.push({ ...(await waitFinal(stack.apiUrl, FREE_KEY, r.body.id)), tier: "free" });
      const order = finished.sort((a, b) => (a.started_at ?? 0) - (b.started_at ?? 0)).map((j) => j.tier);
      // While both tiers wait, smooth weighted round robin at 3:1 gives free one slot in four
      // (the exact sequence is FairGate's unit test; here the first grant may go either way).
      const firstEight = order.slice(0, 8);
      expect(firstEight.filter((t) => t === "paid").length).toBeGreaterThanOrEqual(5);
      expect(firstEight.filter((t) => t === "free").length).toBeGreaterThanOrEqual(2);
      expect(order.indexOf("free")).toBeLessThanOrEqual(4);
      expect(order.slice(-2)).toEqual(["free", "free"]);
    } finally {
      await stack.stop();
    }
  });
});
