import type { BreakerConfig } from "@switchyard/core";
import type { Keys } from "@switchyard/queue";
import type { Redis } from "ioredis";
import { z } from "zod";
import breakerLua from "./lua/breaker.lua";

/**
 * Circuit breakers whose state every worker shares through Redis (one Lua call per question,
 * atomic): a provider that fails for one worker is skipped by all of them, and only the
 * configured number of probes test it while it is half-open.
 */
export const BREAKER_STATES = ["closed", "open", "half_open"] as const;
export type BreakerState = (typeof BREAKER_STATES)[number];

/** A state as breaker.lua stores and answers it; a foreign or corrupted value is an error. */
export function parseBreakerState(raw: unknown): BreakerState {
  const found = BREAKER_STATES.find((s) => s === raw);
  if (!found) throw new Error(`circuit breaker answered an unknown state '${String(raw).slice(0, 40)}'`);
  return found;
}
/** success: the upstream answered (even with a 4xx or 429); failure: it is unhealthy; release: no verdict. */
export type BreakerOutcome = "success" | "failure" | "release";

export interface BreakerPermit {
  readonly key: string;
  readonly provider: string;
  readonly scope: string;
  readonly probe: boolean;
}

export type BreakerDecision =
  | { allowed: true; state: BreakerState; permit: BreakerPermit }
  /** retryAt and now are on Redis's clock: wait retryAt - now. */
  | { allowed: false; state: BreakerState; retryAt: number; now: number };

interface BreakerCommands {
  syBreaker(key: string, ...args: (string | number)[]): Promise<unknown>;
}

const replySchema = z.tuple([z.number().int(), z.string(), z.number(), z.number().int(), z.number()]);

export interface BreakerListener {
  (provider: string, scope: string, state: BreakerState): void;
}

export class CircuitBreakers {
  private readonly redis: Redis & BreakerCommands;

  constructor(
    redis: Redis,
    private readonly keys: Keys,
    private configs: ReadonlyMap<string, BreakerConfig & { probeTtlMs: number }>,
    private readonly onState: BreakerListener = () => {},
  ) {
    if (!("syBreaker" in redis)) redis.defineCommand("syBreaker", { numberOfKeys: 1, lua: breakerLua });
    this.redis = redis as Redis & BreakerCommands;
  }

  /** New settings (a config reload); the breakers' state in Redis carries on under them. */
  configure(configs: ReadonlyMap<string, BreakerConfig & { probeTtlMs: number }>): void {
    this.configs = configs;
  }

  private args(provider: string): (string | number)[] | undefined {
    const c = this.configs.get(provider);
    if (!c || !c.enabled) return undefined;
    return [
      c.window_ms,
      c.min_calls,
      c.failure_rate,
      c.open_ms,
      c.max_open_ms,
      c.half_open_probes,
      c.probeTtlMs,
    ];
  }

  /** The breaker's scope (the provider, or provider and model when per_model is set) and its key. */
  private target(provider: string, model: string): { scope: string; key: string } {
    return this.configs.get(provider)?.per_model
      ? { scope: `${provider}/${model}`, key: this.keys.breaker(provider, model) }
      : { scope: provider, key: this.keys.breaker(provider) };
  }

  /** `now` is for tests; by default the script reads Redis TIME, the clock the fleet shares. */
  async acquire(provider: string, model: string, now?: number): Promise<BreakerDecision> {
    const { scope, key } = this.target(provider, model);
    const args = this.args(provider);
    if (!args) return { allowed: true, state: "closed", permit: { key: "", provider, scope, probe: false } };
    const [allowed, state, at, probe, clock] = replySchema.parse(
      await this.redis.syBreaker(key, "acquire", now ?? "", ...args),
    );
    const s = parseBreakerState(state);
    this.onState(provider, scope, s);
    if (allowed === 1)
      return { allowed: true, state: s, permit: { key, provider, scope, probe: probe === 1 } };
    return { allowed: false, state: s, retryAt: at, now: clock };
  }

  async record(permit: BreakerPermit, outcome: BreakerOutcome, now?: number): Promise<BreakerState> {
    const args = this.args(permit.provider);
    if (!args || !permit.key) return "closed";
    const [, raw] = replySchema.parse(
      await this.redis.syBreaker(permit.key, "record", now ?? "", ...args, outcome, permit.probe ? "1" : "0"),
    );
    const state = parseBreakerState(raw);
    this.onState(permit.provider, permit.scope, state);
    return state;
  }
}
