import { readFileSync } from "node:fs";
import { join } from "node:path";
import { parseConfig } from "./config";
import { applyLink, estimatePromptTokens, queueAttemptCap, resolveRoute } from "./routes";

const doc = `
providers:
  - { id: openai, type: openai, keys: [{ id: k1, secret: s1 }] }
  - { id: anthropic, type: anthropic, keys: [{ id: k2, secret: s2 }] }
  - { id: gemini, type: gemini, keys: [{ id: k3, secret: s3 }] }
  - { id: local, type: openai-compatible, base_url: "http://127.0.0.1:11434/v1", keys: [{ id: k4, secret: none }] }
models:
  gpt-4o-mini: { provider: openai }
  cheap: { provider: local, model: llama3.2, options: { max_tokens_cap: 256, extra_body: { keep_alive: "5m" } } }
  smart:
    chain:
      - { provider: openai, model: gpt-4o }
      - { provider: anthropic, model: claude-sonnet-4-6, options: { max_tokens: 1000 } }
      - { provider: gemini, model: gemini-2.5-flash }
  auto:
    rules:
      - { task: [classify, extract], use: cheap }
      - { max_prompt_tokens: 20, use: gpt-4o-mini }
    default: smart
tenants:
  - { id: acme, tier: paid, api_keys: [sk-acme-123456] }
`;
const cfg = parseConfig(doc, {});
const user = (content: string) => [{ role: "user" as const, content }];

describe("routes", () => {
  it("fills each provider type's default base URL", () => {
    expect(cfg.providers.map((p) => p.base_url)).toEqual([
      "https://api.openai.com/v1",
      "https://api.anthropic.com",
      "https://generativelanguage.googleapis.com",
      "http://127.0.0.1:11434/v1",
    ]);
  });

  it("resolves a one-provider model and a chain, link models defaulting to the alias", () => {
    expect(resolveRoute(cfg, "gpt-4o-mini", { messages: user("x") })).toEqual({
      name: "gpt-4o-mini",
      links: [{ provider: "openai", model: "gpt-4o-mini", options: {} }],
    });
    const smart = resolveRoute(cfg, "smart", { messages: user("x") });
    expect(smart?.links.map((l) => `${l.provider}/${l.model}`)).toEqual([
      "openai/gpt-4o",
      "anthropic/claude-sonnet-4-6",
      "gemini/gemini-2.5-flash",
    ]);
    expect(resolveRoute(cfg, "nope", { messages: user("x") })).toBeUndefined();
  });

  it("picks a route by task hint first, then by estimated prompt size, else the default", () => {
    const long = "word ".repeat(40);
    expect(resolveRoute(cfg, "auto", { messages: user(long), task: "classify" })?.name).toBe("cheap");
    expect(resolveRoute(cfg, "auto", { messages: user("short"), task: "write" })?.name).toBe("gpt-4o-mini");
    expect(resolveRoute(cfg, "auto", { messages: user(long) })?.name).toBe("smart");
  });

  it("estimates prompt tokens at 4 characters per token plus 4 per message", () => {
    expect(estimatePromptTokens(user("12345678"))).toBe(6);
    expect(estimatePromptTokens([{ role: "user", content: [{ type: "text", text: "abcd" }] }])).toBe(5);
  });

  it("applies a link's defaults, caps, overrides and extra body", () => {
    const links = resolveRoute(cfg, "smart", { messages: user("x") })?.links ?? [];
    const base = { messages: user("x") };
    expect(applyLink(base, links[1]!)).toEqual({ ...base, model: "claude-sonnet-4-6", max_tokens: 1000 });
    expect(applyLink({ ...base, max_tokens: 50 }, links[1]!).max_tokens).toBe(50);
    const cheap = resolveRoute(cfg, "cheap", base)!.links[0]!;
    expect(applyLink({ ...base, max_tokens: 4000 }, cheap)).toEqual({
      ...base,
      model: "llama3.2",
      max_tokens: 256,
      extraBody: { keep_alive: "5m" },
    });
    expect(applyLink(base, cheap).max_tokens).toBe(256);
  });

  it("sizes BullMQ's attempt cap from the longest chain", () => {
    expect(queueAttemptCap(cfg)).toBe(4 * 3 + 1);
  });

  it.each([
    ["a model with two forms", "two: { provider: openai, chain: [{ provider: openai }] }", /exactly one of/],
    [
      "a rule pointing at a rules alias",
      "x: { rules: [{ task: a, use: auto }], default: smart }",
      /has rules itself/,
    ],
    ["a rule with no condition", "x: { rules: [{ use: smart }], default: smart }", /at least one condition/],
    ["rules without a default", "x: { rules: [{ task: a, use: smart }] }", /needs a default route/],
    [
      "a chain link to an unknown provider",
      "x: { chain: [{ provider: azure }] }",
      /x\.chain\.0\.provider: unknown provider/,
    ],
  ])("refuses %s, naming the field", (_name, line, message) => {
    const bad = doc.replace("models:\n", `models:\n  ${line}\n`);
    expect(() => parseConfig(bad, {})).toThrow(message);
  });

  it("requires a base_url for openai-compatible providers", () => {
    const bad = doc.replace(', base_url: "http://127.0.0.1:11434/v1"', "");
    expect(() => parseConfig(bad, {})).toThrow(
      /providers\.3\.base_url: openai-compatible providers need a base_url/,
    );
  });

  it("ships a demo config with the three providers and a three-provider fallback chain", () => {
    const demo = parseConfig(readFileSync(join(__dirname, "../../../config/demo.yaml"), "utf8"), {});
    const one = (m: string) => resolveRoute(demo, m, { messages: user("x") })?.links.map((l) => l.provider);
    expect(one("gpt-4o-mini")).toEqual(["openai"]);
    expect(one("claude-sonnet-4-6")).toEqual(["anthropic"]);
    expect(one("gemini-2.5-flash")).toEqual(["gemini"]);
    expect(one("smart")).toEqual(["openai", "anthropic", "gemini"]);
  });
});
