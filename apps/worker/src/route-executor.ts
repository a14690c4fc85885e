import {
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
import type { ProviderError, ChatProvider, ChatResult } from "@switchyard/providers";
import type { FoldedStep } from "@switchyard/queue";
import type { Bulkheads } from "./bulkhead";
import { FREE_RATE_LIMITS, type KeyedCaller, type KeyedOutcome, type StreamRelay } from "./keyed-call";
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
  /** `settle`: the key's settlement of the call that answered, not yet made (see KeyedOutcome). */
  | { kind: "succeeded"; result: ChatResult; settle: FoldedStep }
  /** Come back to the same link after delayMs (backoff, retry hint, or a circuit's reopen time). */
  | { kind: "retry"; delayMs: number; error: AttemptError }
  | { kind: "failed"; error: AttemptError }
  | { kind: "aborted" }
  /**
   * The provider's bulkhead is full here, or no key has room: hand the job back, no attempt spent.
   * `resource` ("provider/model") when it waits for that resource's capacity (the key pool said
   * so): it then waits in the resource's fair waiting room.
   */
  | { kind: "busy"; retryInMs: number; reason: string; resource?: string };

/** Key-pool answers that mean "this provider's model has no capacity now" (not a rotation). */
const CAPACITY_WAITS: ReadonlySet<string> = new Set(["limited", "cooling", "share"]);

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
 * left, or when none of the provider's keys is usable, the job falls through to the next link
 * at once, in this same run. A 429 or a rejected key costs no try (the key pool moves the job to
 * another key or makes it wait), up to FREE_RATE_LIMITS 429s per link. A link whose circuit is
 * open is skipped; when every remaining link is open, the pass counts as an attempt and the job
 * waits for the earliest reopening.
 */
export class RouteExecutor {
  private readonly providerCfgs: Map<string, ProviderConfig>;

  constructor(
    private readonly config: SwitchyardConfig,
    private readonly providers: Map<string, ChatProvider>,
    private readonly keyed: KeyedCaller,
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
    returning = false,
    relay?: StreamRelay,
  ): Promise<RouteOutcome> {
    const perLink = this.config.queue.attempts;
    const failures = (l: RouteLink) => {
      const failed = history.filter((a) => sameLink(a, l) && a.outcome === "failed");
      const free = failed.filter((a) => ["cancelled", "auth", "rate_limit"].includes(a.error_type ?? ""));
      const rateLimited = free.filter((a) => a.error_type === "rate_limit").length;
      return failed.length - free.length + Math.max(0, rateLimited - FREE_RATE_LIMITS);
    };
    const unusable = new Set<RouteLink>();
    const spent = (l: RouteLink) => unusable.has(l) || failures(l) >= perLink;
    let lastError: AttemptError | undefined;
    let skipped: { link: RouteLink; waitMs: number } | undefined;

    for (const link of route.links) {
      if (spent(link)) continue;
      const provider = this.providers.get(link.provider);
      const providerCfg = this.providerCfgs.get(link.provider);
      if (!provider || !providerCfg) continue; // config validation makes this unreachable
      const decision = await this.breakers.acquire(link.provider, link.model);
      if (!decision.allowed) {
        record(history, link, "skipped", Date.now(), 0, "circuit_open");
        const waitMs = circuitWaitMs(decision.state, decision.retryAt - decision.now);
        if (!skipped || waitMs < skipped.waitMs) skipped = { link, waitMs };
        this.metrics.fallbacks.inc({ route: route.name, from: link.provider, reason: "circuit_open" });
        continue;
      }
      const bulkhead = this.bulkheads.get(link.provider);
      const release = bulkhead ? await bulkhead.enter(signal) : undefined;
      if (release === "full") {
        await this.breakers.record(decision.permit, "release");
        if (signal?.aborted) return { kind: "aborted" };
        this.metrics.bulkheadRejected.inc({ provider: link.provider });
        return { kind: "busy", retryInMs: 250 + Math.round(Math.random() * 500), reason: "bulkhead" };
      }
      let outcome: KeyedOutcome;
      try {
        outcome = await this.keyed.call(
          p,
          link,
          provider,
          providerCfg,
          returning,
          signal,
          (a) => record(history, link, "failed", a.startedAt, a.durationMs, a.error?.kind, a.error?.status),
          log,
          relay,
        );
      } finally {
        release?.();
      }
      const called = outcome.kind === "ok" || outcome.kind === "error";
      const verdict = called
        ? breakerOutcome(outcome.kind === "error" ? outcome.error : undefined)
        : "release";
      let state: Awaited<ReturnType<CircuitBreakers["record"]>>;
      try {
        state = await this.breakers.record(decision.permit, verdict);
      } catch (err) {
        if (outcome.kind === "ok") void outcome.settle.run(); // the answer is lost; its key's slot is not
        throw err;
      }
      if (decision.state !== state && state !== "closed")
        log.warn({ provider: link.provider, model: link.model, state }, "circuit breaker changed state");
      if (outcome.kind === "ok") {
        record(history, link, "succeeded", outcome.call.startedAt, outcome.call.durationMs);
        return { kind: "succeeded", result: outcome.result, settle: outcome.settle };
      }
      if (outcome.kind === "wait") {
        if (signal?.aborted) return { kind: "aborted" };
        return {
          kind: "busy",
          retryInMs: outcome.delayMs,
          reason: outcome.reason,
          ...(CAPACITY_WAITS.has(outcome.reason) ? { resource: `${link.provider}/${link.model}` } : {}),
        };
      }
      if (outcome.kind === "unusable") {
        record(history, link, "skipped", Date.now(), 0, outcome.reason);
        unusable.add(link);
        lastError = {
          kind: outcome.reason === "no_keys" ? "auth" : "too_large",
          message: outcome.message,
          provider: link.provider,
          model: link.model,
        };
        this.metrics.fallbacks.inc({ route: route.name, from: link.provider, reason: outcome.reason });
        continue;
      }
      const { error: err, call } = outcome;
      // A call cut short by a cancel or a shutdown is listed (it was started) but not charged to the link.
      if (err.kind === "cancelled" || signal?.aborted) {
        record(history, link, "failed", call.startedAt, call.durationMs, "cancelled");
        return { kind: "aborted" };
      }
      record(history, link, "failed", call.startedAt, call.durationMs, err.kind, err.status);
      lastError = {
        kind: err.kind,
        message: err.message,
        provider: link.provider,
        model: link.model,
        ...(err.status !== undefined ? { status: err.status } : {}),
      };
      if (err.kind === "client") return { kind: "failed", error: lastError };
      // Part of the answer already went to the client: no retry, no fallback can take it back.
      if (relay?.committed())
        return {
          kind: "failed",
          error: {
            ...lastError,
            kind: "stream_interrupted",
            message: `the stream broke after it began: ${err.message}`,
          },
        };
      if (!spent(link)) {
        const delayMs = backoffDelay(
          failures(link),
          { baseMs: this.config.queue.backoff_base_ms, maxMs: this.config.queue.backoff_max_ms },
          err.retryAfterMs,
        );
        return { kind: "retry", delayMs, error: lastError };
      }
      this.metrics.fallbacks.inc({ route: route.name, from: link.provider, reason: "retries_exhausted" });
      log.info(
        { provider: link.provider, model: link.model, kind: err.kind },
        "falling back to the next link",
      );
    }

    if (skipped) {
      // Every link still worth trying has its circuit open. A queue is there to absorb outages:
      // the job waits (no slot held, no attempt charged) until the earliest circuit lets calls
      // through again, up to its own start deadline, past which it fails.
      const error: AttemptError = {
        kind: "circuit_open",
        message: `every remaining provider's circuit stayed open until the job's deadline (${skipped.link.provider} reopens first)`,
        provider: skipped.link.provider,
        model: skipped.link.model,
      };
      if (!route.links.some((l) => !spent(l))) return { kind: "failed", error: lastError ?? error };
      const leftMs = p.start_deadline - Date.now();
      if (leftMs <= 0) return { kind: "failed", error };
      return { kind: "busy", retryInMs: Math.min(skipped.waitMs, leftMs), reason: "circuit_open" };
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
}

/**
 * How long a job waits for a circuit that refused it. Open: until it reopens, spread over a
 * tenth of the wait (at most 2 s) so the waiting jobs do not all come back in the same instant.
 * Half-open (its probes are out): a second or two, since a good probe closes it at once.
 */
export function circuitWaitMs(state: string, untilMs: number, random = Math.random): number {
  if (state === "half_open") return 1_000 + Math.round(random() * 1_000);
  const wait = Math.max(0, untilMs);
  return wait + Math.round(random() * Math.min(2_000, Math.max(250, wait / 10)));
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
