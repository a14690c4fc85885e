import { http, OTHER_KEY, PAID_KEY, Stack, testConfig } from "@switchyard/testing";
import { chat } from "./helpers";

/**
 * Ingress limits shared by two API processes through Redis: the fleet admits the burst once,
 * not once per process; refusals are 429 with Retry-After and the IETF RateLimit headers; a
 * tenant's limit does not touch another tenant; X-Forwarded-For counts only from trusted proxies.
 */
describe("ingress rate limits", () => {
  let stack: Stack;
  let second: string;
  beforeAll(async () => {
    stack = await Stack.start({
      workers: 0,
      config: (mockUrl, prefix) =>
        testConfig(mockUrl, prefix, {
          // A low rate and a small burst: one process alone would already exceed them.
          server: { rate_limit: { per_tenant: { rps: 1, burst: 5 }, per_ip: { rps: 1000, burst: 2000 } } },
        }),
    });
    second = await stack.addApi();
  });
  afterAll(async () => {
    await stack?.stop();
  });

  it("shares one tenant limit between two API processes, and says when to come back", async () => {
    const answers = [];
    for (let i = 0; i < 16; i++) {
      const api = i % 2 === 0 ? stack.apiUrl : second;
      answers.push(await http("POST", `${api}/v1/jobs`, { key: PAID_KEY, json: chat(`burst ${i}`) }));
    }
    const accepted = answers.filter((a) => a.status === 202).length;
    // The burst (5) plus at most what the sustained rate adds while the 16 requests go (1/s):
    // two processes each with its own limit would have admitted about twice as many.
    expect(accepted).toBeGreaterThanOrEqual(5);
    expect(accepted).toBeLessThanOrEqual(8);
    const refused = answers.filter((a) => a.status === 429);
    expect(refused.length).toBe(16 - accepted);
    for (const r of refused) {
      expect(Number(r.headers.get("retry-after"))).toBeGreaterThanOrEqual(1);
      expect(r.headers.get("ratelimit-policy")).toMatch(/^"tenant";q=5;w=\d+$/);
      expect(r.headers.get("ratelimit")).toMatch(/^"tenant";r=0;t=\d+$/);
      expect((r.body as { error: { type: string } }).error.type).toBe("rate_limit_error");
    }
    const ok = answers.find((a) => a.status === 202);
    expect(ok?.headers.get("ratelimit")).toMatch(/^"tenant";r=\d+;t=\d+$/);
    // Another tenant has its own limit.
    expect((await http("POST", `${second}/v1/jobs`, { key: OTHER_KEY, json: chat("other") })).status).toBe(
      202,
    );
  });

  it("never limits health checks, readiness or metrics", async () => {
    for (let i = 0; i < 10; i++) expect((await http("GET", `${stack.apiUrl}/readyz`)).status).toBe(200);
  });
});

describe("per-address limits behind a trusted proxy", () => {
  let stack: Stack;
  beforeAll(async () => {
    stack = await Stack.start({
      workers: 0,
      config: (mockUrl, prefix) =>
        testConfig(mockUrl, prefix, {
          server: { rate_limit: { per_ip: { rps: 1, burst: 3 } }, trusted_proxies: ["127.0.0.1/32"] },
        }),
    });
  });
  afterAll(async () => {
    await stack?.stop();
  });

  it("counts each client address the trusted proxy forwards apart", async () => {
    const from = (ip: string) =>
      http("GET", `${stack.apiUrl}/v1/jobs/job_0000000000000000000000000000a`, {
        key: PAID_KEY,
        headers: { "x-forwarded-for": ip },
      });
    const first = [];
    for (let i = 0; i < 6; i++) first.push((await from("203.0.113.7")).status);
    expect(first.filter((s) => s === 429).length).toBeGreaterThanOrEqual(2);
    expect(first.slice(0, 3)).toEqual([404, 404, 404]);
    // Another client behind the same proxy has its own allowance.
    expect((await from("203.0.113.8")).status).toBe(404);
  });
});
