import type { ProviderConfig, SwitchyardConfig } from "@switchyard/core";

/** Connections the key prober's calls may use on top of the jobs' own. */
const PROBE_CONNECTIONS = 8;

/**
 * The most calls this process can have in flight to a provider: one per slot, or its bulkhead's
 * bound when lower. Its connection pool holds that many (and a few for key probes): a smaller
 * pool would queue calls inside the HTTP client, unseen by the limiter, and add that wait to
 * every job (at 1,000 calls/s of 1 s each, 512 connections per process made calls ~120 ms late
 * at the median).
 */
export function providerConnections(config: SwitchyardConfig, p: ProviderConfig): number {
  const slots = config.worker.concurrency;
  const bulkhead = p.bulkhead?.max_concurrent;
  return (bulkhead !== undefined ? Math.min(bulkhead, slots) : slots) + PROBE_CONNECTIONS;
}
