import Anthropic from "@anthropic-ai/sdk";
import { ApiError as GeminiApiError, GoogleGenAI } from "@google/genai";
import OpenAI from "openai";
import { useGlobalDispatcher } from "../global-dispatcher";
import { MockProvider } from "../../apps/mock-provider/src/server";

/**
 * The official SDKs, pointed at the mock, parse its answers and its errors as they would the
 * real services'. This is what keeps the mock honest: if its shapes drift, these fail.
 */
const mock = new MockProvider({ latencyMs: 0, errorRate: 0, maxBodyBytes: 1 << 20 });
let base = "";
beforeAll(async () => {
  base = `http://127.0.0.1:${await mock.listen(0)}`;
});
afterAll(() => mock.close());

describe("openai SDK", () => {
  const client = () => new OpenAI({ apiKey: "sk-sdk", baseURL: `${base}/v1`, maxRetries: 0 });

  it("parses a chat completion with usage", async () => {
    const r = await client().chat.completions.create({
      model: "gpt-4o-mini",
      messages: [{ role: "user", content: "hello sdk" }],
      max_completion_tokens: 10,
    });
    expect(r.choices[0]?.message.content).toBe("Echo: hello sdk");
    expect(r.choices[0]?.finish_reason).toBe("stop");
    expect(r.usage).toMatchObject({ prompt_tokens: 7, completion_tokens: 3, total_tokens: 10 });
  });

  it("streams chat.completion.chunk events with usage last", async () => {
    const stream = await client().chat.completions.create({
      model: "gpt-4o-mini",
      messages: [{ role: "user", content: "hello stream" }],
      stream: true,
      stream_options: { include_usage: true },
    });
    let text = "";
    let finish: string | null | undefined;
    let usage: OpenAI.CompletionUsage | null | undefined;
    for await (const chunk of stream) {
      text += chunk.choices[0]?.delta.content ?? "";
      finish = chunk.choices[0]?.finish_reason ?? finish;
      usage = chunk.usage ?? usage;
    }
    expect(text).toBe("Echo: hello stream");
    expect(finish).toBe("stop");
    expect(usage).toMatchObject({ prompt_tokens: 7, completion_tokens: 3 });
  });

  it("raises RateLimitError with the headers on a 429, and AuthenticationError on a bad key", async () => {
    const err = await client()
      .chat.completions.create({
        model: "gpt-4o-mini",
        messages: [{ role: "user", content: "[[mock:status=429,retry_after=7]]" }],
      })
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(OpenAI.RateLimitError);
    const rl = err as InstanceType<typeof OpenAI.RateLimitError>;
    expect(rl.status).toBe(429);
    expect(rl.code).toBe("rate_limit_exceeded");
    expect(rl.headers.get("retry-after")).toBe("7");
    expect(rl.headers.get("x-ratelimit-remaining-requests")).toBe("0");
    const auth = await new OpenAI({
      apiKey: "sk-invalid",
      baseURL: `${base}/v1`,
      maxRetries: 0,
    }).chat.completions
      .create({ model: "gpt-4o-mini", messages: [{ role: "user", content: "x" }] })
      .catch((e: unknown) => e);
    expect(auth).toBeInstanceOf(OpenAI.AuthenticationError);
  });
});

describe("@anthropic-ai/sdk", () => {
  const client = () => new Anthropic({ apiKey: "sk-ant-sdk", baseURL: base, maxRetries: 0 });

  it("parses a message with content blocks, stop_reason and usage", async () => {
    const r = await client().messages.create({
      model: "claude-sonnet-4-6",
      max_tokens: 2,
      system: "be brief",
      messages: [{ role: "user", content: "one two three" }],
    });
    expect(r.type).toBe("message");
    expect(r.content[0]).toEqual({ type: "text", text: "Echo: one" });
    expect(r.stop_reason).toBe("max_tokens");
    expect(r.usage).toMatchObject({ input_tokens: 14, output_tokens: 2 });
  });

  it("raises OverloadedError on 529 and RateLimitError with retry-after on 429", async () => {
    const over = await client()
      .messages.create({
        model: "claude-sonnet-4-6",
        max_tokens: 5,
        messages: [{ role: "user", content: "[[mock:status=529]]" }],
      })
      .catch((e: unknown) => e);
    expect(over).toBeInstanceOf(Anthropic.APIError);
    expect((over as InstanceType<typeof Anthropic.APIError>).status).toBe(529);
    expect((over as InstanceType<typeof Anthropic.APIError>).error).toMatchObject({
      type: "error",
      error: { type: "overloaded_error" },
    });
    const limited = await client()
      .messages.create({
        model: "claude-sonnet-4-6",
        max_tokens: 5,
        messages: [{ role: "user", content: "[[mock:status=429,retry_after=4]]" }],
      })
      .catch((e: unknown) => e);
    expect(limited).toBeInstanceOf(Anthropic.RateLimitError);
    const headers = (limited as InstanceType<typeof Anthropic.RateLimitError>).headers;
    expect(headers.get("retry-after")).toBe("4");
    expect(headers.get("anthropic-ratelimit-requests-remaining")).toBe("0");
  });
});

describe("streaming with the other SDKs", () => {
  it("@anthropic-ai/sdk messages.stream assembles the message", async () => {
    const client = new Anthropic({ apiKey: "sk-ant-sdk", baseURL: base, maxRetries: 0 });
    const deltas: string[] = [];
    const stream = client.messages.stream({
      model: "claude-sonnet-4-6",
      max_tokens: 20,
      messages: [{ role: "user", content: "hello anthropic stream" }],
    });
    stream.on("text", (t) => deltas.push(t));
    const final = await stream.finalMessage();
    expect(final.content[0]).toMatchObject({ type: "text", text: "Echo: hello anthropic stream" });
    expect(final.stop_reason).toBe("end_turn");
    expect(final.usage.output_tokens).toBe(4);
    expect(deltas.length).toBe(4);
  });
});

describe("@google/genai", () => {
  useGlobalDispatcher();
  const client = (apiKey = "AIza-sdk") => new GoogleGenAI({ apiKey, httpOptions: { baseUrl: base } });

  it("parses generateContent text, finish reason and usage metadata", async () => {
    const r = await client().models.generateContent({
      model: "gemini-2.5-flash",
      contents: "hello gemini",
      config: { systemInstruction: "be brief", maxOutputTokens: 10 },
    });
    expect(r.text).toBe("Echo: hello gemini");
    expect(r.candidates?.[0]?.finishReason).toBe("STOP");
    expect(r.usageMetadata).toMatchObject({ promptTokenCount: 13, candidatesTokenCount: 3 });
    expect(r.modelVersion).toBe("gemini-2.5-flash");
  });

  it("streams generateContentStream chunks with usage on the last", async () => {
    const stream = await client().models.generateContentStream({
      model: "gemini-2.5-flash",
      contents: "hello gemini stream",
    });
    let text = "";
    let last: { finishReason?: string; candidatesTokenCount?: number } = {};
    for await (const chunk of stream) {
      text += chunk.text ?? "";
      last = {
        ...(chunk.candidates?.[0]?.finishReason ? { finishReason: chunk.candidates[0].finishReason } : {}),
        ...(chunk.usageMetadata?.candidatesTokenCount !== undefined
          ? { candidatesTokenCount: chunk.usageMetadata.candidatesTokenCount }
          : {}),
      };
    }
    expect(text).toBe("Echo: hello gemini stream");
    expect(last).toEqual({ finishReason: "STOP", candidatesTokenCount: 4 });
  });

  it("raises ApiError 429 whose message carries the RetryInfo delay", async () => {
    const err = await client()
      .models.generateContent({ model: "gemini-2.5-flash", contents: "[[mock:status=429,retry_after=17]]" })
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(GeminiApiError);
    expect((err as GeminiApiError).status).toBe(429);
    expect((err as GeminiApiError).message).toContain('"retryDelay":"17s"');
    const bad = await client("AIza-invalid")
      .models.generateContent({ model: "gemini-2.5-flash", contents: "x" })
      .catch((e: unknown) => e);
    expect((bad as GeminiApiError).status).toBe(400);
    expect((bad as GeminiApiError).message).toContain("API_KEY_INVALID");
  });
});
