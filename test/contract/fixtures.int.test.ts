import { readFileSync } from "node:fs";
import { createServer, type Server } from "node:http";
import { join } from "node:path";
import {
  AnthropicMessagesProvider,
  GeminiProvider,
  OpenAIChatProvider,
  ProviderError,
  type ChatProvider,
} from "@switchyard/providers";

/**
 * The adapters against answers written after the providers' documented examples (success and
 * error bodies with their headers), replayed by a plain HTTP server. The request's model names
 * the case to replay, so each case is one real HTTP round trip through the adapter.
 */
interface FixtureCase {
  name: string;
  status: number;
  headers: Record<string, string>;
  body: unknown;
  expect: { result?: Record<string, unknown>; error?: Record<string, unknown> };
}
const load = (name: string): FixtureCase[] =>
  (JSON.parse(readFileSync(join(__dirname, "fixtures", `${name}.json`), "utf8")) as { cases: FixtureCase[] })
    .cases;

const fixtures = { openai: load("openai"), anthropic: load("anthropic"), gemini: load("gemini") };
const all = Object.values(fixtures).flat();

let server: Server;
let base = "";
beforeAll(async () => {
  server = createServer((req, res) => {
    let raw = "";
    req.on("data", (c: Buffer) => (raw += c.toString()));
    req.on("end", () => {
      const fromPath = /models\/([^:]+):generateContent/.exec(req.url ?? "")?.[1];
      const name = fromPath ?? (JSON.parse(raw) as { model: string }).model;
      const c = all.find((x) => x.name === name);
      const text = JSON.stringify(c?.body ?? { error: "no such fixture" });
      res.writeHead(c?.status ?? 404, { "content-type": "application/json", ...c?.headers }).end(text);
    });
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const addr = server.address();
  base = `http://127.0.0.1:${typeof addr === "object" && addr ? addr.port : 0}`;
});
afterAll(() => new Promise<void>((r) => server.close(() => r())));

const common = { timeoutMs: 2000, connectTimeoutMs: 500, maxResponseBytes: 1 << 20 };
const make: Record<keyof typeof fixtures, () => ChatProvider> = {
  openai: () => new OpenAIChatProvider({ ...common, id: "openai", type: "openai", baseUrl: `${base}/v1` }),
  anthropic: () =>
    new AnthropicMessagesProvider({ ...common, id: "anthropic", baseUrl: base, defaultMaxTokens: 100 }),
  gemini: () => new GeminiProvider({ ...common, id: "gemini", baseUrl: base }),
};

describe.each(Object.keys(fixtures) as (keyof typeof fixtures)[])("%s documented answers", (provider) => {
  it.each(fixtures[provider].map((c) => [c.name, c] as const))("%s", async (_name, c) => {
    const adapter = make[provider]();
    try {
      const outcome = await adapter
        .chat(
          { model: c.name, messages: [{ role: "user", content: "hello" }] },
          { apiKey: "sk-fixture", signal: new AbortController().signal },
        )
        .then(
          (result) => ({ result }),
          (error: unknown) => ({ error }),
        );
      if (c.expect.result) {
        expect(outcome).toHaveProperty("result");
        expect((outcome as { result: unknown }).result).toMatchObject(c.expect.result);
      } else {
        const err = (outcome as { error?: unknown }).error;
        expect(err).toBeInstanceOf(ProviderError);
        expect(err).toMatchObject({ provider, ...c.expect.error });
        // Whatever the upstream said about our key stays out of our errors.
        if ((err as ProviderError).kind === "auth")
          expect((err as ProviderError).message).not.toMatch(/sk-|API key not valid/);
      }
    } finally {
      await adapter.close();
    }
  });
});
