import { http, PAID_KEY, Stack, eventually } from "@switchyard/testing";
import type { JobView } from "@switchyard/core";
import { chat, getJob, submit, waitFinal } from "./helpers";

interface MockStats {
  requests: number;
}

/** Cancel of queued and running jobs; expiry of jobs that never started in time. */
describe("cancel and expiry", () => {
  let stack: Stack;
  beforeAll(async () => {
    stack = await Stack.start({ workers: 0 });
  });
  afterAll(async () => {
    await stack?.stop();
  });

  it("cancels queued jobs at once and never runs them; expires jobs past ttl_seconds", async () => {
    const queued = await submit(stack.apiUrl, PAID_KEY, chat("never run me"));
    const del = await http<JobView>("DELETE", `${stack.apiUrl}/v1/jobs/${queued.body.id}`, { key: PAID_KEY });
    expect(del.status).toBe(200);
    expect(del.body.status).toBe("cancelled");
    expect(
      (await http("DELETE", `${stack.apiUrl}/v1/jobs/${queued.body.id}`, { key: PAID_KEY })).status,
    ).toBe(409);

    const expiring = await submit(stack.apiUrl, PAID_KEY, chat("too late", { ttl_seconds: 1 }));
    // Let its deadline pass while no worker runs.
    await eventually(
      async () => Date.now(),
      (now) => now > expiring.body.created_at * 1000 + 1100,
      5000,
      "deadline",
    );

    await stack.addWorker();
    const marker = await submit(stack.apiUrl, PAID_KEY, chat("runs"));
    expect((await waitFinal(stack.apiUrl, PAID_KEY, marker.body.id)).status).toBe("succeeded");
    const exp = await waitFinal(stack.apiUrl, PAID_KEY, expiring.body.id);
    expect(exp.status).toBe("expired");
    expect(exp.started_at).toBeUndefined();
    const stats = await http<MockStats>("GET", `${stack.mockUrl}/_stats`);
    expect(stats.body.requests).toBe(1); // only "runs" reached the upstream
    expect((await getJob(stack.apiUrl, PAID_KEY, queued.body.id)).body.status).toBe("cancelled");
  });

  it("cancels a running job by aborting its upstream call", async () => {
    if (stack.workers.length === 0) await stack.addWorker();
    const res = await submit(stack.apiUrl, PAID_KEY, chat("[[mock:hang]] forever"));
    await eventually(
      () => getJob(stack.apiUrl, PAID_KEY, res.body.id),
      (r) => r.body.status === "running",
      10_000,
      "running",
    );
    const del = await http<JobView>("DELETE", `${stack.apiUrl}/v1/jobs/${res.body.id}`, { key: PAID_KEY });
    expect(del.status).toBe(200);
    expect(del.body.status).toBe("cancelled");
    expect(del.body.error?.type).toBe("cancelled");
    // The worker is free again: a new job runs.
    const next = await submit(stack.apiUrl, PAID_KEY, chat("after cancel"));
    expect((await waitFinal(stack.apiUrl, PAID_KEY, next.body.id)).status).toBe("succeeded");
  });
});
