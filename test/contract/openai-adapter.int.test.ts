import { MockProvider } from "../../apps/mock-provider/src/server";
import { OpenAIChatProvider, ProviderError } from "@switchyard/providers";

/** The OpenAI adapter against the mock provider over real HTTP, one case per outcome class. */
describe("OpenAIChatProvider against the mock", () => {
  const mock = new MockProvider({ latencyMs: 0, errorRate: 0, maxBodyBytes: 1 << 20 });
  let provider: OpenAIChatProvider;
  beforeAll(async () => {
    const port = await mock.listen(0);
    provider = new OpenAIChatProvider({
      id: "openai",
      type: "openai",
      baseUrl: `http://127.0.0.1:${port}/v1`,
      timeoutMs: 1000,
      connectTimeoutMs: 500,
      maxResponseBytes: 1 << 20,
    });
  });
  afterAll(async () => {
    await provider.close();
    await mock.close();
  });
  const signal = () => new AbortController().signal;
  const call = (content: string, apiKey = "sk-test") =>
    provider.chat(
      { model: "gpt-4o-mini", messages: [{ role: "user", content }], max_tokens: 20 },
      { apiKey, signal: signal() },
    );
  const failure = async (content: string, apiKey?: string): Promise<ProviderError> => {
    const err = await call(content, apiKey).then(
      () => undefined,
      (e: unknown) => e,
    );
    if (!(err instanceof ProviderError)) throw new Error(`expected a ProviderError, got ${String(err)}`);
    return err;
  };

  it("normalises a completion with usage", async () => {
    await expect(call("ping")).resolves.toEqual({
      output_text: "Echo: ping",
      finish_reason: "stop",
      provider: "openai",
      model: "gpt-4o-mini",
      usage: { input_tokens: 5, output_tokens: 2 },
    });
  });

  it("sends max_completion_tokens to OpenAI and max_tokens to compatible servers", () => {
    const req = { model: "m", messages: [{ role: "user" as const, content: "x" }], max_tokens: 5 };
    expect(provider.buildBody(req)).toMatchObject({ max_completion_tokens: 5 });
    const compat = new OpenAIChatProvider({
      id: "local",
      type: "openai-compatible",
      baseUrl: "http://127.0.0.1:1",
      timeoutMs: 1000,
      connectTimeoutMs: 100,
      maxResponseBytes: 1024,
    });
    expect(compat.buildBody(req)).toMatchObject({ max_tokens: 5 });
    void compat.close();
  });

  it.each([
    ["[[mock:status=400]]", "client", 400, false],
    ["[[mock:status=500]]", "server", 500, true],
    ["[[mock:status=429,retry_after=3]]", "rate_limit", 429, true],
    ["[[mock:malformed]]", "malformed", 200, true],
  ] as const)("classifies %s as %s", async (marker, kind, status, retryable) => {
    const err = await failure(`${marker} x`);
    expect(err).toMatchObject({ kind, status, retryable, provider: "openai" });
    if (kind === "rate_limit") expect(err.retryAfterMs).toBe(3000);
    if (kind === "client") expect(err.message).toBe("Injected client error.");
  });

  it("classifies a hang as a timeout and a reset as a connection error", async () => {
    expect((await failure("[[mock:hang]] x")).kind).toBe("timeout");
    expect((await failure("[[mock:reset]] x")).kind).toBe("connection");
  });

  it("classifies a rejected key as auth without echoing the key", async () => {
    const err = await failure("x", "sk-invalid-key");
    expect(err.kind).toBe("auth");
    expect(err.message).not.toContain("sk-invalid-key");
  });

  it("reports a cancelled call as cancelled", async () => {
    const ctrl = new AbortController();
    const p = provider.chat(
      { model: "m", messages: [{ role: "user", content: "[[mock:hang]]" }] },
      { apiKey: "sk", signal: ctrl.signal },
    );
    setTimeout(() => ctrl.abort(), 50);
    await expect(p).rejects.toMatchObject({ kind: "cancelled" });
  });

  it("refuses connections to a closed port as a connection error", async () => {
    const dead = new OpenAIChatProvider({
      id: "dead",
      type: "openai",
      baseUrl: "http://127.0.0.1:1/v1",
      timeoutMs: 1000,
      connectTimeoutMs: 200,
      maxResponseBytes: 1024,
    });
    await expect(
      dead.chat(
        { model: "m", messages: [{ role: "user", content: "x" }] },
        { apiKey: "k", signal: signal() },
      ),
    ).rejects.toMatchObject({ kind: "connection", retryable: true });
    await dead.close();
  });
});
