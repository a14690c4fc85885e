import type { KeyView } from "@switchyard/limiter";
import {
  eventually,
  http,
  OTHER_KEY,
  PAID_KEY,
  Stack,
  testConfig,
  type ConfigDoc,
} from "@switchyard/testing";
import { chat, getJob, mockStats, submit, waitFinal } from "./helpers";

/**
 * Hot reload end to end: the API and two workers run on a config file the test rewrites; each
 * change is applied without a restart (tenants, keys, limits), an invalid file is refused while
 * traffic goes on, and jobs in flight across a reload all finish.
 */
const ADMIN = "admin-token-for-reload-tests";
const NEW_KEY = "sk-test-newcomer-01";
const LIMITED_SECRET = "sk-upstream-limited";

/** A provider of its own (at the mock) whose key's rpm the tests change. */
function withLimitedProvider(doc: ConfigDoc): ConfigDoc {
  const providers = doc.providers as Record<string, unknown>[];
  providers.push({
    id: "limited",
    type: "openai",
    base_url: (providers[0] as { base_url: string }).base_url,
    timeout_ms: 3000,
    keys: [{ id: "l1", secret: LIMITED_SECRET, rpm: 10_000 }],
    breaker: { enabled: false },
  });
  (doc.models as Record<string, unknown>)["limited-model"] = { provider: "limited", model: "gpt-4o-mini" };
  return doc;
}

function setLimitedRpm(doc: ConfigDoc, rpm: number): void {
  const p = (doc.providers as { id: string; keys: Record<string, unknown>[] }[]).find(
    (x) => x.id === "limited",
  );
  const key = p?.keys[0];
  if (key) key.rpm = rpm;
}

interface ConfigAnswer {
  hash: string;
  version: number;
  loaded_at: number;
  source: string;
  restart_required: string[];
  config: { tenants: { id: string; api_keys: string[] }[]; providers: { keys: { secret: string }[] }[] };
}

const admin = { authorization: `Bearer ${ADMIN}` };
const runningConfig = async (stack: Stack) =>
  (await http<ConfigAnswer>("GET", `${stack.apiUrl}/admin/config`, { headers: admin })).body;

async function keyView(stack: Stack, provider: string): Promise<KeyView | undefined> {
  const res = await http<{ providers: { id: string; keys: KeyView[] }[] }>(
    "GET",
    `${stack.apiUrl}/admin/keys`,
    { headers: admin },
  );
  return res.body.providers.find((p) => p.id === provider)?.keys[0];
}

async function reloadCounts(stack: Stack): Promise<Record<string, number>> {
  const text = (await http<string>("GET", `${stack.apiUrl}/metrics`)).body;
  const counts: Record<string, number> = {};
  for (const m of text.matchAll(/^switchyard_config_reloads_total\{result="(\w+)"[^}]*\} (\d+)/gm))
    if (m[1] && m[2]) counts[m[1]] = Number(m[2]);
  return counts;
}

describe("hot config reload", () => {
  let stack: Stack;
  let doc: ConfigDoc;
  const tenantsOf = (d: ConfigDoc) => d.tenants as Record<string, unknown>[];

  /** Writes the next version and waits until the API and both workers run it. */
  async function apply(change: (d: ConfigDoc) => void): Promise<string> {
    change(doc);
    const hash = stack.writeConfig(doc);
    await stack.waitForConfig(hash);
    return hash;
  }

  beforeAll(async () => {
    stack = await Stack.start({
      workers: 2,
      adminToken: ADMIN,
      mockEnv: { MOCK_LATENCY_MS: "20" },
      config: (mockUrl, prefix) => {
        doc = withLimitedProvider(testConfig(mockUrl, prefix));
        return doc;
      },
    });
  });
  afterAll(async () => {
    await stack?.stop();
  });

  it("shows the running version without secrets", async () => {
    const cfg = await runningConfig(stack);
    expect(cfg.hash).toMatch(/^[0-9a-f]{64}$/);
    expect(cfg.version).toBe(1);
    expect(cfg.source).toBe(stack.configPath);
    expect(cfg.restart_required).toEqual([]);
    const text = JSON.stringify(cfg);
    for (const secret of [
      PAID_KEY,
      OTHER_KEY,
      "sk-upstream-1",
      "sk-ant-upstream-1",
      "gm-upstream-1",
      LIMITED_SECRET,
    ])
      expect(text).not.toContain(secret);
    expect(cfg.config.tenants[0]?.api_keys).toEqual(["[redacted]"]);
  });

  it("adds a tenant (with a queue of its own) that works at once, without a restart", async () => {
    expect((await submit(stack.apiUrl, NEW_KEY, chat("hello?"))).status).toBe(401);
    const hash = await apply((d) =>
      tenantsOf(d).push({ id: "newcomer", tier: "paid", api_keys: [NEW_KEY], dedicated_queue: true }),
    );
    expect((await runningConfig(stack)).hash).toBe(hash);
    const res = await submit(stack.apiUrl, NEW_KEY, chat("first job of a new tenant"));
    expect(res.status).toBe(202);
    const job = await waitFinal(stack.apiUrl, NEW_KEY, res.body.id);
    expect(job.status).toBe("succeeded");
    expect(job.result?.output_text).toBe("Echo: first job of a new tenant");
    for (const w of stack.workers)
      expect(w.output()).toMatch(/"queue":"jobs-tenant-newcomer"[^\n]*consuming a new queue/);
  });

  it("revokes a tenant key: the next request with it gets 401", async () => {
    expect((await submit(stack.apiUrl, OTHER_KEY, chat("still in"))).status).toBe(202);
    await apply((d) => {
      const other = tenantsOf(d).find((t) => t.id === "other-co");
      if (other) other.api_keys = ["sk-test-other-rotated"];
    });
    const refused = await submit(stack.apiUrl, OTHER_KEY, chat("revoked"));
    expect(refused.status).toBe(401);
    expect((await submit(stack.apiUrl, "sk-test-other-rotated", chat("rotated"))).status).toBe(202);
  });

  it("follows a key's new rpm both ways: down at once, and up for the jobs already waiting", async () => {
    const lim = { model: "limited-model" };
    const calls = async () => (await mockStats(stack.mockUrl)).keys[LIMITED_SECRET]?.requests ?? 0;
    const first = await submit(stack.apiUrl, PAID_KEY, chat("before the change", lim));
    expect((await waitFinal(stack.apiUrl, PAID_KEY, first.body.id)).status).toBe("succeeded");
    expect(await calls()).toBe(1);

    await apply((d) => setLimitedRpm(d, 3));
    expect((await keyView(stack, "limited"))?.limits.rpm).toBe(3);
    const ids: string[] = [];
    for (let i = 0; i < 6; i++) {
      const res = await submit(stack.apiUrl, PAID_KEY, chat(`limited ${i}`, lim));
      expect(res.status).toBe(202);
      ids.push(res.body.id);
    }
    // The minute's window holds the call made before: two more fit under 3 rpm, four wait.
    await eventually(calls, (n) => n >= 3, 20_000, "three calls on the limited key");
    const view = await keyView(stack, "limited");
    expect(view?.usage.requests).toBe(3);
    const waiting = await eventually(
      async () => {
        const jobs = await Promise.all(ids.map((id) => getJob(stack.apiUrl, PAID_KEY, id)));
        return jobs.map((j) => j.body.status);
      },
      // A waiting job is "running" for the moment a worker holds it between its appointment
      // (or its first pick) and its hand-back to the waiting room: wait for it to be back.
      (s) => s.filter((x) => x === "succeeded").length === 2 && s.filter((x) => x === "queued").length === 4,
      20_000,
      "two of the six to succeed and four to wait",
    );
    expect(waiting.filter((x) => x === "queued")).toHaveLength(4);
    expect(await calls()).toBe(3);

    // Raised: the four waited for appointments at 3 rpm (20 s apart, after the window turns);
    // they are freed at once and finish now.
    await apply((d) => setLimitedRpm(d, 10_000));
    expect((await keyView(stack, "limited"))?.limits.rpm).toBe(10_000);
    const done = await Promise.all(ids.map((id) => waitFinal(stack.apiUrl, PAID_KEY, id, 30)));
    expect(done.map((j) => j.status)).toEqual(Array(6).fill("succeeded"));
    expect(await calls()).toBe(7);
    expect(stack.workers.map((w) => w.output()).join("")).toMatch(
      /"providers":\["limited"\][^\n]*provider limits changed/,
    );
  });

  it("refuses an invalid file (naming the failing path), keeps the running config, and keeps serving", async () => {
    const before = await runningConfig(stack);
    const invalidBefore = (await reloadCounts(stack)).invalid ?? 0;
    const broken = structuredClone(doc);
    (broken.queue as Record<string, unknown>).attempts = "many";
    stack.writeConfig(broken);
    await stack.api.waitForOutput(/"error":"[^"]*queue\.attempts[^"]*"[^\n]*config reload refused/);
    for (const w of stack.workers) await w.waitForOutput(/queue\.attempts[^\n]*config reload refused/);
    expect((await runningConfig(stack)).hash).toBe(before.hash);
    expect((await reloadCounts(stack)).invalid).toBe(invalidBefore + 1);
    const res = await submit(stack.apiUrl, PAID_KEY, chat("served on the old config"));
    expect(res.status).toBe(202);
    expect((await waitFinal(stack.apiUrl, PAID_KEY, res.body.id)).status).toBe("succeeded");
    // Not YAML at all: refused the same way.
    stack.writeConfig("tenants: [unclosed");
    await stack.api.waitForOutput(/not valid YAML[^\n]*config reload refused/);
    expect((await runningConfig(stack)).hash).toBe(before.hash);
    // Fixed (the same file as running: nothing to apply), then changed: applied again.
    stack.writeConfig(doc);
    await eventually(
      () => reloadCounts(stack),
      (c) => (c.unchanged ?? 0) >= 1,
      20_000,
      "an unchanged reload",
    );
    await apply((d) => {
      (d.models as Record<string, unknown>)["after-fix"] = { provider: "openai", model: "gpt-4o-mini" };
    });
  });

  it("finishes every one of 500 jobs in flight across a reload", async () => {
    const ids: string[] = [];
    const post = async (i: number) => {
      const res = await submit(stack.apiUrl, PAID_KEY, chat(`in flight ${i}`));
      expect(res.status).toBe(202);
      ids.push(res.body.id);
    };
    for (let i = 0; i < 250; i += 25) await Promise.all(Array.from({ length: 25 }, (_, j) => post(i + j)));
    // A reload that touches what jobs run with: weights, the worker's slots, the route table.
    const reloaded = apply((d) => {
      const paid = tenantsOf(d).find((t) => t.id === "paid-co");
      if (paid) paid.weight = 3;
      (d.worker as Record<string, unknown>).concurrency = 48;
      (d.models as Record<string, unknown>)["fast-2"] = { provider: "openai", model: "gpt-4o-mini" };
    });
    for (let i = 250; i < 500; i += 25) await Promise.all(Array.from({ length: 25 }, (_, j) => post(i + j)));
    await reloaded;
    const jobs = await Promise.all(ids.map((id) => waitFinal(stack.apiUrl, PAID_KEY, id, 30)));
    expect(jobs).toHaveLength(500);
    const statuses = jobs.reduce<Record<string, number>>(
      (acc, j) => ((acc[j.status] = (acc[j.status] ?? 0) + 1), acc),
      {},
    );
    expect(statuses).toEqual({ succeeded: 500 });
    expect((await runningConfig(stack)).version).toBeGreaterThanOrEqual(6);
  }, 120_000);
});
