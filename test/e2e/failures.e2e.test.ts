import { http, PAID_KEY, Stack } from "@switchyard/testing";
import { chat, submit, waitFinal } from "./helpers";

interface MockStats {
  keys: Record<string, { requests: number; by_status: Record<string, number> }>;
}

/** Upstream failures: retried with backoff when transient, failed at once when the request is bad. */
describe("upstream failures", () => {
  let stack: Stack;
  beforeAll(async () => {
    stack = await Stack.start({ workers: 1 });
  });
  afterAll(async () => {
    await stack?.stop();
  });

  it("retries injected 500s and succeeds on the third attempt", async () => {
    const res = await submit(stack.apiUrl, PAID_KEY, chat("[[mock:status=500,times=2,id=r500]] recover"));
    const done = await waitFinal(stack.apiUrl, PAID_KEY, res.body.id);
    expect(done.status).toBe("succeeded");
    expect(done.attempts).toBe(3);
    expect(done.result?.output_text).toBe("Echo: recover");
    expect(done.error).toBeUndefined();
  });

  it("honours Retry-After on a 429 and then succeeds", async () => {
    const res = await submit(
      stack.apiUrl,
      PAID_KEY,
      chat("[[mock:status=429,times=1,id=r429,retry_after=1]] later"),
    );
    const done = await waitFinal(stack.apiUrl, PAID_KEY, res.body.id);
    expect(done.status).toBe("succeeded");
    expect(done.attempts).toBe(2);
    // The second attempt started no earlier than the upstream asked.
    expect((done.started_at ?? 0) - done.created_at).toBeGreaterThanOrEqual(1);
  });

  it("retries timeouts, resets and malformed answers", async () => {
    const ids = await Promise.all(
      [
        "[[mock:hang,times=1,id=rhang]] a",
        "[[mock:reset,times=1,id=rreset]] b",
        "[[mock:malformed,times=1,id=rbad]] c",
      ].map(async (t) => (await submit(stack.apiUrl, PAID_KEY, chat(t))).body.id),
    );
    for (const id of ids) {
      const done = await waitFinal(stack.apiUrl, PAID_KEY, id, 25);
      expect(done.status).toBe("succeeded");
      expect(done.attempts).toBe(2);
    }
  });

  it("fails an upstream 400 at once with the upstream's message, without retrying", async () => {
    const before = await http<MockStats>("GET", `${stack.mockUrl}/_stats`);
    const res = await submit(stack.apiUrl, PAID_KEY, chat("[[mock:status=400]] bad"));
    const done = await waitFinal(stack.apiUrl, PAID_KEY, res.body.id);
    expect(done.status).toBe("failed");
    expect(done.attempts).toBe(1);
    expect(done.error).toEqual({
      type: "client",
      message: "Injected client error.",
      status: 400,
      provider: "openai",
      model: "gpt-4o-mini",
      attempts: [
        {
          provider: "openai",
          model: "gpt-4o-mini",
          outcome: "failed",
          error_type: "client",
          status: 400,
          duration_ms: expect.any(Number) as number,
          started_at: expect.any(Number) as number,
        },
      ],
    });
    const after = await http<MockStats>("GET", `${stack.mockUrl}/_stats`);
    const count400 = (s: MockStats) => s.keys["sk-upstream-1"]?.by_status["400"] ?? 0;
    expect(count400(after.body) - count400(before.body)).toBe(1);
  });

  it("fails after the configured attempts when the upstream keeps failing", async () => {
    const res = await submit(stack.apiUrl, PAID_KEY, chat("[[mock:status=503]] down"));
    const done = await waitFinal(stack.apiUrl, PAID_KEY, res.body.id);
    expect(done.status).toBe("failed");
    expect(done.attempts).toBe(4);
    expect(done.error).toMatchObject({ type: "server", status: 503 });
  });
});
