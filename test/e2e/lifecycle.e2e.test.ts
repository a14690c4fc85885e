import { FREE_KEY, http, OTHER_KEY, PAID_KEY, Stack } from "@switchyard/testing";
import { chat, getJob, submit, waitFinal } from "./helpers";

/** Submit, poll, long-poll, idempotency and tenant isolation against real processes. */
describe("job lifecycle", () => {
  let stack: Stack;
  beforeAll(async () => {
    stack = await Stack.start({ workers: 1, adminToken: "admin-token-for-tests" });
  });
  afterAll(async () => {
    await stack?.stop();
  });

  it("accepts a job with 202 and Location, then long-polls it to the mock's deterministic answer", async () => {
    const res = await submit(
      stack.apiUrl,
      PAID_KEY,
      chat("hello switchyard", { metadata: { order: 42 }, max_tokens: 50 }),
    );
    expect(res.status).toBe(202);
    expect(res.body).toMatchObject({
      object: "job",
      status: "queued",
      model: "gpt-4o-mini",
      priority: "normal",
    });
    // Nothing else is waiting in the tier: the job starts at once.
    expect(res.body.estimated_start_seconds).toBe(0);
    expect(res.headers.get("location")).toBe(`/v1/jobs/${res.body.id}`);
    const done = await waitFinal(stack.apiUrl, PAID_KEY, res.body.id);
    expect(done.status).toBe("succeeded");
    expect(done.result).toEqual({
      output_text: "Echo: hello switchyard",
      finish_reason: "stop",
      provider: "openai",
      model: "gpt-4o-mini",
      attempts: [
        {
          provider: "openai",
          model: "gpt-4o-mini",
          outcome: "succeeded",
          duration_ms: expect.any(Number) as number,
          started_at: expect.any(Number) as number,
        },
      ],
    });
    // gpt-4o-mini in the bundled price table: $0.15 / M input, $0.60 / M output.
    expect(done.usage).toEqual({ input_tokens: 8, output_tokens: 3, cost_usd: 0.000003 });
    expect(done.metadata).toEqual({ order: 42 });
    expect(done.attempts).toBe(1);
    expect(done.started_at).toBeGreaterThanOrEqual(done.created_at);
    expect(done.finished_at).toBeGreaterThanOrEqual(done.started_at ?? Infinity);
  });

  it("polling without wait shows the job and then its final state", async () => {
    const res = await submit(stack.apiUrl, FREE_KEY, chat("poll me"));
    const first = await getJob(stack.apiUrl, FREE_KEY, res.body.id);
    expect(first.status).toBe(200);
    expect(["queued", "running", "succeeded"]).toContain(first.body.status);
    expect((await waitFinal(stack.apiUrl, FREE_KEY, res.body.id)).result?.output_text).toBe("Echo: poll me");
  });

  it("resolves a route alias to the upstream model", async () => {
    const res = await submit(stack.apiUrl, PAID_KEY, { ...chat("alias"), model: "fast" });
    const done = await waitFinal(stack.apiUrl, PAID_KEY, res.body.id);
    expect(done.model).toBe("fast");
    expect(done.result?.model).toBe("gpt-4o-mini");
  });

  it("cuts the answer at max_tokens with finish_reason length", async () => {
    const res = await submit(stack.apiUrl, PAID_KEY, chat("one two three four five", { max_tokens: 2 }));
    const done = await waitFinal(stack.apiUrl, PAID_KEY, res.body.id);
    expect(done.result).toMatchObject({ output_text: "Echo: one", finish_reason: "length" });
  });

  it("runs jobs of a tenant with a dedicated queue", async () => {
    const res = await submit(stack.apiUrl, OTHER_KEY, chat("own queue"));
    expect((await waitFinal(stack.apiUrl, OTHER_KEY, res.body.id)).status).toBe("succeeded");
  });

  it("never shows a job to another tenant", async () => {
    const res = await submit(stack.apiUrl, PAID_KEY, chat("private"));
    const id = res.body.id;
    expect((await getJob(stack.apiUrl, FREE_KEY, id)).status).toBe(404);
    expect((await http("GET", `${stack.apiUrl}/v1/jobs/${id}?wait=1`, { key: OTHER_KEY })).status).toBe(404);
    expect((await http("DELETE", `${stack.apiUrl}/v1/jobs/${id}`, { key: FREE_KEY })).status).toBe(404);
    expect((await waitFinal(stack.apiUrl, PAID_KEY, id)).status).toBe("succeeded");
  });

  describe("Idempotency-Key", () => {
    it("returns the same job for the same key and body", async () => {
      const body = chat("idempotent", { temperature: 0.2 });
      const a = await submit(stack.apiUrl, PAID_KEY, body, { "idempotency-key": "order-1" });
      const b = await submit(
        stack.apiUrl,
        PAID_KEY,
        { temperature: 0.2, ...chat("idempotent") },
        { "idempotency-key": "order-1" },
      );
      expect(a.status).toBe(202);
      expect(b.status).toBe(200);
      expect(b.headers.get("idempotent-replayed")).toBe("true");
      expect(b.body.id).toBe(a.body.id);
    });

    it("refuses the same key with another body with 409", async () => {
      await submit(stack.apiUrl, PAID_KEY, chat("first"), { "idempotency-key": "order-2" });
      const b = await submit(stack.apiUrl, PAID_KEY, chat("second"), { "idempotency-key": "order-2" });
      expect(b.status).toBe(409);
      expect(JSON.stringify(b.body)).toMatch(/different request body/);
    });

    it("keeps keys per tenant", async () => {
      const a = await submit(stack.apiUrl, PAID_KEY, chat("same"), { "idempotency-key": "shared" });
      const b = await submit(stack.apiUrl, FREE_KEY, chat("same"), { "idempotency-key": "shared" });
      expect(b.status).toBe(202);
      expect(b.body.id).not.toBe(a.body.id);
    });
  });

  describe("operations endpoints", () => {
    it("answers /healthz, /readyz and /metrics", async () => {
      expect((await http("GET", `${stack.apiUrl}/healthz`)).status).toBe(200);
      expect((await http("GET", `${stack.apiUrl}/readyz`)).body).toEqual({ status: "ready" });
      const metrics = await http<string>("GET", `${stack.apiUrl}/metrics`);
      expect(metrics.body).toMatch(/switchyard_jobs_enqueued_total\{tier="paid",app="api"\} \d+/);
      expect(metrics.body).toMatch(
        /switchyard_http_request_duration_seconds_bucket\{.*route="\/v1\/jobs".*\}/,
      );
      expect(metrics.body).toMatch(/process_resident_memory_bytes/);
    });

    it("guards Bull Board with the admin token", async () => {
      expect((await http("GET", `${stack.apiUrl}/admin/queues/`)).status).toBe(401);
      const wrong = Buffer.from("admin:nope").toString("base64");
      expect(
        (await http("GET", `${stack.apiUrl}/admin/queues/`, { headers: { authorization: `Basic ${wrong}` } }))
          .status,
      ).toBe(401);
      const right = Buffer.from("admin:admin-token-for-tests").toString("base64");
      const page = await http<string>("GET", `${stack.apiUrl}/admin/queues/`, {
        headers: { authorization: `Basic ${right}` },
      });
      expect(page.status).toBe(200);
      expect(page.body).toMatch(/<html/i);
      const api = await http<{ queues: { name: string }[] }>(
        "GET",
        `${stack.apiUrl}/admin/queues/api/queues`,
        { headers: { authorization: `Basic ${right}` } },
      );
      expect(api.body.queues.map((q) => q.name).sort()).toEqual([
        "jobs-free",
        "jobs-paid",
        "jobs-tenant-other-co",
        "webhooks",
      ]);
    });

    it("never logs tenant keys", () => {
      expect(stack.api.output()).not.toContain(PAID_KEY);
      // Access lines carry the request's id, method and URL, never its headers.
      expect(stack.api.output()).toMatch(/"req":\{"id":"[^"]+","method":"POST","url":"\/v1\/jobs"\}/);
      expect(stack.api.output()).not.toMatch(/authorization/i);
      for (const w of stack.workers) expect(w.output()).not.toContain("sk-upstream-1");
    });
  });
});
