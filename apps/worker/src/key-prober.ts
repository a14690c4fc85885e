import type { ProviderConfig } from "@switchyard/core";
import type { KeyPool } from "@switchyard/limiter";
import type { Logger } from "@switchyard/observability";
import { ProviderError, type ChatProvider } from "@switchyard/providers";
import type { WorkerMetrics } from "./metrics";

/**
 * Brings keys taken out of the pool (401/403, exhausted quota) back when they work again.
 * Every worker ticks; the pool hands each due probe to exactly one of them, once per
 * provider's probe_interval_ms. A probe lists the provider's models: it costs no tokens.
 */
export class KeyProber {
  private timer: NodeJS.Timeout | undefined;
  private running = false;

  constructor(
    private readonly pool: KeyPool,
    /** The running config's providers and their adapters (a reload changes them). */
    private readonly current: () => {
      configs: ProviderConfig[];
      providers: ReadonlyMap<string, ChatProvider>;
    },
    private readonly metrics: WorkerMetrics,
    private readonly log: Logger,
  ) {}

  start(): void {
    const tick = Math.min(5_000, ...this.current().configs.map((c) => c.limiter.probe_interval_ms));
    this.timer = setInterval(() => void this.run(), tick);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
  }

  async run(): Promise<void> {
    if (this.running) return;
    this.running = true;
    try {
      const { configs, providers } = this.current();
      for (const cfg of configs) {
        const provider = providers.get(cfg.id);
        if (!provider) continue;
        for (const key of await this.pool.dueProbes(cfg)) {
          const signal = AbortSignal.timeout(cfg.timeout_ms);
          try {
            await provider.probe({ apiKey: key.secret, signal });
            await this.pool.enable(cfg, key);
            this.metrics.probes.inc({ provider: cfg.id, key: key.id, outcome: "restored" });
            this.log.info({ provider: cfg.id, key: key.id }, "API key works again; back in the pool");
          } catch (err) {
            this.metrics.probes.inc({ provider: cfg.id, key: key.id, outcome: "still_failing" });
            const kind = err instanceof ProviderError ? err.kind : "unknown";
            this.log.info({ provider: cfg.id, key: key.id, kind }, "API key still fails its probe");
          }
        }
      }
    } catch (err) {
      this.log.warn({ err }, "key probe round failed; trying again next tick");
    } finally {
      this.running = false;
    }
  }
}
