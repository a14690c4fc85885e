import { MockProvider } from "../../apps/mock-provider/src/server";
import {
  AnthropicMessagesProvider,
  GeminiProvider,
  OpenAIChatProvider,
  ProviderError,
  type ChatProvider,
  type ProviderRequest,
} from "@switchyard/providers";

/**
 * Every adapter against the mock over real HTTP: the same outcomes for each wire format, so a
 * job behaves the same whichever provider serves it. One mock, one adapter per format.
 */
const mock = new MockProvider({ latencyMs: 0, errorRate: 0, maxBodyBytes: 1 << 20 });
let base = "";
beforeAll(async () => {
  base = `http://127.0.0.1:${await mock.listen(0)}`;
});
afterAll(() => mock.close());

const common = { timeoutMs: 1000, connectTimeoutMs: 500, maxResponseBytes: 1 << 20 };
/** Where each provider puts its 429 retry hints (Gemini: RetryInfo in the body; no reset headers). */
const adapters: Record<
  string,
  { make: () => ChatProvider; model: string; key: string; hints: ("all" | "header" | "reset" | "body")[] }
> = {
  openai: {
    make: () => new OpenAIChatProvider({ ...common, id: "openai", type: "openai", baseUrl: `${base}/v1` }),
    model: "gpt-4o-mini",
    key: "sk-openai",
    hints: ["all", "header", "reset"],
  },
  anthropic: {
    make: () =>
      new AnthropicMessagesProvider({ ...common, id: "anthropic", baseUrl: base, defaultMaxTokens: 64 }),
    model: "claude-sonnet-4-6",
    key: "sk-ant-test",
    hints: ["all", "header", "reset"],
  },
  gemini: {
    make: () => new GeminiProvider({ ...common, id: "gemini", baseUrl: base }),
    model: "gemini-2.5-flash",
    key: "AIza-test",
    hints: ["all", "header", "body"],
  },
};

describe.each(Object.keys(adapters))("%s adapter against the mock", (name) => {
  const spec = adapters[name]!;
  let provider: ChatProvider;
  beforeAll(() => {
    provider = spec.make();
  });
  afterAll(() => provider.close());

  const request = (content: string, extra: Partial<ProviderRequest> = {}): ProviderRequest => ({
    model: spec.model,
    messages: [
      { role: "system", content: "be brief" },
      { role: "user", content },
    ],
    max_tokens: 20,
    ...extra,
  });
  const call = (content: string, extra?: Partial<ProviderRequest>, apiKey = spec.key, signal?: AbortSignal) =>
    provider.chat(request(content, extra), { apiKey, signal: signal ?? new AbortController().signal });
  const failure = async (content: string, apiKey?: string): Promise<ProviderError> => {
    const err = await call(content, {}, apiKey).then(
      () => undefined,
      (e: unknown) => e,
    );
    if (!(err instanceof ProviderError)) throw new Error(`expected a ProviderError, got ${String(err)}`);
    return err;
  };

  it("normalises a completion with usage, the system prompt counted", async () => {
    const r = await call("ping");
    expect(r).toMatchObject({
      output_text: "Echo: ping",
      finish_reason: "stop",
      provider: name,
      model: spec.model,
      // system "be brief" (4 + 2) and user "ping" (4 + 1), by the mock's 4-chars-per-token rule
      usage: { input_tokens: 11, output_tokens: 2 },
    });
  });

  it("streams: every piece as it comes, the same answer and usage at the end", async () => {
    const deltas: string[] = [];
    const r = await provider.chat(request("stream me please", { max_tokens: 20 }), {
      apiKey: spec.key,
      signal: new AbortController().signal,
      onDelta: (t) => deltas.push(t),
    });
    expect(deltas).toEqual(["Echo:", " stream", " me", " please"]);
    expect(r).toMatchObject({
      output_text: "Echo: stream me please",
      finish_reason: "stop",
      provider: name,
      model: spec.model,
      usage: { input_tokens: 14, output_tokens: 4 },
    });
    const capped = await provider.chat(request("one two three four", { max_tokens: 2 }), {
      apiKey: spec.key,
      signal: new AbortController().signal,
      onDelta: () => undefined,
    });
    expect(capped).toMatchObject({ output_text: "Echo: one", finish_reason: "length" });
  });

  it("streams: a failure before the first piece is the usual error, a cut stream a connection error", async () => {
    const stream = (content: string, deltas: string[]) =>
      provider
        .chat(request(content), {
          apiKey: spec.key,
          signal: new AbortController().signal,
          onDelta: (t) => deltas.push(t),
        })
        .then(
          () => undefined,
          (e: unknown) => e,
        );
    const before: string[] = [];
    const early = await stream("[[mock:status=500]] x", before);
    expect(early).toBeInstanceOf(ProviderError);
    expect((early as ProviderError).kind).toBe("server");
    expect(before).toEqual([]);
    const during: string[] = [];
    const cut = await stream("[[mock:fail_after=2]] one two three", during);
    expect(cut).toBeInstanceOf(ProviderError);
    expect(["connection", "malformed"]).toContain((cut as ProviderError).kind);
    expect(during).toEqual(["Echo:", " one"]);
  });

  it("maps the provider's max-tokens stop onto finish_reason length", async () => {
    const r = await call("one two three four", { max_tokens: 2 });
    expect(r).toMatchObject({
      output_text: "Echo: one",
      finish_reason: "length",
      usage: { output_tokens: 2 },
    });
  });

  it.each([
    ["[[mock:status=400]]", "client", 400, false],
    ["[[mock:status=500]]", "server", 500, true],
    ["[[mock:status=503]]", "server", 503, true],
    ["[[mock:malformed]]", "malformed", 200, true],
  ] as const)("classifies %s as %s", async (marker, kind, status, retryable) => {
    const err = await failure(`${marker} x`);
    expect(err).toMatchObject({ kind, status, retryable, provider: name });
    if (kind === "client") expect(err.message).toBe("Injected client error.");
  });

  it.each(spec.hints)("reads the 429 retry hint the provider gives (hint in: %s)", async (hint) => {
    const err = await failure(`[[mock:status=429,retry_after=3,hint=${hint}]] x`);
    expect(err).toMatchObject({ kind: "rate_limit", status: 429, retryable: true });
    // Reset times are whole seconds in RFC 3339 (Anthropic), so they can land up to 1 s early.
    expect(err.retryAfterMs).toBeGreaterThanOrEqual(hint === "reset" && name === "anthropic" ? 2000 : 3000);
    expect(err.retryAfterMs).toBeLessThanOrEqual(4000);
  });

  it("classifies a hang as a timeout, a reset and a truncated body as connection errors", async () => {
    expect(await failure("[[mock:hang]] x")).toMatchObject({ kind: "timeout", retryable: true });
    expect(await failure("[[mock:reset]] x")).toMatchObject({ kind: "connection", retryable: true });
    const cut = await failure("[[mock:truncated]] x");
    expect(cut).toMatchObject({ kind: "connection", retryable: true, status: 200 });
    expect(cut.message).toMatch(/before the body was complete/);
  });

  it("classifies a rejected key as auth without echoing the key or the upstream's words", async () => {
    const err = await failure("x", "key-invalid-123");
    expect(err).toMatchObject({ kind: "auth", retryable: false });
    expect(err.message).not.toContain("key-invalid-123");
    expect(err.message).toMatch(/rejected the API key/);
  });

  it("reports a cancelled call as cancelled", async () => {
    const ctrl = new AbortController();
    const p = call("[[mock:hang]]", {}, spec.key, ctrl.signal);
    setTimeout(() => ctrl.abort(), 50);
    await expect(p).rejects.toMatchObject({ kind: "cancelled" });
  });
});

describe("rate-limit headers on success", () => {
  it("hands on OpenAI's and Anthropic's remaining/limit values", async () => {
    for (const name of ["openai", "anthropic"]) {
      const spec = adapters[name]!;
      const p = spec.make();
      const r = await p.chat(
        { model: spec.model, messages: [{ role: "user", content: "x" }], max_tokens: 5 },
        { apiKey: `${spec.key}-headers`, signal: new AbortController().signal },
      );
      expect(r.rateLimit?.requests).toMatchObject({ limit: 10_000, remaining: 9_999 });
      expect(r.rateLimit?.tokens?.limit).toBe(10_000_000);
      await p.close();
    }
  });
});

describe("request mapping", () => {
  const req: ProviderRequest = {
    model: "m",
    messages: [
      { role: "system", content: "sys one" },
      { role: "developer", content: "sys two" },
      { role: "user", content: [{ type: "text", text: "hi" }] },
      { role: "assistant", content: "hello" },
      { role: "user", content: "again" },
    ],
    max_tokens: 5,
    temperature: 1.5,
    top_p: 0.9,
    stop: "END",
  };
  const opts = { ...common, baseUrl: "http://127.0.0.1:1" };

  it("sends max_completion_tokens to OpenAI and max_tokens to compatible servers", async () => {
    const o = new OpenAIChatProvider({ ...opts, id: "o", type: "openai" });
    const c = new OpenAIChatProvider({ ...opts, id: "c", type: "openai-compatible" });
    expect(o.buildBody(req)).toMatchObject({ max_completion_tokens: 5, stop: "END" });
    expect(c.buildBody(req)).toMatchObject({ max_tokens: 5 });
    await Promise.all([o.close(), c.close()]);
  });

  it("gives Anthropic a system prompt, blocks, stop_sequences and a default max_tokens", async () => {
    const a = new AnthropicMessagesProvider({ ...opts, id: "a", defaultMaxTokens: 777 });
    expect(a.buildBody(req)).toEqual({
      model: "m",
      max_tokens: 5,
      system: "sys one\n\nsys two",
      messages: [
        { role: "user", content: [{ type: "text", text: "hi" }] },
        { role: "assistant", content: "hello" },
        { role: "user", content: "again" },
      ],
      temperature: 1, // Anthropic's range ends at 1
      top_p: 0.9,
      stop_sequences: ["END"],
    });
    const { max_tokens: _omit, ...noMax } = req;
    expect(a.buildBody(noMax).max_tokens).toBe(777);
    await a.close();
  });

  it("gives Gemini contents with model turns, a systemInstruction and a generationConfig", async () => {
    const g = new GeminiProvider({ ...opts, id: "g" });
    expect(g.buildBody(req)).toEqual({
      contents: [
        { role: "user", parts: [{ text: "hi" }] },
        { role: "model", parts: [{ text: "hello" }] },
        { role: "user", parts: [{ text: "again" }] },
      ],
      systemInstruction: { parts: [{ text: "sys one" }, { text: "sys two" }] },
      generationConfig: { maxOutputTokens: 5, temperature: 1.5, topP: 0.9, stopSequences: ["END"] },
    });
    await g.close();
  });

  it("merges a route's extra body fields into the upstream body", async () => {
    const o = new OpenAIChatProvider({
      ...common,
      id: "o",
      type: "openai-compatible",
      baseUrl: `${base}/v1`,
    });
    const r = await o.chat(
      { model: "llama3", messages: [{ role: "user", content: "x y" }], extraBody: { max_tokens: 1 } },
      { apiKey: "k", signal: new AbortController().signal },
    );
    expect(r.finish_reason).toBe("length"); // the extra body's max_tokens reached the server
    await o.close();
  });

  it("refuses connections to a closed port as a connection error", async () => {
    const dead = new GeminiProvider({ ...opts, id: "dead", connectTimeoutMs: 200 });
    await expect(
      dead.chat(
        { model: "m", messages: [{ role: "user", content: "x" }] },
        { apiKey: "k", signal: new AbortController().signal },
      ),
    ).rejects.toMatchObject({ kind: "connection", retryable: true });
    await dead.close();
  });
});
