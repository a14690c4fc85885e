import {
  priceBookFor,
  queueAttemptCap,
  retentionMs,
  SecretRedactor,
  type PriceBook,
  type ProviderConfig,
  type SwitchyardConfig,
  type TenantConfig,
} from "@switchyard/core";
import type { CircuitBreakers } from "@switchyard/limiter";
import type { Logger } from "@switchyard/observability";
import { createProvider, type ChatProvider } from "@switchyard/providers";
import type { AnswerCache, FairQueue } from "@switchyard/queue";
import type { Bulkheads } from "./bulkhead";
import { CacheStep } from "./cache-step";
import type { KeyedCaller } from "./keyed-call";
import type { WorkerMetrics } from "./metrics";
import { providerConnections } from "./provider-pool";
import { RouteExecutor } from "./route-executor";

/**
 * Everything a job runs with that comes from one config version: tenants, routes, providers and
 * their adapters, the cache step, prices. A job takes the runtime current when it starts and
 * keeps it to its end, so a reload never changes a job half-way; the next job takes the new one.
 */
export class WorkerRuntime {
  readonly tenants: Map<string, TenantConfig>;
  readonly retentionMs: number;
  readonly redactor: SecretRedactor;
  /** A running record must outlive every attempt and backoff; the final transition shortens it. */
  readonly runningTtlMs: number;

  constructor(
    readonly config: SwitchyardConfig,
    readonly providers: ReadonlyMap<string, ChatProvider>,
    readonly executor: RouteExecutor,
    readonly cacheStep: CacheStep,
    readonly prices: PriceBook,
  ) {
    this.tenants = new Map(config.tenants.map((t) => [t.id, t]));
    this.retentionMs = retentionMs(config);
    this.redactor = SecretRedactor.fromConfig(config);
    this.runningTtlMs = runningTtlMs(config);
  }
}

/** How long a running record is kept: past every attempt and backoff, then the retention. */
export function runningTtlMs(config: SwitchyardConfig): number {
  const maxTimeout = Math.max(...config.providers.map((p) => p.timeout_ms));
  return retentionMs(config) + queueAttemptCap(config) * (maxTimeout + config.queue.backoff_max_ms);
}

/** What an adapter is built from: a change of any of it needs a new adapter (and HTTP pool). */
const adapterSignature = (p: ProviderConfig): string =>
  JSON.stringify([
    p.type,
    p.base_url,
    p.timeout_ms,
    p.connect_timeout_ms,
    p.max_response_bytes,
    p.headers ?? null,
    p.anthropic_version,
    p.api_version,
    p.default_max_tokens,
  ]);

export interface RuntimeParts {
  keyed: KeyedCaller;
  breakers: CircuitBreakers;
  bulkheads: Bulkheads;
  metrics: WorkerMetrics;
  cache: (config: SwitchyardConfig) => AnswerCache;
  fair: FairQueue;
  log: Logger;
  /**
   * Called when a retired runtime's last job has ended, with its config and the current one: no
   * job of this process can act on the old config any more (e.g. wait for capacity at old limits).
   */
  retired?: (old: SwitchyardConfig, current: SwitchyardConfig) => void;
}

/**
 * The current runtime and the retired ones still in use. A retired runtime is disposed of when
 * its last job ends: its cache step's connections are closed, and so are the adapters that no
 * runtime in use shares (an unchanged provider keeps its adapter and its warm connections).
 */
export class Runtimes {
  private current_: WorkerRuntime;
  private readonly inUse = new Map<WorkerRuntime, number>();
  private readonly retired = new Set<WorkerRuntime>();
  /** Adapters by provider id and adapter signature. */
  private readonly adapters = new Map<string, ChatProvider>();

  constructor(
    config: SwitchyardConfig,
    private readonly parts: RuntimeParts,
  ) {
    this.current_ = this.build(config);
  }

  get current(): WorkerRuntime {
    return this.current_;
  }

  /**
   * Builds the runtime of a reloaded config; returns what switches to it (the shared breakers
   * and bulkheads take the new settings at the same moment). Throws when it cannot be built.
   */
  prepare(config: SwitchyardConfig): () => void {
    const next = this.build(config);
    return () => {
      const prev = this.current_;
      this.parts.breakers.configure(breakerSettings(config));
      this.parts.bulkheads.configure(config.providers);
      this.current_ = next;
      this.retired.add(prev);
      if (!this.inUse.get(prev)) this.dispose(prev);
    };
  }

  /** The runtime for a job that starts now; hand it back with release() when the job ends. */
  acquire(): WorkerRuntime {
    const rt = this.current_;
    this.inUse.set(rt, (this.inUse.get(rt) ?? 0) + 1);
    return rt;
  }

  release(rt: WorkerRuntime): void {
    const n = (this.inUse.get(rt) ?? 1) - 1;
    if (n > 0) return void this.inUse.set(rt, n);
    this.inUse.delete(rt);
    if (this.retired.has(rt)) this.dispose(rt);
  }

  /** Closes every runtime's connections (shutdown). */
  async close(): Promise<void> {
    const steps = [this.current_, ...this.retired].map((rt) => rt.cacheStep.close());
    await Promise.allSettled([...steps, ...[...this.adapters.values()].map((a) => a.close())]);
  }

  private build(config: SwitchyardConfig): WorkerRuntime {
    const providers = new Map<string, ChatProvider>();
    for (const p of config.providers) {
      const connections = providerConnections(config, p);
      const id = `${p.id}\n${adapterSignature(p)}\n${connections}`;
      const adapter = this.adapters.get(id) ?? createProvider(p, connections);
      this.adapters.set(id, adapter);
      providers.set(p.id, adapter);
    }
    const { keyed, breakers, bulkheads, metrics, fair, log } = this.parts;
    const executor = new RouteExecutor(config, providers, keyed, breakers, bulkheads, metrics);
    const cacheStep = new CacheStep(config, this.parts.cache(config), fair, metrics);
    const prices = priceBookFor(config, (msg, fields) => log.warn(fields, msg));
    return new WorkerRuntime(config, providers, executor, cacheStep, prices);
  }

  private dispose(rt: WorkerRuntime): void {
    this.retired.delete(rt);
    void rt.cacheStep.close();
    this.parts.retired?.(rt.config, this.current_.config);
    const live = [this.current_, ...this.retired];
    for (const [id, adapter] of this.adapters) {
      if (live.some((r) => [...r.providers.values()].includes(adapter))) continue;
      this.adapters.delete(id);
      void adapter.close();
    }
  }
}

/** Per provider, its breaker settings; a half-open probe not reported within the timeout (and slack) is given up. */
export const breakerSettings = (config: SwitchyardConfig) =>
  new Map(config.providers.map((p) => [p.id, { ...p.breaker, probeTtlMs: p.timeout_ms + 5_000 }]));
