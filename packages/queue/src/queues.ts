import type { SwitchyardConfig, TenantConfig } from "@switchyard/core";

/** Queue names: one per tier, one per tenant that has a dedicated queue. */
export type Tier = "paid" | "free";
export const TIERS: readonly Tier[] = ["paid", "free"];

export const tierQueueName = (tier: Tier): string => `jobs-${tier}`;
export const tenantQueueName = (tenantId: string): string => `jobs-tenant-${tenantId}`;

export function queueNameFor(tenant: Pick<TenantConfig, "id" | "tier" | "dedicated_queue">): string {
  return tenant.dedicated_queue ? tenantQueueName(tenant.id) : tierQueueName(tenant.tier);
}

export interface QueueSpec {
  name: string;
  tier: Tier;
}

/** Every job queue the config implies, in a stable order (tier queues first). */
export function allJobQueues(config: Pick<SwitchyardConfig, "tenants">): QueueSpec[] {
  const specs: QueueSpec[] = TIERS.map((tier) => ({ name: tierQueueName(tier), tier }));
  for (const t of config.tenants)
    if (t.dedicated_queue) specs.push({ name: tenantQueueName(t.id), tier: t.tier });
  return specs;
}

/**
 * The fair queue's wake-up on a BullMQ queue's marker (the sorted set BullMQ's blocked fetch
 * waits on): a listing adds this member, at a score below any of BullMQ's own (0 "look now",
 * a delayed job's due time), so a worker's blocker tells "a job was listed: a picker picks" from
 * "BullMQ made a job ready: fetch" (fair-lib.lua writes the same two values).
 */
export const LISTED_MARKER = { member: "l", score: -1 } as const;
