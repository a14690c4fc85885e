import type { JobPayload, ProviderConfig, Usage } from "@switchyard/core";

/**
 * The step in the per-job path where capacity is reserved and an upstream key is picked.
 * The fleet-wide, token-aware limiter (its own issue) implements this interface with Redis
 * state; until then RoundRobinKeys only spreads calls over a provider's keys, enforcing no
 * limits, and says so.
 */
export interface Reservation {
  /** Key id for logs and metrics; never the secret. */
  keyId: string;
  apiKey: string;
  /** Reports what the call really used (undefined when it failed before usage was known). */
  settle(usage: Usage | undefined): Promise<void>;
}

export interface CapacityRequest {
  provider: ProviderConfig;
  model: string;
  job: JobPayload;
}

export interface CapacityReserver {
  reserve(req: CapacityRequest): Promise<Reservation>;
}

export class RoundRobinKeys implements CapacityReserver {
  private readonly next = new Map<string, number>();

  async reserve({ provider }: CapacityRequest): Promise<Reservation> {
    const i = this.next.get(provider.id) ?? 0;
    this.next.set(provider.id, (i + 1) % provider.keys.length);
    const key = provider.keys[i % provider.keys.length];
    if (!key) throw new Error(`provider ${provider.id} has no keys`);
    return { keyId: key.id, apiKey: key.secret, settle: async () => {} };
  }
}
