import {
  applyLink,
  backoffDelay,
  MAX_ATTEMPT_HISTORY,
  type Attempt,
  type JobPayload,
  type ProviderConfig,
  type ResolvedRoute,
  type RouteLink,
  type SwitchyardConfig,
} from "@switchyard/core";
import type { BreakerOutcome, CircuitBreakers } from "@switchyard/limiter";
import type { Logger } from "@switchyard/observability";
import { ProviderError, type ChatProvider, type ChatResult } from "@switchyard/providers";
import type { Bulkheads } from "./bulkhead";
import type { CapacityReserver } from "./capacity";
import type { WorkerMetrics } from "./metrics";

/** Why the last try of a route did not succeed, in the job's error vocabulary. */
export interface AttemptError {
  kind: string;
  message: string;
  provider: string;
  model: string;
  status?: number;
}

export type RouteOutcome =
  | { kind: "succeeded"; result: ChatResult }
  /** Come back to the same link after delayMs (backoff, retry hint, or a circuit's reopen time). */
  | { kind: "retry"; delayMs: number; error: AttemptError }
  | { kind: "failed"; error: AttemptError }
  | { kind: "aborted" }
  /** The provider's bulkhead is full here: hand the job back, no attempt spent. */
  | { kind: "busy"; retryInMs: number };

const sameLink = (a: Attempt, l: RouteLink) => a.provider === l.provider && a.model === l.model;

/** Which verdict a call's outcome gives the provider's breaker: only signs of ill health count. */
function breakerOutcome(err: ProviderError | undefined): BreakerOutcome {
  if (!err) return "success";
  switch (err.kind) {
    case "server":
    case "timeout":
    case "connection":
    case "malformed":
      return "failure";
    case "cancelled":
      return "release";
    default:
      return "success"; // it answered: a 4xx or a 429 says nothing about its health
  }
}

/**
 * Tries a route's links in order for one job. Each link gets `queue.attempts` tries: a retryable
 * failure with tries left comes back to the same link later (without holding a slot); with none
 * left, or on an auth failure, the job falls through to the next link at once, in this same run.
 * A link whose circuit is open is skipped; when every remaining link is open, the pass counts as
 * an attempt and the job waits for the earliest reopening.
 */
export class RouteExecutor {
  private readonly providerCfgs: Map<string, ProviderConfig>;

  constructor(
    private readonly config: SwitchyardConfig,
    private readonly providers: Map<string, ChatProvider>,
    private readonly capacity: CapacityReserver,
    private readonly breakers: CircuitBreakers,
    private readonly bulkheads: Bulkheads,
    private readonly metrics: WorkerMetrics,
  ) {
    this.providerCfgs = new Map(config.providers.map((p) => [p.id, p]));
  }

  async execute(
    p: JobPayload,
    route: ResolvedRoute,
    history: Attempt[],
    signal: AbortSignal | undefined,
    log: Logger,
  ): Promise<RouteOutcome> {
    const perLink = this.config.queue.attempts;
    const failures = (l: RouteLink) =>
      history.filter((a) => sameLink(a, l) && a.outcome === "failed" && a.error_type !== "cancelled").length;
    const spent = (l: RouteLink) =>
      failures(l) >= perLink ||
      history.some((a) => sameLink(a, l) && a.outcome === "failed" && a.error_type === "auth");
    let lastError: AttemptError | undefined;
    let skipped: { link: RouteLink; entry: Attempt; retryAt: number } | undefined;

    for (const link of route.links) {
      if (spent(link)) continue;
      const provider = this.providers.get(link.provider);
      const providerCfg = this.providerCfgs.get(link.provider);
      if (!provider || !providerCfg) continue; // config validation makes this unreachable
      const decision = await this.breakers.acquire(link.provider, link.model);
      if (!decision.allowed) {
        const entry = record(history, link, "skipped", Date.now(), 0, "circuit_open");
        if (!skipped || decision.retryAt < skipped.retryAt)
          skipped = { link, entry, retryAt: decision.retryAt };
        this.metrics.fallbacks.inc({ route: route.name, from: link.provider, reason: "circuit_open" });
        continue;
      }
      const bulkhead = this.bulkheads.get(link.provider);
      const release = bulkhead ? await bulkhead.enter(signal) : undefined;
      if (release === "full") {
        await this.breakers.record(decision.permit, "release");
        if (signal?.aborted) return { kind: "aborted" };
        this.metrics.bulkheadRejected.inc({ provider: link.provider });
        return { kind: "busy", retryInMs: 250 + Math.round(Math.random() * 500) };
      }
      const startedAt = Date.now();
      let outcome: { result: ChatResult } | { error: ProviderError };
      try {
        outcome = await this.call(p, link, provider, providerCfg, signal);
      } finally {
        release?.();
      }
      const durationMs = Date.now() - startedAt;
      const verdict = breakerOutcome("error" in outcome ? outcome.error : undefined);
      const state = await this.breakers.record(decision.permit, verdict);
      if (decision.state !== state && state !== "closed")
        log.warn({ provider: link.provider, model: link.model, state }, "circuit breaker changed state");
      if ("result" in outcome) {
        record(history, link, "succeeded", startedAt, durationMs);
        return { kind: "succeeded", result: outcome.result };
      }
      const err = outcome.error;
      // A call cut short by a cancel or a shutdown is listed (it was started) but not charged to the link.
      if (err.kind === "cancelled" || signal?.aborted) {
        record(history, link, "failed", startedAt, durationMs, "cancelled");
        return { kind: "aborted" };
      }
      record(history, link, "failed", startedAt, durationMs, err.kind, err.status);
      lastError = {
        kind: err.kind,
        message: err.message,
        provider: link.provider,
        model: link.model,
        ...(err.status !== undefined ? { status: err.status } : {}),
      };
      if (err.kind === "client") return { kind: "failed", error: lastError };
      if (err.kind !== "auth" && !spent(link)) {
        const delayMs = backoffDelay(
          failures(link),
          { baseMs: this.config.queue.backoff_base_ms, maxMs: this.config.queue.backoff_max_ms },
          err.retryAfterMs,
        );
        return { kind: "retry", delayMs, error: lastError };
      }
      this.metrics.fallbacks.inc({
        route: route.name,
        from: link.provider,
        reason: err.kind === "auth" ? "auth" : "retries_exhausted",
      });
      log.info(
        { provider: link.provider, model: link.model, kind: err.kind },
        "falling back to the next link",
      );
    }

    if (skipped) {
      // Every link still worth trying has its circuit open: this pass is an attempt on the first
      // of them, and the job waits until the earliest one lets a probe through.
      skipped.entry.outcome = "failed";
      const error: AttemptError = {
        kind: "circuit_open",
        message: `every remaining provider's circuit is open (${skipped.link.provider} reopens first)`,
        provider: skipped.link.provider,
        model: skipped.link.model,
      };
      if (!route.links.some((l) => !spent(l))) return { kind: "failed", error: lastError ?? error };
      const delayMs = Math.max(0, skipped.retryAt - Date.now()) + Math.round(Math.random() * 250);
      return { kind: "retry", delayMs, error };
    }
    return {
      kind: "failed",
      error: lastError ?? {
        kind: "unavailable",
        message: "no link of the route is left to try",
        provider: route.links[0]?.provider ?? "",
        model: route.links[0]?.model ?? "",
      },
    };
  }

  private async call(
    p: JobPayload,
    link: RouteLink,
    provider: ChatProvider,
    providerCfg: ProviderConfig,
    signal: AbortSignal | undefined,
  ): Promise<{ result: ChatResult } | { error: ProviderError }> {
    const reservation = await this.capacity.reserve({ provider: providerCfg, model: link.model, job: p });
    const start = process.hrtime.bigint();
    this.metrics.inFlight.inc();
    try {
      const result = await provider.chat(applyLink(p.request, link), {
        apiKey: reservation.apiKey,
        signal: signal ?? new AbortController().signal,
      });
      await reservation.settle(result.usage);
      this.metrics.observeCall(provider.id, "ok", start, result.usage);
      return { result };
    } catch (err) {
      await reservation.settle(undefined);
      const error =
        err instanceof ProviderError
          ? err
          : new ProviderError("server", err instanceof Error ? err.message : String(err), provider.id);
      this.metrics.observeCall(provider.id, error.kind, start);
      return { error };
    } finally {
      this.metrics.inFlight.dec();
    }
  }
}

/** Appends an attempt, keeping the history bounded (skipped entries go first). */
function record(
  history: Attempt[],
  link: RouteLink,
  outcome: Attempt["outcome"],
  startedAt: number,
  durationMs: number,
  errorType?: string,
  status?: number,
): Attempt {
  const entry: Attempt = {
    provider: link.provider,
    model: link.model,
    outcome,
    ...(errorType !== undefined ? { error_type: errorType } : {}),
    ...(status !== undefined ? { status } : {}),
    duration_ms: durationMs,
    started_at: startedAt / 1000,
  };
  history.push(entry);
  while (history.length > MAX_ATTEMPT_HISTORY) {
    const i = history.findIndex((a) => a.outcome === "skipped");
    history.splice(i >= 0 ? i : 0, 1);
  }
  return entry;
}
