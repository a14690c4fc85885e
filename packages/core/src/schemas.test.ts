import { backoffDelay } from "./backoff";
import { newJobId, JOB_ID_PATTERN } from "./ids";
import { createJobRequestSchema, findProtoKey, isTerminal } from "./schemas";
import { jobPayloadSchema } from "./payload";

describe("createJobRequestSchema", () => {
  const base = { model: "m", messages: [{ role: "user", content: "hi" }] };

  it("accepts the OpenAI chat shape with Switchyard's fields and defaults priority", () => {
    const r = createJobRequestSchema.parse({
      ...base,
      max_tokens: 10,
      temperature: 0.5,
      top_p: 1,
      stop: ["\n"],
      metadata: { a: 1 },
      ttl_seconds: 60,
    });
    expect(r.priority).toBe("normal");
    expect(
      createJobRequestSchema.parse({
        model: "m",
        messages: [{ role: "user", content: [{ type: "text", text: "x" }] }],
      }).messages[0]?.content,
    ).toEqual([{ type: "text", text: "x" }]);
  });

  it.each([
    [{ ...base, max_tokens: 0 }, "max_tokens"],
    [{ ...base, temperature: 3 }, "temperature"],
    [{ ...base, stop: ["a", "b", "c", "d", "e"] }, "stop"],
    [{ ...base, priority: "urgent" }, "priority"],
    [{ ...base, ttl_seconds: 0 }, "ttl_seconds"],
    [
      { ...base, metadata: Object.fromEntries(Array.from({ length: 17 }, (_, i) => [`k${i}`, i])) },
      "metadata",
    ],
    [{ ...base, stream: true }, ""],
  ])("rejects %j at %s", (body, path) => {
    const r = createJobRequestSchema.safeParse(body);
    expect(r.success).toBe(false);
    expect(r.error?.issues[0]?.path.join(".")).toBe(path);
  });

  it("refuses the metadata key __proto__ instead of dropping it", () => {
    // JSON.parse makes "__proto__" an own key, as a request body would carry it.
    const body: unknown = JSON.parse(
      '{"model":"m","messages":[{"role":"user","content":"hi"}],"metadata":{"__proto__":"x","ok":1}}',
    );
    const r = createJobRequestSchema.safeParse(body);
    expect(r.success).toBe(false);
    expect(r.error?.issues[0]?.path.join(".")).toBe("metadata.__proto__");
  });

  it("keeps constructor and prototype as ordinary metadata keys", () => {
    const r = createJobRequestSchema.parse(
      JSON.parse(
        '{"model":"m","messages":[{"role":"user","content":"hi"}],"metadata":{"constructor":"c","prototype":1}}',
      ),
    );
    expect(r.metadata).toEqual({ constructor: "c", prototype: 1 });
    expect(Object.hasOwn(r.metadata ?? {}, "constructor")).toBe(true);
  });

  it("finds a __proto__ key at any depth", () => {
    expect(findProtoKey(JSON.parse('{"a":[{"b":1},{"__proto__":{}}]}'))).toEqual(["a", 1, "__proto__"]);
    expect(findProtoKey({ a: { constructor: 1 } })).toBeUndefined();
  });

  it("validates the queue payload contract", () => {
    const payload = {
      v: 1,
      job_id: "job_x",
      tenant_id: "t",
      tier: "paid",
      model: "m",
      request: { messages: base.messages },
      priority: "high",
      start_deadline: 1,
      trace_id: "r",
    };
    expect(jobPayloadSchema.parse(payload)).toEqual(payload);
    expect(jobPayloadSchema.safeParse({ ...payload, v: 2 }).success).toBe(false);
  });

  it("knows the terminal statuses", () => {
    expect(["succeeded", "failed", "cancelled", "expired"].every(isTerminal)).toBe(true);
    expect(isTerminal("queued") || isTerminal("running")).toBe(false);
  });
});

describe("ids", () => {
  it("are unique, well formed and sort by time", () => {
    const a = newJobId(1_000);
    const b = newJobId(2_000);
    expect(a).toMatch(JOB_ID_PATTERN);
    expect(a < b).toBe(true);
    expect(new Set(Array.from({ length: 1000 }, () => newJobId())).size).toBe(1000);
  });
});

describe("backoffDelay", () => {
  const opts = { baseMs: 1000, maxMs: 8000 };
  it("grows exponentially with jitter in [cap/2, cap] and stops at the maximum", () => {
    expect(backoffDelay(1, opts, undefined, () => 0)).toBe(500);
    expect(backoffDelay(1, opts, undefined, () => 1)).toBe(1000);
    expect(backoffDelay(3, opts, undefined, () => 1)).toBe(4000);
    expect(backoffDelay(10, opts, undefined, () => 1)).toBe(8000);
    expect(backoffDelay(10, opts, undefined, () => 0)).toBe(4000);
  });
  it("never comes back before the upstream's retry hint", () => {
    expect(backoffDelay(1, opts, 20_000, () => 0)).toBe(20_000);
    expect(backoffDelay(1, opts, 20_000, () => 1)).toBe(21_000);
    expect(backoffDelay(1, opts, 500, () => 1)).toBe(550);
  });
});
