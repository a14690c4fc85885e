import { cachePlan, canonicalJson, guardSignature } from "./cache-key";
import { parseConfig } from "./config";
import { DEFAULT_GUARD_WORDS } from "./config-cache";
import { resolveRoute } from "./routes";

const cfg = parseConfig(`
providers:
  - { id: openai, type: openai, keys: [{ id: k, secret: sk-secret-1 }] }
models:
  plain: { provider: openai }
  cached: { provider: openai, model: gpt-4o-mini, cache: { mode: exact, ttl_seconds: 60 } }
  shared: { provider: openai, model: gpt-4o-mini, cache: { scope: global } }
  off: { provider: openai, cache: { mode: off } }
tenants:
  - { id: a, tier: paid, api_keys: [sk-tenant-a-1] }
  - { id: b, tier: paid, api_keys: [sk-tenant-b-1], cache: { scope: tenant } }
  - { id: c, tier: free, api_keys: [sk-tenant-c-1], cache: { mode: off } }
  - { id: d, tier: free, api_keys: [sk-tenant-d-1] }
`);
const tenant = (id: string) => cfg.tenants.find((t) => t.id === id);
const payload = (model: string, extra: Record<string, unknown> = {}) => ({
  model,
  request: { messages: [{ role: "user" as const, content: "hi" }], ...extra },
});
const plan = (
  t: string,
  model: string,
  extra: Record<string, unknown> = {},
  cache?: { read: boolean; write: boolean },
) => {
  const route = resolveRoute(cfg, model, { messages: [{ role: "user", content: "hi" }] });
  if (!route) throw new Error("no route");
  return cachePlan(cfg, tenant(t), route, { ...payload(model, extra), ...(cache ? { cache } : {}) });
};

describe("cache plan and key", () => {
  it("is off unless the route turns it on, and off for a tenant that opted out", () => {
    expect(plan("a", "plain")).toBeUndefined();
    expect(plan("a", "off")).toBeUndefined();
    expect(plan("c", "cached")).toBeUndefined();
    expect(plan("a", "cached")).toMatchObject({
      kind: "exact",
      scope: "tenant",
      ttlSeconds: 60,
      route: "cached",
    });
  });

  it("keys on the tenant with scope tenant, and a tenant can narrow a global route to itself", () => {
    expect(plan("a", "cached")?.key).not.toBe(plan("b", "cached")?.key);
    expect(plan("a", "shared")?.key).toBe(plan("d", "shared")?.key);
    expect(plan("b", "shared")).toMatchObject({ scope: "tenant" });
    expect(plan("a", "shared")?.key).not.toBe(plan("b", "shared")?.key);
  });

  it("changes with every generation parameter and the messages, not with key order", () => {
    const base = plan("a", "cached", { max_tokens: 5, temperature: 0.2 })?.key;
    expect(plan("a", "cached", { temperature: 0.2, max_tokens: 5 })?.key).toBe(base);
    for (const extra of [
      { max_tokens: 6, temperature: 0.2 },
      { max_tokens: 5, temperature: 0.3 },
      { max_tokens: 5, temperature: 0.2, top_p: 0.9 },
      { max_tokens: 5, temperature: 0.2, stop: ["x"] },
      { max_tokens: 5, temperature: 0.2, user: "u1" },
    ])
      expect(plan("a", "cached", extra)?.key).not.toBe(base);
  });

  it("follows the request's directives: nothing at all when it neither reads nor writes", () => {
    expect(plan("a", "cached", {}, { read: false, write: true })).toMatchObject({ read: false, write: true });
    expect(plan("a", "cached", {}, { read: false, write: false })).toBeUndefined();
  });

  it("writes canonical JSON: sorted keys, no undefined", () => {
    expect(canonicalJson({ b: 1, a: [{ d: undefined, c: "x" }] })).toBe('{"a":[{"c":"x"}],"b":1}');
  });

  it("guards numbers, negations and guard words, counted, whatever their order", () => {
    const g = (t: string) => guardSignature(t, DEFAULT_GUARD_WORDS);
    expect(g("What is 2+2?")).not.toBe(g("What is 2+3?"));
    expect(g("enable 2fa")).not.toBe(g("disable 2fa"));
    expect(g("is it open")).not.toBe(g("isn't it open"));
    expect(g("is it open")).not.toBe(g("is it not open"));
    expect(g("Capital of France?")).toBe(g("what's the capital of france"));
    expect(g("1.5 then 2")).toBe(g("2, then 1.5"));
  });
});
