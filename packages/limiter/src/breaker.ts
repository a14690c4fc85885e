import type { BreakerConfig } from "@switchyard/core";
import type { Keys } from "@switchyard/queue";
import type { Redis } from "ioredis";
import breakerLua from "./lua/breaker.lua";

/**
 * Circuit breakers whose state every worker shares through Redis (one Lua call per question,
 * atomic): a provider that fails for one worker is skipped by all of them, and only the
 * configured number of probes test it while it is half-open.
 */
export type BreakerState = "closed" | "open" | "half_open";
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
  | { allowed: false; state: BreakerState; retryAt: number };

type LuaReply = [number, string, number, number];

interface BreakerCommands {
  syBreaker(key: string, ...args: (string | number)[]): Promise<LuaReply>;
}

export interface BreakerListener {
  (provider: string, scope: string, state: BreakerState): void;
}

export class CircuitBreakers {
  private readonly redis: Redis & BreakerCommands;

  constructor(
    redis: Redis,
    private readonly keys: Keys,
    private readonly configs: ReadonlyMap<string, BreakerConfig & { probeTtlMs: number }>,
    private readonly onState: BreakerListener = () => {},
  ) {
    if (!("syBreaker" in redis)) redis.defineCommand("syBreaker", { numberOfKeys: 1, lua: breakerLua });
    this.redis = redis as Redis & BreakerCommands;
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

  async acquire(provider: string, model: string, now = Date.now()): Promise<BreakerDecision> {
    const { scope, key } = this.target(provider, model);
    const args = this.args(provider);
    if (!args) return { allowed: true, state: "closed", permit: { key: "", provider, scope, probe: false } };
    const [allowed, state, at, probe] = await this.redis.syBreaker(key, "acquire", now, ...args);
    const s = state as BreakerState;
    this.onState(provider, scope, s);
    if (allowed === 1)
      return { allowed: true, state: s, permit: { key, provider, scope, probe: probe === 1 } };
    return { allowed: false, state: s, retryAt: at };
  }

  async record(permit: BreakerPermit, outcome: BreakerOutcome, now = Date.now()): Promise<BreakerState> {
    const args = this.args(permit.provider);
    if (!args || !permit.key) return "closed";
    const [, state] = await this.redis.syBreaker(
      permit.key,
      "record",
      now,
      ...args,
      outcome,
      permit.probe ? "1" : "0",
    );
    this.onState(permit.provider, permit.scope, state as BreakerState);
    return state as BreakerState;
  }
}
