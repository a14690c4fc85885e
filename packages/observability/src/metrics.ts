import { collectDefaultMetrics, Counter, Gauge, Registry } from "prom-client";

export { Counter, Gauge, Histogram, Registry } from "prom-client";

/** One registry per process, with Node's default metrics and an `app` label on everything. */
export function createRegistry(app: string): Registry {
  const registry = new Registry();
  registry.setDefaultLabels({ app });
  collectDefaultMetrics({ register: registry });
  return registry;
}

/**
 * Latency buckets from 1 ms to 2 min: HTTP handling at the low end, LLM calls at the high end;
 * 0.2 and 0.5 are the queue-wait alert thresholds (warning, critical), so p95 against them is exact.
 */
export const LATENCY_BUCKETS = [
  0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120,
];

/** What configMetrics needs of a LiveConfig (kept structural: observability knows no config). */
export interface ReloadSource {
  readonly current: { readonly loadedAt: number; readonly version: number };
  onReload(fn: (o: { result: string }) => void): void;
}

/**
 * switchyard_config_reloads_total{result} (applied, unchanged, invalid, failed) and the running
 * version's load time and number, for the reload alert and dashboards.
 */
export function configMetrics(registry: Registry, live: ReloadSource, results: readonly string[]): void {
  const reloads = new Counter({
    name: "switchyard_config_reloads_total",
    help: "Config reloads by result: applied, unchanged (same file), invalid (refused: not a valid config), failed (refused: could not be applied)",
    labelNames: ["result"] as const,
    registers: [registry],
  });
  for (const result of results) reloads.inc({ result }, 0);
  live.onReload((o) => reloads.inc({ result: o.result }));
  new Gauge({
    name: "switchyard_config_loaded_timestamp_seconds",
    help: "When the running config version was loaded (Unix seconds)",
    registers: [registry],
    collect() {
      this.set(live.current.loadedAt / 1000);
    },
  });
  new Gauge({
    name: "switchyard_config_version",
    help: "The running config version: 1 at start, +1 per applied reload",
    registers: [registry],
    collect() {
      this.set(live.current.version);
    },
  });
}
