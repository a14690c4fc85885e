import type { NextFunction, Request, Response } from "express";
import {
  BurstyRateLimiter,
  RateLimiterMemory,
  RateLimiterRedis,
  RateLimiterRes,
} from "rate-limiter-flexible";
import { ApiError, type SwitchyardConfig, type TenantConfig } from "@switchyard/core";
import type { Redis } from "@switchyard/queue";

/**
 * Ingress limits (server.rate_limit), shared by every API process through Redis with
 * rate-limiter-flexible (maintained, atomic, used widely; a hand-written bucket would repeat it):
 * a sustained rate of `rps` a second plus a burst bucket of `burst` requests. Answers carry the
 * IETF RateLimit-Policy / RateLimit headers; a refusal is a 429 with Retry-After. Should Redis be
 * away, each process keeps limiting on its own (an in-memory insurance limiter).
 */
type Limit = { rps: number; burst: number };

export class Ingress {
  private readonly limiter: BurstyRateLimiter;
  readonly policy: string;

  constructor(
    redis: Redis,
    prefix: string,
    readonly name: string,
    readonly limit: Limit,
  ) {
    const sustained = { points: Math.max(1, Math.floor(limit.rps)), duration: 1 };
    const burstWindow = Math.max(1, Math.ceil(limit.burst / limit.rps));
    const burst = { points: limit.burst, duration: burstWindow };
    const store = (o: { points: number; duration: number }, kind: string) =>
      new RateLimiterRedis({
        storeClient: redis,
        keyPrefix: `${prefix}:rl:${name}:${kind}`,
        ...o,
        insuranceLimiter: new RateLimiterMemory(o),
      });
    this.limiter = new BurstyRateLimiter(store(sustained, "s"), store(burst, "b"));
    this.policy = `"${name}";q=${limit.burst};w=${burstWindow}`;
  }

  /** Consumes one request for `key`; the refusal (a RateLimiterRes) when over the limit. */
  async take(key: string): Promise<{ ok: boolean; res: RateLimiterRes }> {
    try {
      return { ok: true, res: await this.limiter.consume(key) };
    } catch (rej) {
      if (rej instanceof RateLimiterRes) return { ok: false, res: rej };
      throw rej;
    }
  }
}

/**
 * Takes one request for `key` from `ingress`: sets the RateLimit headers through `setHeader` and
 * answers the 429 to send, or undefined when the request may go on.
 */
export async function takeIngress(
  ingress: Ingress,
  key: string,
  setHeader: (name: string, value: string) => void,
): Promise<ApiError | undefined> {
  const { ok, res: r } = await ingress.take(key);
  const resetS = Math.max(0, Math.ceil(r.msBeforeNext / 1000));
  setHeader("ratelimit-policy", ingress.policy);
  setHeader("ratelimit", `"${ingress.name}";r=${Math.max(0, r.remainingPoints)};t=${resetS}`);
  if (ok) return undefined;
  return new ApiError(
    429,
    "rate_limit_error",
    `too many requests ${ingress.name === "ip" ? "from this address" : "for this tenant"}; retry after ${Math.max(1, resetS)} s`,
    undefined,
    { "retry-after": String(Math.max(1, resetS)) },
  );
}

/** The ingress limit of one scope, when server.rate_limit sets one. */
export function ingressFor(
  config: SwitchyardConfig,
  redis: Redis,
  scope: "ip" | "tenant",
): Ingress | undefined {
  const l = scope === "ip" ? config.server.rate_limit?.per_ip : config.server.rate_limit?.per_tenant;
  return l && new Ingress(redis, config.queue.prefix, scope, l);
}

/**
 * One ingress limit as middleware: `per_ip` counts the client address (Express's req.ip, with
 * trust proxy set to server.trusted_proxies), before anything else; `per_tenant` counts the
 * tenant, once auth has found it.
 */
export function ingressLimit(ingress: Ingress | undefined, scope: "ip" | "tenant") {
  const keyOf = (req: Request, res: Response): string =>
    scope === "ip"
      ? (req.ip ?? req.socket.remoteAddress ?? "unknown")
      : (res.locals.tenant as TenantConfig).id;
  return async (req: Request, res: Response, next: NextFunction): Promise<void> => {
    if (!ingress) return next();
    next(await takeIngress(ingress, keyOf(req, res), (name, value) => res.set(name, value)));
  };
}
