import { http, PAID_KEY, Stack } from "@switchyard/testing";
import { chat, submit } from "./helpers";

/** Every client mistake gets a 4xx that says what to fix, never a 500, and queues nothing. */
describe("bad input", () => {
  let stack: Stack;
  beforeAll(async () => {
    stack = await Stack.start({ workers: 0 });
  });
  afterAll(async () => {
    await stack?.stop();
  });
  type ErrorBody = { error: { type: string; message: string; details?: { path: string }[] } };
  const post = (opts: Parameters<typeof http>[2]) => http<ErrorBody>("POST", `${stack.apiUrl}/v1/jobs`, opts);

  it("401 without a key, with an unknown key, with a malformed header", async () => {
    expect((await post({ json: chat("x") })).status).toBe(401);
    expect((await post({ key: "sk-not-a-tenant-key", json: chat("x") })).status).toBe(401);
    const malformed = await post({ json: chat("x"), headers: { authorization: "Token abc" } });
    expect(malformed.status).toBe(401);
    expect(malformed.body.error.message).toMatch(/Bearer/);
  });

  it("400 for a body that is not JSON", async () => {
    const res = await post({ key: PAID_KEY, rawBody: "{not json" });
    expect(res.status).toBe(400);
    expect(res.body.error.message).toMatch(/not valid JSON/);
  });

  it("400 for a body that is not an object or has no JSON content type", async () => {
    expect((await post({ key: PAID_KEY, rawBody: "[1,2]" })).status).toBe(400);
    expect(
      (await post({ key: PAID_KEY, rawBody: "model=x", headers: { "content-type": "text/plain" } })).status,
    ).toBe(400);
  });

  it("400 listing every failing field path", async () => {
    const res = await post({
      key: PAID_KEY,
      json: {
        model: "gpt-4o-mini",
        messages: [{ role: "robot", content: "x" }, { role: "user" }],
        temperature: 7,
        priority: "urgent",
        surprise: true,
      },
    });
    expect(res.status).toBe(400);
    const paths = (res.body.error.details ?? []).map((d) => d.path).sort();
    expect(paths).toEqual(["messages.0.role", "messages.1.content", "priority", "surprise", "temperature"]);
  });

  it("400 for missing messages and for an empty list", async () => {
    const a = await post({ key: PAID_KEY, json: { model: "gpt-4o-mini" } });
    expect(a.status).toBe(400);
    expect(a.body.error.details?.map((d) => d.path)).toEqual(["messages"]);
    expect((await post({ key: PAID_KEY, json: { model: "gpt-4o-mini", messages: [] } })).status).toBe(400);
  });

  it("400 for an unknown model, naming the configured ones", async () => {
    const res = await post({ key: PAID_KEY, json: { ...chat("x"), model: "gpt-9" } });
    expect(res.status).toBe(400);
    expect(res.body.error.message).toMatch(
      /unknown model 'gpt-9'.*claude-sonnet-4-6, fast, gemini-2.5-flash, gpt-4o-mini, smart/,
    );
    expect(res.body.error.details?.[0]?.path).toBe("model");
  });

  it("400 with field paths for bad webhook fields on a job and on an endpoint", async () => {
    const notUrl = await post({ key: PAID_KEY, json: chat("x", { webhook: { url: "not a url" } }) });
    expect(notUrl.status).toBe(400);
    expect(notUrl.body.error.details?.map((d) => d.path)).toEqual(["webhook.url"]);
    const extra = await post({
      key: PAID_KEY,
      json: chat("x", { webhook: { url: "https://example.com/h", secret: "s" } }),
    });
    expect(extra.body.error.details?.map((d) => d.path)).toEqual(["webhook.secret"]);
    const ep = await http<ErrorBody>("POST", `${stack.apiUrl}/v1/webhook-endpoints`, {
      key: PAID_KEY,
      json: { events: ["job.done"], colour: "red" },
    });
    expect(ep.status).toBe(400);
    expect(ep.body.error.details?.map((d) => d.path).sort()).toEqual(["colour", "events.0", "url"]);
    const rotate = await http<ErrorBody>("POST", `${stack.apiUrl}/v1/webhook-secret`, {
      key: PAID_KEY,
      json: { grace_seconds: -1 },
    });
    expect(rotate.body.error.details?.map((d) => d.path)).toEqual(["grace_seconds"]);
    expect((await http("GET", `${stack.apiUrl}/v1/webhook-endpoints`)).status).toBe(401);
  });

  it("413 for a body over the configured limit", async () => {
    const res = await post({ key: PAID_KEY, json: chat("x".repeat(70_000)) });
    expect(res.status).toBe(413);
    expect(res.body.error.message).toMatch(/65536 bytes/);
  });

  it("400 for a bad wait value and a bad Idempotency-Key, 404 for unknown ids and routes", async () => {
    const ok = await submit(stack.apiUrl, PAID_KEY, chat("x"));
    expect(
      (await http("GET", `${stack.apiUrl}/v1/jobs/${ok.body.id}?wait=abc`, { key: PAID_KEY })).status,
    ).toBe(400);
    expect(
      (await http("GET", `${stack.apiUrl}/v1/jobs/${ok.body.id}?wait=999`, { key: PAID_KEY })).status,
    ).toBe(400);
    expect(
      (await submit(stack.apiUrl, PAID_KEY, chat("x"), { "idempotency-key": "x".repeat(300) })).status,
    ).toBe(400);
    expect((await http("GET", `${stack.apiUrl}/v1/jobs/job_doesnotexist`, { key: PAID_KEY })).status).toBe(
      404,
    );
    expect(
      (await http("GET", `${stack.apiUrl}/v1/jobs/job_0000000000aaaaaaaaaaaaaaaaaaaa`, { key: PAID_KEY }))
        .status,
    ).toBe(404);
    expect((await http("GET", `${stack.apiUrl}/v2/nothing`)).status).toBe(404);
  });

  it("answered no client mistake with a 500", async () => {
    const metrics = await http<string>("GET", `${stack.apiUrl}/metrics`);
    expect(metrics.body).not.toMatch(/status="5\d\d"/);
    expect(stack.api.output()).not.toMatch(/"level":50/);
  });
});
