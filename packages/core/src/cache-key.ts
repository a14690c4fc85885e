import { createHash } from "node:crypto";
import type { ModelCacheConfig, SwitchyardConfig, TenantConfig } from "./config";
import { ownEntry } from "./own";
import type { JobPayload } from "./payload";
import type { ResolvedRoute } from "./routes";

/** Stable JSON: object keys sorted, undefined left out, so equal values always hash alike. */
export function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(",")}]`;
  if (value && typeof value === "object") {
    const entries = Object.entries(value as Record<string, unknown>)
      .filter(([, v]) => v !== undefined)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`).join(",")}}`;
  }
  return JSON.stringify(value);
}

export interface CachePlan {
  /** sha256 of everything that changes the output (and of the tenant, with scope tenant). */
  key: string;
  kind: "exact";
  scope: "tenant" | "global";
  ttlSeconds: number;
  /** The route whose entry enabled it (for metrics and purges). */
  route: string;
  read: boolean;
  write: boolean;
}

/**
 * Whether and how a job uses the answer cache: the route's `models.<name>.cache` (the alias the
 * rules chose, else the one asked for), narrowed by the tenant's `cache` and the request's own
 * directives. The key covers the resolved route and every link's provider, model and options,
 * the messages, every generation parameter and, with scope tenant, the tenant.
 */
export function cachePlan(
  cfg: SwitchyardConfig,
  tenant: Pick<TenantConfig, "id" | "cache"> | undefined,
  route: ResolvedRoute,
  p: Pick<JobPayload, "model" | "request" | "cache">,
): CachePlan | undefined {
  const entry: ModelCacheConfig | undefined =
    ownEntry(cfg.models, route.name)?.cache ?? ownEntry(cfg.models, p.model)?.cache;
  if (!entry || entry.mode === "off" || tenant?.cache?.mode === "off") return undefined;
  const read = p.cache?.read ?? true;
  const write = p.cache?.write ?? true;
  if (!read && !write) return undefined;
  const scope = tenant?.cache?.scope === "tenant" ? "tenant" : entry.scope;
  const { messages, max_tokens, temperature, top_p, stop, user } = p.request;
  const material = canonicalJson({
    v: 1,
    route: route.name,
    links: route.links.map((l) => ({ provider: l.provider, model: l.model, options: l.options })),
    request: { messages, max_tokens, temperature, top_p, stop, user },
    tenant: scope === "tenant" ? (tenant?.id ?? "") : undefined,
  });
  return {
    key: createHash("sha256").update(material).digest("hex"),
    kind: "exact",
    scope,
    ttlSeconds: entry.ttl_seconds,
    route: route.name,
    read,
    write,
  };
}
