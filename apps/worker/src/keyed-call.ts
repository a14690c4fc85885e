import {
  applyLink,
  type ChatRequest,
  type JobPayload,
  type ProviderConfig,
  type RouteLink,
} from "@switchyard/core";
import { ATTR_ERROR_TYPE, ATTR_SERVER_ADDRESS, ATTR_SERVER_PORT } from "@opentelemetry/semantic-conventions";
import {
  ATTR_GEN_AI_OPERATION_NAME,
  ATTR_GEN_AI_PROVIDER_NAME,
  ATTR_GEN_AI_REQUEST_MAX_TOKENS,
  ATTR_GEN_AI_REQUEST_MODEL,
  ATTR_GEN_AI_REQUEST_STREAM,
  ATTR_GEN_AI_REQUEST_TEMPERATURE,
  ATTR_GEN_AI_REQUEST_TOP_P,
  ATTR_GEN_AI_RESPONSE_FINISH_REASONS,
  ATTR_GEN_AI_RESPONSE_MODEL,
  ATTR_GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS,
  ATTR_GEN_AI_USAGE_INPUT_TOKENS,
  ATTR_GEN_AI_USAGE_OUTPUT_TOKENS,
  GEN_AI_PROVIDER_NAME_VALUE_ANTHROPIC,
  GEN_AI_PROVIDER_NAME_VALUE_GCP_GEMINI,
  GEN_AI_PROVIDER_NAME_VALUE_OPENAI,
} from "@opentelemetry/semantic-conventions/incubating";
import { estimateCost, type KeyPool, type Reservation, type SettleOutcome } from "@switchyard/limiter";
import {
  context,
  SpanKind,
  SpanStatusCode,
  trace,
  tracingOff,
  type Attributes,
  type Logger,
  type Span,
  type Tracing,
} from "@switchyard/observability";
import { ProviderError, type ChatProvider, type ChatResult } from "@switchyard/providers";
import type { FoldedStep } from "@switchyard/queue";
import type { WorkerMetrics } from "./metrics";

/** One upstream call that was made on a key, for the job's attempt list. */
/** A streamed job's way out: every piece of text, and whether any has gone out yet. */
export interface StreamRelay {
  onDelta: (text: string) => void;
  committed: () => boolean;
}

/**
 * The upstream call of an attempt: when it was sent (ms since the epoch) and how long it took,
 * the key pool's reservation before it not included.
 */
export interface CallTiming {
  startedAt: number;
  durationMs: number;
}

/** A failed call that the pool moved past (to another key), as onAttempt hears of it. */
export interface KeyAttempt extends CallTiming {
  error?: ProviderError;
}

export type KeyedOutcome =
  /**
   * The call answered. `settle` is its key's settlement, not yet made: whoever takes the outcome
   * runs it (the job's runner folds it into the job's final write: FinishFold).
   */
  | { kind: "ok"; result: ChatResult; call: CallTiming; settle: FoldedStep }
  /** A failure the route decides on (retry, fall back, fail). */
  | { kind: "error"; error: ProviderError; call: CallTiming }
  /** No key has room now: come back after delayMs; no attempt spent. */
  | { kind: "wait"; delayMs: number; reason: string }
  /** The link cannot serve this job now: every key is out of the pool, or the call is too big for any key. */
  | { kind: "unusable"; reason: "no_keys" | "too_large"; message: string };

/** gen_ai.provider.name per provider type (an OpenAI-compatible server speaks OpenAI's API). */
const GEN_AI_PROVIDER: Record<ProviderConfig["type"], string> = {
  openai: GEN_AI_PROVIDER_NAME_VALUE_OPENAI,
  "openai-compatible": GEN_AI_PROVIDER_NAME_VALUE_OPENAI,
  anthropic: GEN_AI_PROVIDER_NAME_VALUE_ANTHROPIC,
  gemini: GEN_AI_PROVIDER_NAME_VALUE_GCP_GEMINI,
};

function serverOf(baseUrl: string | undefined): { address: string; port: number } | undefined {
  if (!baseUrl) return undefined;
  try {
    const u = new URL(baseUrl);
    return { address: u.hostname, port: Number(u.port) || (u.protocol === "https:" ? 443 : 80) };
  } catch {
    return undefined;
  }
}

/** Ends an upstream attempt's span with what came back: usage and finish reason, or the error kind. */
function endCallSpan(span: Span, outcome: { result: ChatResult } | { error: ProviderError }): void {
  if ("result" in outcome) {
    const r = outcome.result;
    span.setAttributes({
      [ATTR_GEN_AI_RESPONSE_MODEL]: r.model,
      [ATTR_GEN_AI_RESPONSE_FINISH_REASONS]: [r.finish_reason],
      [ATTR_GEN_AI_USAGE_INPUT_TOKENS]: r.usage.input_tokens,
      [ATTR_GEN_AI_USAGE_OUTPUT_TOKENS]: r.usage.output_tokens,
    });
    if (r.usage.cached_input_tokens)
      span.setAttribute(ATTR_GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS, r.usage.cached_input_tokens);
  } else {
    const e = outcome.error;
    span.setAttribute(ATTR_ERROR_TYPE, e.kind);
    if (e.status !== undefined) span.setAttribute("http.response.status_code", e.status);
    // The kind and status only: an upstream's message may quote what it was sent.
    span.setStatus({ code: SpanStatusCode.ERROR, message: e.kind });
  }
  span.end();
}

/** 429s from a provider that cost no attempt, per link, before each further one counts. */
export const FREE_RATE_LIMITS = 10;

/**
 * Makes a link's upstream call on the provider's key pool: reserve a key (one Redis call, shared
 * with the reservations of the other jobs that ask in the same turn: KeyPool.reserve),
 * call, settle with the real usage and what the provider said. A 429 cools that key down
 * fleet-wide and a 401/403 takes it out of the pool; either way the job moves straight on to
 * another key, or waits for one, without spending an attempt.
 */
export class KeyedCaller {
  constructor(
    private readonly pool: KeyPool,
    private readonly metrics: WorkerMetrics,
    private readonly tracing: Tracing = tracingOff,
  ) {}

  async call(
    p: JobPayload,
    link: RouteLink,
    provider: ChatProvider,
    cfg: ProviderConfig,
    returning: boolean,
    signal: AbortSignal | undefined,
    onAttempt: (a: KeyAttempt) => void,
    log: Logger,
    relay?: StreamRelay,
  ): Promise<KeyedOutcome> {
    const request = applyLink(p.request, link);
    const cost = estimateCost(cfg, link.model, request);
    // Each key gets at most one try per run; the pool itself skips cooling and disabled keys.
    for (let turn = 0; turn <= cfg.keys.length; turn++) {
      const r = await this.pool.reserve({
        provider: cfg,
        model: link.model,
        tenant: { id: p.tenant_id, tier: p.tier },
        tokensIn: cost.tokensIn,
        tokensOut: cost.tokensOut,
        returning: returning || turn > 0,
      });
      if (!r.granted) {
        this.metrics.limiterWaits.inc({ provider: cfg.id, reason: r.reason });
        if (r.reason === "disabled")
          return {
            kind: "unusable",
            reason: "no_keys",
            message: `every API key of provider '${cfg.id}' is out of the pool after auth failures; see GET /admin/keys`,
          };
        if (r.reason === "too_large")
          return {
            kind: "unusable",
            reason: "too_large",
            message: `the request needs about ${cost.tokensIn + cost.tokensOut} tokens, more than any key of provider '${cfg.id}' allows (lower max_tokens or raise the key's limits)`,
          };
        return {
          kind: "wait",
          delayMs: Math.max(0, r.retryAt - r.now) + Math.round(Math.random() * 20),
          reason: r.reason,
        };
      }
      const res = r.reservation;
      const startedAt = Date.now();
      const start = process.hrtime.bigint();
      this.metrics.inFlight.inc();
      const span = this.tracing.enabled ? this.startSpan(p, cfg, res.key.id, request) : undefined;
      let outcome: { result: ChatResult } | { error: ProviderError };
      try {
        const call = () =>
          provider.chat(request, {
            apiKey: res.key.secret,
            signal: signal ?? new AbortController().signal,
            ...(relay ? { onDelta: relay.onDelta } : {}),
          });
        outcome = {
          result: await (span ? context.with(trace.setSpan(context.active(), span), call) : call()),
        };
      } catch (err) {
        outcome = {
          error:
            err instanceof ProviderError
              ? err
              : new ProviderError("server", err instanceof Error ? err.message : String(err), provider.id),
        };
      } finally {
        this.metrics.inFlight.dec();
      }
      if (span) endCallSpan(span, outcome);
      const durationMs = Date.now() - startedAt;
      if ("result" in outcome) {
        this.metrics.observeCall(cfg.id, link.model, "ok", start);
        // Nothing here depends on the settlement's answer: it is handed on, to go first in the
        // job's final write (or on its own, right before it).
        const settled = this.pool.settleCall(res, {
          kind: "ok",
          usage: outcome.result.usage,
          reported: outcome.result.rateLimit,
          durationMs,
        });
        const settle: FoldedStep = {
          keys: settled.keys,
          args: settled.args,
          run: () => this.settleWith(res, () => this.pool.runSettle(settled), log),
        };
        this.metrics.keyCalls.inc({ provider: cfg.id, key: res.key.id, outcome: "ok" });
        return { kind: "ok", result: outcome.result, call: { startedAt, durationMs }, settle };
      }
      const err = outcome.error;
      this.metrics.observeCall(cfg.id, link.model, err.kind, start);
      const settle = this.verdict(cfg, err);
      await this.settle(
        res,
        { ...settle, ...(err.rateLimit ? { reported: err.rateLimit } : {}), durationMs },
        log,
      );
      this.metrics.keyCalls.inc({
        provider: cfg.id,
        key: res.key.id,
        outcome: settle.kind === "error" ? err.kind : settle.kind,
      });
      // Once a piece of the answer went out, no other key may answer again.
      if (settle.kind === "error" || relay?.committed())
        return { kind: "error", error: err, call: { startedAt, durationMs } };
      onAttempt({ startedAt, durationMs, error: err });
      if (settle.kind === "disabled")
        log.warn(
          { provider: cfg.id, key: res.key.id, reason: settle.reason },
          "API key taken out of the pool",
        );
      else
        log.info(
          { provider: cfg.id, key: res.key.id, model: link.model, coolUntil: settle.coolUntil },
          "key cooling down after a 429",
        );
      if (signal?.aborted) {
        // This call is listed already (onAttempt): the cancel is a moment of its own after it.
        const cancelled = new ProviderError("cancelled", "the call was cancelled", cfg.id);
        const at = startedAt + durationMs;
        return { kind: "error", error: cancelled, call: { startedAt: at, durationMs: Date.now() - at } };
      }
    }
    return { kind: "wait", delayMs: 100, reason: "rotating" };
  }

  /**
   * A CLIENT span for one upstream attempt, with the GenAI semantic conventions: the operation,
   * the provider, the model asked for and the request's parameters; the answer's model, finish
   * reason and token usage are added when it ends. Never the prompt or the answer, never a key
   * (only its id).
   */
  private startSpan(p: JobPayload, cfg: ProviderConfig, keyId: string, request: ChatRequest): Span {
    const attributes: Attributes = {
      [ATTR_GEN_AI_OPERATION_NAME]: "chat",
      [ATTR_GEN_AI_PROVIDER_NAME]: GEN_AI_PROVIDER[cfg.type],
      [ATTR_GEN_AI_REQUEST_MODEL]: request.model,
      "switchyard.provider": cfg.id,
      "switchyard.key.id": keyId,
      "switchyard.job.id": p.job_id,
      "switchyard.tenant": p.tenant_id,
    };
    if (request.max_tokens !== undefined) attributes[ATTR_GEN_AI_REQUEST_MAX_TOKENS] = request.max_tokens;
    if (request.temperature !== undefined) attributes[ATTR_GEN_AI_REQUEST_TEMPERATURE] = request.temperature;
    if (request.top_p !== undefined) attributes[ATTR_GEN_AI_REQUEST_TOP_P] = request.top_p;
    if (p.stream) attributes[ATTR_GEN_AI_REQUEST_STREAM] = true;
    const host = serverOf(cfg.base_url);
    if (host) {
      attributes[ATTR_SERVER_ADDRESS] = host.address;
      attributes[ATTR_SERVER_PORT] = host.port;
    }
    return this.tracing.tracer.startSpan(`chat ${request.model}`, { kind: SpanKind.CLIENT, attributes });
  }

  /** How a failed call settles its key: 429 cools it, 401/403 and exhausted quota take it out. */
  private verdict(cfg: ProviderConfig, err: ProviderError): SettleOutcome {
    if (err.kind === "auth")
      return {
        kind: "disabled",
        reason: `upstream answered ${err.status ?? "an auth error"}: the key was rejected`,
      };
    if (err.kind === "rate_limit" && err.code === "insufficient_quota")
      return {
        kind: "disabled",
        reason: "upstream answered 429 insufficient_quota: the account is out of credit",
      };
    if (err.kind === "rate_limit")
      return { kind: "rate_limited", coolUntil: Date.now() + (err.retryAfterMs ?? cfg.limiter.cooldown_ms) };
    return { kind: "error" };
  }

  private settle(r: Reservation, o: SettleOutcome, log: Logger): Promise<void> {
    return this.settleWith(r, () => this.pool.settle(r, o), log);
  }

  private async settleWith(r: Reservation, settle: () => Promise<unknown>, log: Logger): Promise<void> {
    try {
      await settle();
    } catch (err) {
      // The slot expires on its own; the call's result must not be lost over bookkeeping.
      log.error({ err, provider: r.provider.id, key: r.key.id }, "could not settle a key reservation");
    }
  }
}
