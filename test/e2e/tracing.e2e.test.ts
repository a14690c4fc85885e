import { randomBytes } from "node:crypto";
import {
  eventually,
  http,
  otlpSpans,
  PAID_KEY,
  Receiver,
  Stack,
  testConfig,
  type ReceivedSpan,
} from "@switchyard/testing";
import { chat, waitFinal } from "./helpers";

/**
 * Traces end to end: the API and the worker export over OTLP/HTTP to a receiver in this test.
 * One job submitted with a W3C traceparent gives one trace, in which every span has the right
 * parent: the HTTP request, BullMQ's add and process of the job, each upstream attempt (with the
 * GenAI semantic conventions), and the webhook delivery (add, process, the signed POST). No span
 * carries a secret or the prompt.
 */
const SERVER = 2;
const CLIENT = 3;
const PRODUCER = 4;
const CONSUMER = 5;
const ALLOW_LOOPBACK = { SWITCHYARD_WEBHOOK_ALLOWLIST: "127.0.0.1/32" };

describe("tracing over OTLP", () => {
  let stack: Stack;
  let receiver: Receiver;
  let webhookSecret = "";

  beforeAll(async () => {
    receiver = await Receiver.start();
    const otel = { OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url, OTEL_BSP_SCHEDULE_DELAY: "100" };
    stack = await Stack.start({
      workers: 1,
      apiEnv: { ...otel, ...ALLOW_LOOPBACK },
      workerEnv: { ...otel, ...ALLOW_LOOPBACK },
      config: (mockUrl, prefix) => ({
        ...testConfig(mockUrl, prefix),
        webhooks: { retry_schedule_seconds: [0.2], jitter: 0, timeout_ms: 2000 },
      }),
    });
    const ep = await http<{ secret: string }>("POST", `${stack.apiUrl}/v1/webhook-endpoints`, {
      key: PAID_KEY,
      json: { url: `${receiver.url}/hooks` },
    });
    expect(ep.status).toBe(201);
    webhookSecret = ep.body.secret;
  });
  afterAll(async () => {
    await stack?.stop();
    await receiver?.close();
  });

  const spansOf = (traceId: string): ReceivedSpan[] =>
    otlpSpans(receiver.received("/v1/traces")).filter((s) => s.traceId === traceId);
  const one = (spans: ReceivedSpan[], name: string, kind?: number): ReceivedSpan => {
    const found = spans.filter((s) => s.name === name && (kind === undefined || s.kind === kind));
    if (found.length !== 1)
      throw new Error(
        `expected one span '${name}', got ${found.length}: ${spans.map((s) => s.name).join(", ")}`,
      );
    return found[0] as ReceivedSpan;
  };

  it("continues the caller's traceparent through the API, the queue, the worker, the upstream and the webhook", async () => {
    const traceId = randomBytes(16).toString("hex");
    const callerSpan = randomBytes(8).toString("hex");
    const prompt = "a private question about tracing";
    const res = await http<{ id: string }>("POST", `${stack.apiUrl}/v1/jobs`, {
      key: PAID_KEY,
      json: chat(prompt, { max_tokens: 20, temperature: 0.5 }),
      headers: { traceparent: `00-${traceId}-${callerSpan}-01` },
    });
    expect(res.status).toBe(202);
    const jobId = res.body.id;
    expect((await waitFinal(stack.apiUrl, PAID_KEY, jobId)).status).toBe("succeeded");
    await receiver.waitFor("/hooks", 1);

    // Spans come in export batches per process: wait until every one asserted below is in (a
    // parent span ends after its children and may come in a later batch).
    const expected = [
      "POST /v1/jobs",
      "add jobs-paid.chat",
      "process jobs-paid",
      "chat gpt-4o-mini",
      "addBulk webhooks",
      "process webhooks",
      "webhook job.succeeded",
    ];
    const spans = await eventually(
      async () => spansOf(traceId),
      (s) => expected.every((name) => s.some((x) => x.name === name)),
      20_000,
      "the job's spans at the receiver",
    );

    const server = one(spans, "POST /v1/jobs", SERVER);
    expect(server.parentSpanId).toBe(callerSpan);
    expect(server.service).toBe("switchyard-api");
    expect(server.attributes).toMatchObject({
      "http.request.method": "POST",
      "http.route": "/v1/jobs",
      "http.response.status_code": 202,
      "switchyard.job.id": jobId,
      "switchyard.tenant": "paid-co",
    });

    const add = one(spans, "add jobs-paid.chat", PRODUCER);
    expect(add.parentSpanId).toBe(server.spanId);

    const run = one(spans, "process jobs-paid", CONSUMER);
    expect(run.parentSpanId).toBe(add.spanId);
    expect(run.service).toBe("switchyard-worker");
    expect(run.attributes).toMatchObject({ "switchyard.job.id": jobId, "switchyard.tenant": "paid-co" });

    const call = one(spans, "chat gpt-4o-mini", CLIENT);
    expect(call.parentSpanId).toBe(run.spanId);
    expect(call.attributes).toMatchObject({
      "gen_ai.operation.name": "chat",
      "gen_ai.provider.name": "openai",
      "gen_ai.request.model": "gpt-4o-mini",
      "gen_ai.request.max_tokens": 20,
      "gen_ai.request.temperature": 0.5,
      "gen_ai.response.model": "gpt-4o-mini",
      "gen_ai.response.finish_reasons": ["stop"],
      "server.address": "127.0.0.1",
      "switchyard.provider": "openai",
      "switchyard.key.id": "k1",
    });
    expect(call.attributes["gen_ai.usage.input_tokens"]).toEqual(expect.any(Number));
    expect(call.attributes["gen_ai.usage.output_tokens"]).toBeGreaterThan(0);

    // The delivery was queued in the submission's context (kept in the job record).
    const queued = one(spans, "addBulk webhooks", PRODUCER);
    expect(queued.parentSpanId).toBe(server.spanId);
    const delivery = one(spans, "process webhooks", CONSUMER);
    expect(delivery.parentSpanId).toBe(queued.spanId);
    const post = one(spans, "webhook job.succeeded", CLIENT);
    expect(post.parentSpanId).toBe(delivery.spanId);
    expect(post.attributes).toMatchObject({
      "http.request.method": "POST",
      "http.response.status_code": 200,
      "url.path": "/hooks",
      "switchyard.job.id": jobId,
    });

    // Nothing secret, nothing the tenant wrote, in any span the fleet exported.
    const everything = receiver
      .received("/v1/traces")
      .map((r) => r.body)
      .join("\n");
    for (const secret of [PAID_KEY, "sk-upstream-1", webhookSecret, prompt])
      expect(everything).not.toContain(secret);
  });

  it("gives each upstream attempt its own span: a failed one marked with its error type", async () => {
    const traceId = randomBytes(16).toString("hex");
    const res = await http<{ id: string }>("POST", `${stack.apiUrl}/v1/jobs`, {
      key: PAID_KEY,
      json: chat("[[mock:status=500,times=1,id=trace-retry]] again"),
      headers: { traceparent: `00-${traceId}-${randomBytes(8).toString("hex")}-01` },
    });
    expect((await waitFinal(stack.apiUrl, PAID_KEY, res.body.id)).status).toBe("succeeded");
    const spans = await eventually(
      async () => spansOf(traceId).filter((s) => s.name === "chat gpt-4o-mini"),
      (s) => s.length >= 2,
      20_000,
      "two upstream attempts",
    );
    const [failed, ok] = [...spans].sort(
      (a, b) =>
        Number(a.attributes["gen_ai.usage.output_tokens"] ?? -1) -
        Number(b.attributes["gen_ai.usage.output_tokens"] ?? -1),
    );
    expect(failed?.attributes).toMatchObject({ "error.type": "server", "http.response.status_code": 500 });
    expect(failed?.statusCode).toBe(2);
    expect(ok?.attributes["gen_ai.usage.output_tokens"]).toBeGreaterThan(0);
    // Two runs of the job (the retry waited in BullMQ's delayed set), both under its add.
    // The second run's span ends after its upstream span: it may come in a later export batch.
    const runs = await eventually(
      async () => spansOf(traceId).filter((s) => s.name === "process jobs-paid"),
      (r) => r.length >= 2,
      20_000,
      "two runs of the job",
    );
    const add = one(spansOf(traceId), "add jobs-paid.chat", PRODUCER);
    expect(runs).toHaveLength(2);
    for (const r of runs) expect(r.parentSpanId).toBe(add.spanId);
  });
});
