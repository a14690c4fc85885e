import { http, PAID_KEY, Stack, type HttpAnswer } from "@switchyard/testing";
import { chat } from "./helpers";

/**
 * A few thousand generated hostile requests (seeded, so a failure replays exactly): malformed
 * %-escapes on every :id route, wrong types and sizes, prototype names, duplicate keys, deep
 * nesting, SSRF targets in every form. No answer may be a 5xx, no prototype name may become a
 * job, and no internal address may be accepted as a webhook target.
 */
type ErrorBody = { error?: { type: string; message: string; details?: { path: string }[] } };

/** mulberry32: a tiny seeded PRNG, so every run sends the same requests. */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const BAD_IDS = [
  "%zz",
  "%",
  "%c0%ae",
  "%E0%A4%A",
  "%00",
  "%ff%fe",
  "..%2f..%2fetc%2fpasswd",
  "job_%zz",
  "%u0041",
  "ep_%g0",
  "%%",
  "%2",
  "dlv_%c0",
  "x".repeat(3000),
  "constructor",
  "__proto__",
];

/** Every route that takes an id, with the methods it answers. */
const ID_ROUTES: [string, string][] = [
  ["GET", "/v1/jobs/:id"],
  ["GET", "/v1/jobs/:id?wait=1"],
  ["DELETE", "/v1/jobs/:id"],
  ["GET", "/v1/jobs/:id/events"],
  ["GET", "/v1/jobs/:id/deliveries"],
  ["GET", "/v1/webhook-endpoints/:id"],
  ["DELETE", "/v1/webhook-endpoints/:id"],
  ["POST", "/v1/webhook-endpoints/:id/rotate-secret"],
  ["POST", "/v1/webhook-endpoints/:id/enable"],
  ["GET", "/v1/webhook-endpoints/:id/deliveries"],
  ["POST", "/v1/webhook-endpoints/:id/replay-failed"],
  ["GET", "/v1/webhook-deliveries/:id"],
  ["POST", "/v1/webhook-deliveries/:id/replay"],
];

const PROTOTYPE_NAMES = [
  "constructor",
  "__proto__",
  "toString",
  "valueOf",
  "hasOwnProperty",
  "isPrototypeOf",
  "propertyIsEnumerable",
  "__defineGetter__",
  "toLocaleString",
];

/** Internal targets, in every spelling a parser might let through. */
const SSRF_URLS = [
  "http://127.0.0.1/hook",
  "http://[::1]/hook",
  "http://[::127.0.0.1]/hook",
  "http://[::169.254.169.254]/latest/meta-data/",
  "http://[::10.0.0.1]/",
  "http://[::ffff:127.0.0.1]/",
  "http://[::ffff:7f00:1]/",
  "http://[0:0:0:0:0:ffff:a9fe:a9fe]/",
  "http://[64:ff9b::7f00:1]/",
  "http://[64:ff9b:1::a00:1]/",
  "http://[2002:7f00:1::1]/",
  "http://[2001:0:4136:e378:8000:63bf:3fff:fdd2]/",
  "http://[100::1]/",
  "http://[fec0::1]/",
  "http://[fd00::1]/",
  "http://[fe80::1]/",
  "http://10.0.0.1/",
  "http://169.254.169.254/",
  "http://100.64.0.1/",
  "http://0.0.0.0/",
  "http://2130706433/",
  "http://0x7f.1/",
  "http://017700000001/",
  "http://127.1/",
  "gopher://93.184.216.34/",
  "file:///etc/passwd",
  "http://user:pass@93.184.216.34/",
];

const TYPE_SWAPS: unknown[] = [null, true, 0, -1, 1e308, "", "x", [], {}, [[]], { a: 1 }, "9".repeat(400)];

describe("hostile input", () => {
  let stack: Stack;
  const seen = { requests: 0, byStatus: new Map<number, number>() };
  beforeAll(async () => {
    stack = await Stack.start({ workers: 0 });
    // Jobs' own webhook.url is only checked once the tenant has a secret.
    const secret = await http("POST", `${stack.apiUrl}/v1/webhook-secret`, { key: PAID_KEY, json: {} });
    expect(secret.status).toBe(200);
  });
  afterAll(async () => {
    await stack?.stop();
    console.info(
      `hostile input: ${seen.requests} requests; statuses ${JSON.stringify(Object.fromEntries([...seen.byStatus].sort()))}`,
    );
  });

  const send = async (
    method: string,
    path: string,
    opts: Parameters<typeof http>[2] = {},
  ): Promise<HttpAnswer<ErrorBody>> => {
    const res = await http<ErrorBody>(method, `${stack.apiUrl}${path}`, { key: PAID_KEY, ...opts });
    seen.requests += 1;
    seen.byStatus.set(res.status, (seen.byStatus.get(res.status) ?? 0) + 1);
    if (res.status >= 500)
      throw new Error(`${method} ${path.slice(0, 200)} answered ${res.status}: ${JSON.stringify(res.body)}`);
    return res;
  };

  it("answers malformed %-escapes on every :id route with a 4xx in our error shape", async () => {
    for (const [method, route] of ID_ROUTES)
      for (const id of BAD_IDS) {
        const res = await send(method, route.replace(":id", id), method === "POST" ? { json: {} } : {});
        expect(res.status).toBeGreaterThanOrEqual(400);
        expect(res.status).toBeLessThan(500);
        expect(typeof res.body.error?.type).toBe("string");
      }
  });

  it("never queues a job for a prototype name, however the model is spelled", async () => {
    for (const name of PROTOTYPE_NAMES) {
      const res = await send("POST", "/v1/jobs", { json: chat("x", { model: name }) });
      expect({ name, status: res.status }).toEqual({ name, status: 400 });
      expect(res.body.error?.details?.map((d) => d.path)).toEqual(["model"]);
      // A duplicate key: JSON.parse keeps the last one.
      const dup = await send("POST", "/v1/jobs", {
        rawBody: `{"model":"gpt-4o-mini","model":${JSON.stringify(name)},"messages":[{"role":"user","content":"x"}]}`,
      });
      expect(dup.status).toBe(400);
    }
    const proto = await send("POST", "/v1/jobs", {
      rawBody:
        '{"model":"gpt-4o-mini","messages":[{"role":"user","content":"x"}],"metadata":{"__proto__":"x"}}',
    });
    expect(proto.status).toBe(400);
    expect(proto.body.error?.details?.map((d) => d.path)).toEqual(["metadata.__proto__"]);
  });

  it("refuses every internal address as an endpoint and as a job's webhook.url", async () => {
    for (const url of SSRF_URLS) {
      const ep = await send("POST", "/v1/webhook-endpoints", { json: { url } });
      expect({ url, status: ep.status }).toEqual({ url, status: 400 });
      const job = await send("POST", "/v1/jobs", { json: chat("x", { webhook: { url } }) });
      expect({ url, status: job.status }).toEqual({ url, status: 400 });
    }
  });

  it("survives thousands of generated mutations of valid requests without a 5xx", async () => {
    const random = rng(20261123);
    const pick = <T>(xs: readonly T[]): T => xs[Math.floor(random() * xs.length)] as T;
    const valid = () => ({
      model: "gpt-4o-mini",
      messages: [{ role: "user", content: "hello" }],
      max_tokens: 5,
      metadata: { k: "v" },
    });
    const fields = [
      "model",
      "messages",
      "max_tokens",
      "temperature",
      "top_p",
      "stop",
      "priority",
      "metadata",
      "webhook",
      "ttl_seconds",
      "task",
      "user",
    ];
    const mutate = (): { rawBody?: string; json?: unknown; headers?: Record<string, string> } => {
      const body: Record<string, unknown> = valid();
      switch (Math.floor(random() * 10)) {
        case 0: // a field of the wrong type
          body[pick(fields)] = pick(TYPE_SWAPS);
          return { json: body };
        case 1: // a prototype or odd model name
          body.model = pick([
            ...PROTOTYPE_NAMES,
            "",
            " ",
            "gpt-4o-mini\u0000",
            "%zz",
            "a".repeat(300),
            "../../x",
          ]);
          return { json: body };
        case 2: // a message of the wrong shape
          body.messages = [
            pick([
              { role: "user" },
              { role: "robot", content: "x" },
              { content: [{ type: "image" }] },
              "x",
              null,
              { role: "user", content: [] },
            ]),
          ];
          return { json: body };
        case 3: // deep nesting
          return { rawBody: `${"[".repeat(5000)}${"]".repeat(5000)}` };
        case 4: // truncated or broken JSON
          return { rawBody: JSON.stringify(body).slice(0, Math.floor(random() * 40)) };
        case 5: // too large
          return {
            rawBody: JSON.stringify({ ...body, messages: [{ role: "user", content: "x".repeat(70_000) }] }),
          };
        case 6: // a __proto__ key somewhere
          return { rawBody: JSON.stringify(body).replace('"k":"v"', '"__proto__":{"polluted":true}') };
        case 7: // hostile metadata
          body.metadata = pick([
            { ["x".repeat(100)]: 1 },
            Object.fromEntries(Array.from({ length: 40 }, (_, i) => [`k${i}`, i])),
            { k: { nested: 1 } },
            [1, 2],
          ]);
          return { json: body };
        case 8: // an SSRF webhook
          body.webhook = { url: pick(SSRF_URLS) };
          return { json: body };
        default: // odd headers and content types
          return {
            json: body,
            headers: pick<Record<string, string>>([
              { "content-type": "text/plain" },
              { "content-type": "application/json; charset=latin1" },
              { "idempotency-key": "k".repeat(300) },
              { "idempotency-key": "ä" },
              { "content-encoding": "gzip" },
            ]),
          };
      }
    };
    let accepted = 0;
    const queue = Array.from({ length: 2_400 }, () => mutate());
    const worker = async () => {
      for (let m = queue.pop(); m; m = queue.pop()) {
        const res = await send("POST", "/v1/jobs", m);
        if (res.status === 202) accepted += 1;
      }
    };
    await Promise.all(Array.from({ length: 8 }, () => worker()));
    // Query strings of the read routes, mangled.
    for (let i = 0; i < 300; i++) {
      const q = pick([
        "wait=-1",
        "wait=abc",
        "wait=1e9",
        "wait=%zz",
        "wait[]=1",
        "wait=1&wait=2",
        "limit=0",
        "status=__proto__",
        "limit=1e3&status=x",
      ]);
      const route = pick([
        "/v1/jobs/job_0000000000000000000000000000a",
        "/v1/webhook-endpoints/ep_00000000000000000000/deliveries",
      ]);
      const res = await send("GET", `${route}?${q}`);
      expect(res.status).toBeLessThan(500);
    }
    console.info(`generated mutations: ${accepted} of 2400 were valid jobs and got 202`);
    expect(seen.byStatus.get(500) ?? 0).toBe(0);
  });
});
