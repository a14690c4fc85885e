import { spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { parse } from "yaml";
import { z } from "zod";
import {
  comparedSeries,
  eventually,
  findPrometheus,
  http,
  FREE_KEY,
  PAID_KEY,
  Receiver,
  REPO_ROOT,
  Stack,
  startPrometheus,
  startRedis,
  testConfig,
  type ConfigDoc,
  type PrometheusHandle,
  type RedisHandle,
} from "@switchyard/testing";
import { chat, submit, waitFinal } from "./helpers";

/**
 * The alert rules and dashboards checked for real: promtool checks the rules and runs their unit
 * tests, then a real Prometheus scrapes a running stack (API and worker, traffic of every kind)
 * with the rules loaded, and every alert expression (each comparison made a bool one, so that a
 * quiet alert still shows its series) and every dashboard query and variable must return at
 * least one series. A metric renamed, a label misspelt or a series that only appears after an
 * incident fails here, not on an operator's screen.
 */
const PROM_DIR = join(REPO_ROOT, "infra/prometheus");
const DASH_DIR = join(REPO_ROOT, "infra/grafana/dashboards");
const ALLOW_LOOPBACK = { SWITCHYARD_WEBHOOK_ALLOWLIST: "127.0.0.1/32" };

const bins = findPrometheus();
if (!bins) {
  const msg =
    "\n\n!!! prometheus/promtool are not installed: the live alert and dashboard checks cannot run.\n" +
    "!!! Install them (Debian/Ubuntu: sudo apt-get install prometheus) or run bash scripts/test.sh as root.\n\n";
  // CI installs them (scripts/test.sh): there a missing binary is a failure, never a skip.
  if (process.env.CI) throw new Error(msg);
  process.stderr.write(msg);
}
const maybe = bins ? describe : describe.skip;

const rulesSchema = z.object({
  groups: z.array(
    z.object({ name: z.string(), rules: z.array(z.object({ alert: z.string(), expr: z.string() })) }),
  ),
});
const dashboardSchema = z.object({
  title: z.string(),
  panels: z.array(
    z.object({
      type: z.string(),
      title: z.string().optional(),
      targets: z.array(z.object({ expr: z.string() })).optional(),
    }),
  ),
  templating: z.object({
    list: z.array(z.object({ name: z.string(), type: z.string(), query: z.unknown() })),
  }),
});

/** A Grafana query as Prometheus would get it, every filter at "All". */
const grafanaToPromQL = (expr: string): string =>
  expr.replaceAll("$__rate_interval", "1m").replace(/\$\{?(queue|tenant|provider)\}?/g, ".*");

maybe("alert rules and dashboards against a live Prometheus", () => {
  const promtool = bins?.promtool ?? "promtool";

  it("promtool: the rules and the compose config are valid, and every alert's unit test passes", () => {
    for (const args of [
      ["check", "rules", join(PROM_DIR, "alerts.yml")],
      ["check", "config", join(PROM_DIR, "prometheus.yml")],
      ["test", "rules", join(PROM_DIR, "alerts.test.yml")],
    ]) {
      const r = spawnSync(promtool, args, { encoding: "utf8" });
      expect({ args, status: r.status, out: `${r.stdout}${r.stderr}` }).toMatchObject({ status: 0 });
    }
  });

  describe("a stack scraped by Prometheus", () => {
    let redis: RedisHandle;
    let receiver: Receiver;
    let stack: Stack;
    let prom: PrometheusHandle;

    beforeAll(async () => {
      // maxmemory set, as production should: the memory alert compares against it.
      redis = await startRedis({ maxmemory: "256mb" });
      receiver = await Receiver.start();
      receiver.on("/dead", () => ({ status: 500 }));
      stack = await Stack.start({
        redisUrl: redis.url,
        workers: 1,
        apiEnv: ALLOW_LOOPBACK,
        workerEnv: { ...ALLOW_LOOPBACK, METRICS_PORT: "0" },
        config: (mockUrl, prefix): ConfigDoc => {
          const cfg = testConfig(mockUrl, prefix);
          const providers = cfg.providers as Record<string, unknown>[];
          // Limits on the keys (utilisation), a breaker (circuit state), a bulkhead.
          Object.assign(providers[0] as object, {
            keys: [{ id: "k1", secret: "sk-upstream-1", rpm: 100_000, tpm: 10_000_000 }],
            breaker: { enabled: true, min_calls: 1000 },
          });
          Object.assign(providers[1] as object, { bulkhead: { max_concurrent: 8, max_waiting: 8 } });
          (cfg.models as Record<string, unknown>)["cached"] = {
            provider: "openai",
            model: "gpt-4o-mini",
            cache: { mode: "exact" },
          };
          cfg.admission = { paid: { max_waiting: 100_000, max_wait_seconds: 600 } };
          cfg.webhooks = { retry_schedule_seconds: [0.1], jitter: 0, timeout_ms: 2000 };
          return cfg;
        },
      });
      const workerPort = Number(
        /"port":(\d+)[^\n]*worker metrics listening/.exec(
          await stack.workers[0]!.waitForOutput(/"port":(\d+)[^\n]*worker metrics listening/),
        )?.[1],
      );
      const apiTarget = stack.apiUrl.replace("http://", "");
      prom = await startPrometheus(
        bins!.prometheus,
        [
          "global: { scrape_interval: 1s, evaluation_interval: 1s }",
          `rule_files: [${JSON.stringify(join(PROM_DIR, "alerts.yml"))}]`,
          "scrape_configs:",
          `  - { job_name: switchyard-api, static_configs: [{ targets: ["${apiTarget}"] }] }`,
          `  - { job_name: switchyard-worker, static_configs: [{ targets: ["127.0.0.1:${workerPort}"] }] }`,
        ].join("\n"),
      );

      // Traffic of every kind: successes in both tiers, cache hits, a client error, a retried
      // 500, a 429, webhook deliveries that succeed and one that is dead-lettered.
      for (const [path] of [["/hooks"], ["/dead"]])
        expect(
          (
            await http("POST", `${stack.apiUrl}/v1/webhook-endpoints`, {
              key: PAID_KEY,
              json: { url: `${receiver.url}${path}` },
            })
          ).status,
        ).toBe(201);
      const bodies = [
        ...Array.from({ length: 10 }, (_, i) => [PAID_KEY, chat(`paid ${i}`)] as const),
        ...Array.from({ length: 5 }, (_, i) => [FREE_KEY, chat(`free ${i}`)] as const),
        ...Array.from({ length: 4 }, () => [PAID_KEY, chat("same question", { model: "cached" })] as const),
        [PAID_KEY, chat("[[mock:status=400]] refused")] as const,
        [PAID_KEY, chat("[[mock:status=500,times=1,id=prom-500]] retried")] as const,
        [PAID_KEY, chat("[[mock:status=429,times=1,id=prom-429,retry_after=0]] limited")] as const,
        [PAID_KEY, chat("to anthropic", { model: "claude-sonnet-4-6" })] as const,
      ];
      const ids: [string, string][] = [];
      for (const [key, body] of bodies) {
        const res = await submit(stack.apiUrl, key, body);
        expect(res.status).toBe(202);
        ids.push([key, res.body.id]);
      }
      for (const [key, id] of ids) await waitFinal(stack.apiUrl, key, id, 30);
      await receiver.waitFor("/dead", 2);
    }, 120_000);
    afterAll(async () => {
      await prom?.stop();
      await stack?.stop();
      await receiver?.close();
      await redis?.stop();
    });

    it("scrapes both apps, loads every rule, and each alert expression returns series", async () => {
      // Enough scrapes for rate() and deriv() windows: every target up, 5 samples at least.
      await eventually(
        () => prom.query('count_over_time(up{job=~"switchyard-.*"}[1m]) >= 5 and up == 1'),
        (r) => r.length === 2,
        60_000,
        "two targets scraped five times",
      );
      const rules = rulesSchema.parse(parse(readFileSync(join(PROM_DIR, "alerts.yml"), "utf8")));
      const loaded = z
        .object({
          data: z.object({
            groups: z.array(
              z.object({
                rules: z.array(
                  z.object({ name: z.string(), health: z.string(), lastError: z.string().optional() }),
                ),
              }),
            ),
          }),
        })
        .parse(await prom.get("/api/v1/rules"));
      const health = loaded.data.groups.flatMap((g) => g.rules);
      const alerts = rules.groups.flatMap((g) => g.rules);
      expect(health.map((r) => r.name).sort()).toEqual(alerts.map((a) => a.alert).sort());
      for (const r of health)
        expect({ rule: r.name, health: r.health, error: r.lastError ?? "" }).toEqual({
          rule: r.name,
          health: "ok",
          error: "",
        });

      const empty: string[] = [];
      for (const a of alerts) {
        const series = await prom.query(comparedSeries(a.expr));
        if (series.length === 0) empty.push(`${a.alert}: ${a.expr}`);
      }
      expect(empty).toEqual([]);
    });

    it("every dashboard panel's query and every variable returns series", async () => {
      const empty: string[] = [];
      let queries = 0;
      for (const file of ["overview.json", "tenants.json", "providers.json", "webhooks.json"]) {
        const d = dashboardSchema.parse(JSON.parse(readFileSync(join(DASH_DIR, file), "utf8")));
        for (const v of d.templating.list.filter((x) => x.type === "query")) {
          const m = /^label_values\((\w+), (\w+)\)$/.exec(String(v.query));
          expect(m).not.toBeNull();
          const values = z
            .object({ data: z.array(z.string()) })
            .parse(await prom.get(`/api/v1/label/${m?.[2]}/values?match[]=${m?.[1]}`));
          if (values.data.length === 0) empty.push(`${d.title} variable ${v.name}`);
        }
        for (const p of d.panels)
          for (const t of p.targets ?? []) {
            queries++;
            const series = await prom.query(grafanaToPromQL(t.expr));
            if (series.length === 0) empty.push(`${d.title} / ${p.title}: ${t.expr}`);
          }
      }
      expect(queries).toBeGreaterThan(40);
      expect(empty).toEqual([]);
    });
  });
});
