import { createHash, timingSafeEqual } from "node:crypto";
import type { TenantConfig } from "@switchyard/core";

/**
 * Finds the tenant for a presented API key. Keys are held only as SHA-256 digests; the lookup
 * is by digest and the final comparison is constant-time, so response timing says nothing
 * about how much of a guessed key was right.
 */
const digest = (key: string): Buffer => createHash("sha256").update(key, "utf8").digest();

export class TenantDirectory {
  private readonly byDigest = new Map<string, { digest: Buffer; tenant: TenantConfig }>();
  readonly byId = new Map<string, TenantConfig>();

  constructor(tenants: TenantConfig[]) {
    for (const t of tenants) {
      this.byId.set(t.id, t);
      for (const key of t.api_keys) {
        const d = digest(key);
        this.byDigest.set(d.toString("hex"), { digest: d, tenant: t });
      }
    }
  }

  authenticate(presented: string): TenantConfig | undefined {
    const d = digest(presented);
    const hit = this.byDigest.get(d.toString("hex"));
    if (!hit || !timingSafeEqual(hit.digest, d)) return undefined;
    return hit.tenant;
  }
}
