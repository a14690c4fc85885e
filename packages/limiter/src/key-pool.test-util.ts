import { configSchema, type ProviderConfig } from "@switchyard/core";
import type { Reservation, ReserveResult } from "./key-pool";

/** What the key pool's tests share: a clock, a provider from config, two tenants, answer checks. */
export const T0 = 1_800_000_000_000; // a round second, so bucket edges are easy to reason about

export function provider(
  keys: Record<string, unknown>[],
  limiter: Record<string, unknown> = {},
): ProviderConfig {
  const cfg = configSchema.parse({
    providers: [
      { id: "up", type: "openai", base_url: "http://127.0.0.1:1/v1", keys, timeout_ms: 1000, limiter },
    ],
    models: { m: { provider: "up" } },
    tenants: [
      { id: "paid-co", tier: "paid", api_keys: ["sk-paid-0001"] },
      { id: "free-co", tier: "free", api_keys: ["sk-free-0001"] },
    ],
  });
  const p = cfg.providers[0];
  if (!p) throw new Error("no provider");
  return p;
}

export type Tenant = { id: string; tier: "paid" | "free" };
export const PAID: Tenant = { id: "paid-co", tier: "paid" };
export const FREE: Tenant = { id: "free-co", tier: "free" };

export function granted(r: ReserveResult): Reservation {
  if (!r.granted) throw new Error(`expected a grant, got ${r.reason} until ${r.retryAt}`);
  return r.reservation;
}
export function denied(r: ReserveResult) {
  if (r.granted) throw new Error(`expected a denial, got key ${r.reservation.key.id}`);
  return r;
}
