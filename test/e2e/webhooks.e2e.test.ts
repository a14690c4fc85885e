import { Webhook } from "standardwebhooks";
import {
  eventually,
  http,
  FREE_KEY,
  OTHER_KEY,
  PAID_KEY,
  Receiver,
  Stack,
  testConfig,
  type Received,
} from "@switchyard/testing";
import type { JobView } from "@switchyard/core";
import type { DeliveryView, EndpointView } from "@switchyard/webhooks";
import { chat, getJob, submit, waitFinal } from "./helpers";

type Created = EndpointView & { secret: string };
type List<T> = { object: "list"; data: T[] };

const ALLOW_LOOPBACK = { SWITCHYARD_WEBHOOK_ALLOWLIST: "127.0.0.1/32" };

/** Signed delivery of final job events to real receivers, through the built API and worker. */
describe("webhooks", () => {
  let stack: Stack;
  let receiver: Receiver;
  const cleanup: string[] = [];

  beforeAll(async () => {
    receiver = await Receiver.start();
    stack = await Stack.start({
      workers: 1,
      apiEnv: ALLOW_LOOPBACK,
      workerEnv: ALLOW_LOOPBACK,
      config: (mockUrl, prefix) => ({
        ...testConfig(mockUrl, prefix),
        // Short schedules through configuration; the delivery code keeps its real clock.
        webhooks: {
          retry_schedule_seconds: [0.2, 0.2, 0.2],
          jitter: 0,
          timeout_ms: 2000,
          connect_timeout_ms: 1000,
          disable_after_hours: 0.002,
        },
      }),
    });
  });
  afterEach(async () => {
    // Every endpoint hears every job of its tenant: each test removes its own.
    for (const id of cleanup.splice(0))
      await http("DELETE", `${stack.apiUrl}/v1/webhook-endpoints/${id}`, { key: PAID_KEY });
  });
  afterAll(async () => {
    await stack?.stop();
    await receiver?.close();
  });

  const createEndpoint = async (path: string, extra: Record<string, unknown> = {}, key = PAID_KEY) => {
    const res = await http<Created>("POST", `${stack.apiUrl}/v1/webhook-endpoints`, {
      key,
      json: { url: `${receiver.url}${path}`, ...extra },
    });
    if (res.status !== 201) throw new Error(`create endpoint: ${res.status} ${JSON.stringify(res.body)}`);
    if (key === PAID_KEY) cleanup.push(res.body.id);
    return res.body;
  };
  const runJob = async (content = "hello hooks", key = PAID_KEY, extra: Record<string, unknown> = {}) => {
    const res = await submit(stack.apiUrl, key, chat(content, extra));
    expect(res.status).toBe(202);
    return waitFinal(stack.apiUrl, key, res.body.id);
  };
  const forJob = (path: string, jobId: string): Received[] =>
    receiver.received(path).filter((r) => String(r.headers["webhook-id"]).includes(jobId.slice(4)));
  const waitForJob = (path: string, jobId: string, n: number) =>
    eventually(
      async () => forJob(path, jobId),
      (l) => l.length >= n,
      20_000,
      `${n} deliveries of ${jobId} at ${path}`,
    );
  const headersOf = (r: Received): Record<string, string> => ({
    "webhook-id": String(r.headers["webhook-id"]),
    "webhook-timestamp": String(r.headers["webhook-timestamp"]),
    "webhook-signature": String(r.headers["webhook-signature"]),
  });
  const deliveriesOf = async (jobId: string, key = PAID_KEY) =>
    (await http<List<DeliveryView>>("GET", `${stack.apiUrl}/v1/jobs/${jobId}/deliveries`, { key })).body.data;
  const settled = (jobId: string, n = 1, key = PAID_KEY) =>
    eventually(
      () => deliveriesOf(jobId, key),
      (l) => l.length >= n && l.every((d) => d.status !== "pending"),
      20_000,
      `deliveries of ${jobId} settled`,
    );

  it("delivers a signed job.succeeded that standardwebhooks verifies; the secret is shown only once", async () => {
    const ep = await createEndpoint("/hooks/a", { description: "orders service" });
    expect(ep.secret).toMatch(/^whsec_/);
    expect(ep).toMatchObject({
      object: "webhook_endpoint",
      status: "enabled",
      description: "orders service",
    });
    expect(ep.events).toEqual(["job.succeeded", "job.failed", "job.cancelled", "job.expired"]);
    const listed = await http<List<EndpointView>>("GET", `${stack.apiUrl}/v1/webhook-endpoints`, {
      key: PAID_KEY,
    });
    expect(listed.body.data.map((e) => e.id)).toContain(ep.id);
    const one = await http("GET", `${stack.apiUrl}/v1/webhook-endpoints/${ep.id}`, { key: PAID_KEY });
    expect(JSON.stringify([listed.body, one.body])).not.toContain(ep.secret.slice(6));

    const job = await runJob("signed result", PAID_KEY, { metadata: { order: 42 } });
    const [got] = await waitForJob("/hooks/a", job.id, 1);
    expect(got?.headers["content-type"]).toBe("application/json");
    const payload = new Webhook(ep.secret).verify(got?.body ?? "", headersOf(got as Received)) as {
      type: string;
      data: JobView;
    };
    expect(payload.type).toBe("job.succeeded");
    expect(payload.data).toEqual((await getJob(stack.apiUrl, PAID_KEY, job.id)).body);
    expect(payload.data.metadata).toEqual({ order: 42 });

    const [d] = await settled(job.id);
    expect(d).toMatchObject({ status: "succeeded", attempts: 1, response_status: 200, endpoint_id: ep.id });
    expect(d?.webhook_id).toBe(got?.headers["webhook-id"]);
    const byId = await http<DeliveryView>("GET", `${stack.apiUrl}/v1/webhook-deliveries/${d?.id}`, {
      key: PAID_KEY,
    });
    expect(byId.body.id).toBe(d?.id);
    const listedDeliveries = await http<List<DeliveryView>>(
      "GET",
      `${stack.apiUrl}/v1/webhook-endpoints/${ep.id}/deliveries?status=succeeded`,
      { key: PAID_KEY },
    );
    expect(listedDeliveries.body.data.map((x) => x.id)).toContain(d?.id);

    // Another tenant sees none of it.
    for (const path of [
      `/v1/webhook-endpoints/${ep.id}`,
      `/v1/webhook-deliveries/${d?.id}`,
      `/v1/jobs/${job.id}/deliveries`,
    ])
      expect((await http("GET", `${stack.apiUrl}${path}`, { key: OTHER_KEY })).status).toBe(404);
    expect(
      (await http("DELETE", `${stack.apiUrl}/v1/webhook-endpoints/${ep.id}`, { key: OTHER_KEY })).status,
    ).toBe(404);

    expect(
      (await http("DELETE", `${stack.apiUrl}/v1/webhook-endpoints/${ep.id}`, { key: PAID_KEY })).status,
    ).toBe(200);
    expect(
      (await http("GET", `${stack.apiUrl}/v1/webhook-endpoints/${ep.id}`, { key: PAID_KEY })).status,
    ).toBe(404);
  });

  it("retries after a 500 with the same webhook-id, and waits out a 429's Retry-After", async () => {
    const ep = await createEndpoint("/hooks/flaky");
    const seen = new Map<string, number>();
    receiver.on("/hooks/flaky", (_n, r) => {
      const id = String(r.headers["webhook-id"]);
      const n = seen.get(id) ?? 0;
      seen.set(id, n + 1);
      if (n === 0) return { status: 500 };
      if (n === 1) return { status: 429, headers: { "retry-after": "1" } };
      return { status: 204 };
    });
    const job = await runJob("flaky receiver");
    const got = await waitForJob("/hooks/flaky", job.id, 3);
    expect(new Set(got.map((r) => r.headers["webhook-id"])).size).toBe(1);
    for (const r of got) expect(() => new Webhook(ep.secret).verify(r.body, headersOf(r))).not.toThrow();
    // The schedule says 0.2 s; the receiver asked for 1 s and got at least that.
    expect((got[2]?.at ?? 0) - (got[1]?.at ?? 0)).toBeGreaterThanOrEqual(950);
    const [d] = await settled(job.id);
    expect(d).toMatchObject({ status: "succeeded", attempts: 3, response_status: 204 });
  });

  it("retries after a timeout and after a refused connection", async () => {
    const closed = await Receiver.start();
    const closedUrl = `${closed.url}/hooks/nobody`;
    await closed.close();
    const nobody = await http<Created>("POST", `${stack.apiUrl}/v1/webhook-endpoints`, {
      key: PAID_KEY,
      json: { url: closedUrl },
    });
    cleanup.push(nobody.body.id);
    const slow = await createEndpoint("/hooks/slow");
    // The first attempt outlives timeout_ms (2 s here); the retry is answered at once.
    receiver.on("/hooks/slow", (n) => (n === 0 ? { status: 200, delayMs: 4_000 } : { status: 200 }));
    const job = await runJob("timeouts");
    const got = await waitForJob("/hooks/slow", job.id, 2);
    expect(got[0]?.headers["webhook-id"]).toBe(got[1]?.headers["webhook-id"]);
    const list = await settled(job.id, 2);
    expect(list.find((d) => d.endpoint_id === slow.id)).toMatchObject({ status: "succeeded", attempts: 2 });
    const dead = list.find((d) => d.endpoint_id === nobody.body.id);
    expect(dead).toMatchObject({ status: "failed", attempts: 4 });
    expect(dead?.last_error).toMatch(/connection failed: ECONNREFUSED/);
  });

  it("disables an endpoint that answers 410 Gone; it gets nothing more until enabled again", async () => {
    const gone = await createEndpoint("/hooks/gone");
    const marker = await createEndpoint("/hooks/marker");
    receiver.on("/hooks/gone", () => ({ status: 410 }));
    const first = await runJob("to a gone receiver");
    await waitForJob("/hooks/gone", first.id, 1);
    const ep = await eventually(
      async () =>
        (
          await http<EndpointView>("GET", `${stack.apiUrl}/v1/webhook-endpoints/${gone.id}`, {
            key: PAID_KEY,
          })
        ).body,
      (e) => e.status === "disabled",
      20_000,
      "endpoint disabled",
    );
    expect(ep.disabled_reason).toMatch(/410 Gone/);
    const failed = (await settled(first.id, 2)).find((d) => d.endpoint_id === gone.id);
    expect(failed).toMatchObject({ status: "failed", attempts: 1, response_status: 410 });

    const second = await runJob("after the 410");
    await waitForJob("/hooks/marker", second.id, 1);
    expect((await deliveriesOf(second.id)).map((d) => d.endpoint_id)).toEqual([marker.id]);
    expect(forJob("/hooks/gone", second.id)).toHaveLength(0);

    const enabled = await http<EndpointView>(
      "POST",
      `${stack.apiUrl}/v1/webhook-endpoints/${gone.id}/enable`,
      { key: PAID_KEY },
    );
    expect(enabled.body.status).toBe("enabled");
    expect(enabled.body.disabled_reason).toBeUndefined();
  });

  it("dead-letters a delivery after the last attempt, then replays one, or all failed, with the same webhook-id", async () => {
    const ep = await createEndpoint("/hooks/dead");
    let up = false;
    receiver.on("/hooks/dead", () => ({ status: up ? 200 : 500 }));
    const a = await runJob("dead letter a");
    const b = await runJob("dead letter b");
    // One try plus three retries of the schedule, then the dead letter.
    await waitForJob("/hooks/dead", a.id, 4);
    await waitForJob("/hooks/dead", b.id, 4);
    const [da] = await settled(a.id);
    const [db] = await settled(b.id);
    expect(da).toMatchObject({ status: "failed", attempts: 4, response_status: 500 });
    expect(db?.status).toBe("failed");
    const dead = await http<List<DeliveryView>>(
      "GET",
      `${stack.apiUrl}/v1/webhook-endpoints/${ep.id}/deliveries?status=failed`,
      {
        key: PAID_KEY,
      },
    );
    expect(dead.body.data.map((d) => d.id).sort()).toEqual([da?.id, db?.id].sort());

    up = true;
    const replay = await http<DeliveryView>(
      "POST",
      `${stack.apiUrl}/v1/webhook-deliveries/${da?.id}/replay`,
      { key: PAID_KEY },
    );
    expect(replay.status).toBe(202);
    const again = await waitForJob("/hooks/dead", a.id, 5);
    expect(new Set(again.map((r) => r.headers["webhook-id"])).size).toBe(1);
    const afterA = await eventually(
      async () =>
        (
          await http<DeliveryView>("GET", `${stack.apiUrl}/v1/webhook-deliveries/${da?.id}`, {
            key: PAID_KEY,
          })
        ).body,
      (d) => d.status === "succeeded",
      20_000,
      "replayed delivery succeeded",
    );
    expect(afterA).toMatchObject({ attempts: 5, replays: 1 });

    const all = await http<{ replayed: number }>(
      "POST",
      `${stack.apiUrl}/v1/webhook-endpoints/${ep.id}/replay-failed`,
      { key: PAID_KEY },
    );
    expect(all.body.replayed).toBe(1);
    await waitForJob("/hooks/dead", b.id, 5);
    const [dbAfter] = await settled(b.id);
    expect(dbAfter).toMatchObject({ status: "succeeded", replays: 1 });
  });

  it("signs with both secrets during a rotation's grace period, and with the new one alone after", async () => {
    const ep = await createEndpoint("/hooks/rot");
    const rotated = await http<Created>(
      "POST",
      `${stack.apiUrl}/v1/webhook-endpoints/${ep.id}/rotate-secret`,
      {
        key: PAID_KEY,
        json: { grace_seconds: 3600 },
      },
    );
    expect(rotated.body.secret).toMatch(/^whsec_/);
    expect(rotated.body.secret).not.toBe(ep.secret);
    expect(rotated.body.previous_secret_expires_at).toBeGreaterThan(Date.now() / 1000);
    const j1 = await runJob("during grace");
    const [r1] = await waitForJob("/hooks/rot", j1.id, 1);
    expect(String(r1?.headers["webhook-signature"]).split(" ")).toHaveLength(2);
    for (const secret of [ep.secret, rotated.body.secret])
      expect(() => new Webhook(secret).verify(r1?.body ?? "", headersOf(r1 as Received))).not.toThrow();

    const now = await http<Created>("POST", `${stack.apiUrl}/v1/webhook-endpoints/${ep.id}/rotate-secret`, {
      key: PAID_KEY,
      json: { grace_seconds: 0 },
    });
    const j2 = await runJob("no grace");
    const [r2] = await waitForJob("/hooks/rot", j2.id, 1);
    expect(String(r2?.headers["webhook-signature"]).split(" ")).toHaveLength(1);
    expect(() =>
      new Webhook(now.body.secret).verify(r2?.body ?? "", headersOf(r2 as Received)),
    ).not.toThrow();
    expect(() =>
      new Webhook(rotated.body.secret).verify(r2?.body ?? "", headersOf(r2 as Received)),
    ).toThrow();
  });

  it("signs a job's own webhook.url with the tenant secret, which must exist first", async () => {
    const url = `${receiver.url}/hooks/own`;
    const refused = await submit(stack.apiUrl, FREE_KEY, chat("own url", { webhook: { url } }));
    expect(refused.status).toBe(400);
    expect(JSON.stringify(refused.body)).toMatch(/POST \/v1\/webhook-secret/);
    expect((await http("GET", `${stack.apiUrl}/v1/webhook-secret`, { key: FREE_KEY })).status).toBe(404);
    const created = await http<{ secret: string; created_at: number }>(
      "POST",
      `${stack.apiUrl}/v1/webhook-secret`,
      { key: FREE_KEY },
    );
    expect(created.body.secret).toMatch(/^whsec_/);
    const view = await http("GET", `${stack.apiUrl}/v1/webhook-secret`, { key: FREE_KEY });
    expect(JSON.stringify(view.body)).not.toContain(created.body.secret.slice(6));

    const job = await runJob("own url", FREE_KEY, { webhook: { url } });
    const [got] = await waitForJob("/hooks/own", job.id, 1);
    const payload = new Webhook(created.body.secret).verify(got?.body ?? "", headersOf(got as Received)) as {
      data: JobView;
    };
    expect(payload.data.id).toBe(job.id);
    const [d] = await settled(job.id, 1, FREE_KEY);
    expect(d).toMatchObject({ endpoint_id: null, url, status: "succeeded" });
  });

  it("sends job.failed and job.cancelled, and each endpoint only the events it chose", async () => {
    const picky = await createEndpoint("/hooks/picky", { events: ["job.failed", "job.cancelled"] });
    const all = await createEndpoint("/hooks/all");
    const failed = await runJob("[[mock:status=400]] bad request upstream");
    expect(failed.status).toBe("failed");
    const ok = await runJob("fine");
    const slow = await submit(stack.apiUrl, PAID_KEY, chat("[[mock:delay=10000]] slow"));
    const cancelled = await http<JobView>("DELETE", `${stack.apiUrl}/v1/jobs/${slow.body.id}`, {
      key: PAID_KEY,
    });
    expect(cancelled.body.status).toBe("cancelled");

    const types = async (path: string, jobId: string, n: number) =>
      (await waitForJob(path, jobId, n)).map((r) => (JSON.parse(r.body) as { type: string }).type);
    expect(await types("/hooks/picky", failed.id, 1)).toEqual(["job.failed"]);
    expect(await types("/hooks/picky", slow.body.id, 1)).toEqual(["job.cancelled"]);
    expect(await types("/hooks/all", ok.id, 1)).toEqual(["job.succeeded"]);
    await settled(ok.id);
    expect(forJob("/hooks/picky", ok.id)).toHaveLength(0);
    expect((await deliveriesOf(ok.id)).map((d) => d.endpoint_id)).toEqual([all.id]);
    const failedTargets = (await settled(failed.id, 2)).map((d) => d.endpoint_id).sort();
    expect(failedTargets).toEqual([picky.id, all.id].sort());
  });

  it("does not follow a redirect, even to an address the allowlist would permit", async () => {
    const internal = await Receiver.start();
    try {
      await createEndpoint("/hooks/redirect");
      receiver.on("/hooks/redirect", () => ({
        status: 307,
        headers: { location: `${internal.url}/internal` },
      }));
      const job = await runJob("redirected");
      const [d] = await settled(job.id);
      expect(d).toMatchObject({ status: "failed", response_status: 307 });
      expect(d?.last_error).toMatch(/redirects are not followed/);
      expect(forJob("/hooks/redirect", job.id)).toHaveLength(4);
      expect(internal.requests).toHaveLength(0);
    } finally {
      await internal.close();
    }
  });

  it("disables an endpoint whose deliveries keep failing for longer than disable_after_hours", async () => {
    const ep = await createEndpoint("/hooks/down");
    receiver.on("/hooks/down", () => ({ status: 503 }));
    const first = await runJob("down 1");
    await settled(first.id);
    const failing = (
      await http<EndpointView>("GET", `${stack.apiUrl}/v1/webhook-endpoints/${ep.id}`, { key: PAID_KEY })
    ).body;
    expect(failing.failing_since).toBeDefined();
    // disable_after_hours is 0.002 (7.2 s) here; let that pass since the first failure.
    await eventually(
      async () => Date.now() / 1000,
      (now) => now > (failing.failing_since ?? 0) + 7.5,
      15_000,
      "failing period",
    );
    const second = await runJob("down 2");
    const [d] = await settled(second.id);
    expect(d).toMatchObject({ status: "failed", attempts: 1 });
    const disabled = (
      await http<EndpointView>("GET", `${stack.apiUrl}/v1/webhook-endpoints/${ep.id}`, { key: PAID_KEY })
    ).body;
    expect(disabled.status).toBe("disabled");
    expect(disabled.disabled_reason).toMatch(/failed since .* without a success/);
  });
});

/** An API that allows no internal target (only the name "localhost", to test the worker's own check). */
describe("webhook targets are checked at registration, submission and delivery", () => {
  let stack: Stack;
  let receiver: Receiver;
  beforeAll(async () => {
    receiver = await Receiver.start();
    stack = await Stack.start({ workers: 0, apiEnv: { SWITCHYARD_WEBHOOK_ALLOWLIST: "localhost" } });
  });
  afterAll(async () => {
    await stack?.stop();
    await receiver?.close();
  });
  const port = () => new URL(receiver.url).port;

  it.each([
    ["loopback", () => `http://127.0.0.1:${port()}/x`],
    ["private 10/8", () => "http://10.0.0.1/x"],
    ["cloud metadata", () => "http://169.254.169.254/latest/meta-data/"],
    ["IPv6 loopback", () => `http://[::1]:${port()}/x`],
    ["IPv4-mapped IPv6 loopback", () => `http://[::ffff:127.0.0.1]:${port()}/x`],
    ["CGNAT", () => "http://100.64.0.1/x"],
    ["unique-local IPv6", () => "http://[fd00::1]/x"],
    ["a non-http scheme", () => "gopher://example.com/x"],
  ])("refuses %s at registration and at submission with 400", async (_what, url) => {
    const reg = await http<{ error: { details: { path: string }[] } }>(
      "POST",
      `${stack.apiUrl}/v1/webhook-endpoints`,
      {
        key: PAID_KEY,
        json: { url: url() },
      },
    );
    expect(reg.status).toBe(400);
    expect(reg.body.error.details.map((d) => d.path)).toEqual(["url"]);
    const job = await submit(stack.apiUrl, PAID_KEY, chat("x", { webhook: { url: url() } }));
    expect(job.status).toBe(400);
    expect(JSON.stringify(job.body)).toContain("webhook.url");
  });

  it("streams a job's status changes as server-sent events, from queued to succeeded", async () => {
    const job = await submit(stack.apiUrl, PAID_KEY, chat("[[mock:delay=300]] watch me"));
    expect(
      (await http("GET", `${stack.apiUrl}/v1/jobs/${job.body.id}/events`, { key: OTHER_KEY })).status,
    ).toBe(404);
    const res = await fetch(`${stack.apiUrl}/v1/jobs/${job.body.id}/events`, {
      headers: { authorization: `Bearer ${PAID_KEY}` },
    });
    expect(res.headers.get("content-type")).toMatch(/^text\/event-stream/);
    const reader = (res.body as ReadableStream<Uint8Array>).getReader();
    const decoder = new TextDecoder();
    let text = "";
    const first = await reader.read();
    text += decoder.decode(first.value);
    expect(text).toMatch(/"status":"queued"/);
    await stack.addWorker();
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      text += decoder.decode(value);
    }
    const events = text
      .split("\n\n")
      .filter((b) => b.includes("data: "))
      .map((b) => ({
        event: /event: (\S+)/.exec(b)?.[1],
        job: JSON.parse(/data: (.*)/.exec(b)?.[1] ?? "{}") as JobView,
      }));
    const statuses = events.map((e) => e.job.status);
    expect(statuses[0]).toBe("queued");
    expect(statuses[statuses.length - 1]).toBe("succeeded");
    expect(statuses.every((s) => ["queued", "running", "succeeded"].includes(s))).toBe(true);
    expect(new Set(statuses).size).toBe(statuses.length);
    expect(events.every((e) => e.event === "status")).toBe(true);
    expect(events[events.length - 1]?.job).toEqual((await getJob(stack.apiUrl, PAID_KEY, job.body.id)).body);
  });

  it("checks the address again at delivery: a name that resolves to loopback is refused by the worker", async () => {
    if (stack.workers.length === 0) await stack.addWorker();
    // Allowed by the API's allowlist entry "localhost"; the worker has no allowlist.
    const ep = await http<Created>("POST", `${stack.apiUrl}/v1/webhook-endpoints`, {
      key: PAID_KEY,
      json: { url: `http://localhost:${port()}/hooks/local` },
    });
    expect(ep.status).toBe(201);
    const job = await submit(stack.apiUrl, PAID_KEY, chat("to localhost"));
    await waitFinal(stack.apiUrl, PAID_KEY, job.body.id);
    const [d] = await eventually(
      async () =>
        (
          await http<List<DeliveryView>>("GET", `${stack.apiUrl}/v1/jobs/${job.body.id}/deliveries`, {
            key: PAID_KEY,
          })
        ).body.data,
      (l) => l.length === 1 && l[0]?.status === "failed",
      20_000,
      "blocked delivery",
    );
    expect(d?.attempts).toBe(1);
    expect(d?.last_error).toMatch(/localhost resolves to .*loopback/);
    expect(receiver.requests).toHaveLength(0);
  });
});
