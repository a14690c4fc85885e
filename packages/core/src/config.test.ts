import { ConfigError, interpolateEnv, parseConfig, worstStallRecoveryMs } from "./config";
import { resolveRoute } from "./routes";

const minimal = `
providers:
  - id: openai
    type: openai
    base_url: \${UPSTREAM:-http://127.0.0.1:4010}/v1
    keys: [{ id: k1, secret: "\${OPENAI_KEY}" }]
models:
  gpt-4o-mini: { provider: openai }
tenants:
  - { id: acme, tier: paid, api_keys: [sk-acme-123456] }
`;

describe("config", () => {
  it("parses a minimal file and fills defaults", () => {
    const cfg = parseConfig(minimal, { OPENAI_KEY: "sk-real" });
    expect(cfg.providers[0]?.base_url).toBe("http://127.0.0.1:4010/v1");
    expect(cfg.providers[0]?.keys[0]?.secret).toBe("sk-real");
    expect(cfg.queue).toMatchObject({ prefix: "{sy}", retention_hours: 24, attempts: 4 });
    expect(cfg.worker).toMatchObject({ concurrency: 256, tier_weights: { paid: 4, free: 1 } });
    expect(cfg.server.max_body_bytes).toBe(1024 * 1024);
    expect(cfg.tenants[0]?.dedicated_queue).toBe(false);
  });

  it("recovers a SIGKILLed worker's jobs within 15 s with the default lock settings", () => {
    const cfg = parseConfig(minimal, { OPENAI_KEY: "sk-real" });
    expect(worstStallRecoveryMs(cfg.worker)).toBeLessThanOrEqual(15_000);
    // The lock must still be renewable twice before it lapses.
    expect(cfg.worker.lock_duration_ms).toBeGreaterThanOrEqual(2 * cfg.worker.stalled_interval_ms);
  });

  it("finds only the models the config defines, never a prototype property", () => {
    const cfg = parseConfig(minimal, { OPENAI_KEY: "sk-real" });
    const req = { messages: [{ role: "user" as const, content: "hi" }] };
    expect(resolveRoute(cfg, "gpt-4o-mini", req)?.links).toHaveLength(1);
    for (const name of ["constructor", "__proto__", "toString", "valueOf", "hasOwnProperty", "isPrototypeOf"])
      expect(resolveRoute(cfg, name, req)).toBeUndefined();
  });

  it("refuses a rule that points at a prototype name", () => {
    const text = minimal.replace(
      "  gpt-4o-mini: { provider: openai }",
      "  gpt-4o-mini: { provider: openai }\n  auto: { rules: [{ task: x, use: constructor }], default: toString }",
    );
    expect(() => parseConfig(text, { OPENAI_KEY: "sk-real" })).toThrow(
      /models\.auto\.rules\.0\.use: unknown model 'constructor'.*models\.auto\.default: unknown model 'toString'/,
    );
  });

  it("names a missing environment variable", () => {
    expect(() => parseConfig(minimal, {})).toThrow(
      /providers\.0\.keys\.0\.secret: environment variable OPENAI_KEY is not set/,
    );
  });

  it("names the bad field of an invalid config", () => {
    const bad = minimal.replace("tier: paid", "tier: gold");
    expect(() => parseConfig(bad, { OPENAI_KEY: "x" })).toThrow(/tenants\.0\.tier/);
  });

  it("rejects a model routed to an unknown provider, and duplicate keys without echoing them", () => {
    const bad = minimal.replace("gpt-4o-mini: { provider: openai }", "gpt-4o-mini: { provider: nobody }");
    expect(() => parseConfig(bad, { OPENAI_KEY: "x" })).toThrow(
      /models\.gpt-4o-mini\.provider: unknown provider 'nobody'/,
    );
    const dup = minimal.replace(
      "api_keys: [sk-acme-123456] }",
      "api_keys: [sk-acme-123456] }\n  - { id: other, tier: free, api_keys: [sk-acme-123456] }",
    );
    let message = "";
    try {
      parseConfig(dup, { OPENAI_KEY: "x" });
    } catch (err) {
      message = (err as Error).message;
    }
    expect(message).toMatch(/tenants\.1\.api_keys\.0: API key is used twice/);
    expect(message).not.toContain("sk-acme-123456");
  });

  it("rejects unknown fields (typos must not be ignored)", () => {
    expect(() => parseConfig(`${minimal}\nqueue: { atempts: 3 }\n`, { OPENAI_KEY: "x" })).toThrow(/queue/);
  });

  it("reports YAML syntax errors as ConfigError", () => {
    expect(() => parseConfig("providers: [", {})).toThrow(ConfigError);
  });

  it("interpolates nested values and keeps non-strings", () => {
    expect(interpolateEnv({ a: ["${X}", 3, { b: "${Y:-dflt}" }] }, { X: "x" })).toEqual({
      a: ["x", 3, { b: "dflt" }],
    });
  });

  it("parses the shipped demo config", () => {
    const { readFileSync } = require("node:fs") as typeof import("node:fs");
    const text = readFileSync(`${__dirname}/../../../config/demo.yaml`, "utf8");
    const cfg = parseConfig(text, {});
    expect(cfg.tenants.map((t) => [t.id, t.tier, t.api_keys[0]])).toEqual([
      ["demo-paid", "paid", "sk-demo-paid"],
      ["demo-free", "free", "sk-demo-free"],
    ]);
    expect(cfg.providers[0]?.base_url).toBe("http://127.0.0.1:4010/v1");
  });
});
