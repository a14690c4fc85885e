import { createHash } from "node:crypto";
import type { SwitchyardConfig, TenantConfig } from "./config";
import type { ModelCacheConfig } from "./config-cache";
import { ownEntry } from "./own";
import type { JobPayload } from "./payload";
import { messageText } from "./schemas";
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

/** Semantic lookups of a plan: where its prompts are kept, how close counts, what embeds them. */
export interface SemanticPlan {
  /** sha256 of the route, links, parameters and (scope tenant) tenant: everything but the messages. */
  scope: string;
  threshold: number;
  embedding: { provider: string; model: string };
  /** The prompt as it is embedded: each message as "role: text" on its own line. */
  text: string;
  /** Numbers, negations and guard words of the prompt: two prompts share an answer only if equal. */
  guard: string;
}

export interface CachePlan {
  /** sha256 of everything that changes the output (and of the tenant, with scope tenant). */
  key: string;
  kind: "exact" | "semantic";
  semantic?: SemanticPlan;
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
  const context = {
    v: 1,
    route: route.name,
    links: route.links.map((l) => ({ provider: l.provider, model: l.model, options: l.options })),
    params: { max_tokens, temperature, top_p, stop, user },
    tenant: scope === "tenant" ? (tenant?.id ?? "") : undefined,
  };
  const sha = (s: string) => createHash("sha256").update(s).digest("hex");
  const semantic = entry.mode === "semantic" && tenant?.cache?.mode !== "exact" && entry.embedding;
  const text = semantic ? messages.map((m) => `${m.role}: ${messageText(m)}`).join("\n") : "";
  return {
    key: sha(canonicalJson({ ...context, messages })),
    kind: semantic ? "semantic" : "exact",
    ...(semantic
      ? {
          semantic: {
            scope: sha(canonicalJson(context)),
            threshold: entry.threshold,
            embedding: semantic,
            text,
            guard: guardSignature(text, cfg.cache.semantic_guard_words),
          },
        }
      : {}),
    scope,
    ttlSeconds: entry.ttl_seconds,
    route: route.name,
    read,
    write,
  };
}

const NEGATIONS = new Set([
  "not",
  "no",
  "never",
  "none",
  "nothing",
  "nobody",
  "nowhere",
  "neither",
  "nor",
  "without",
  "cannot",
]);

/**
 * What must be equal for two prompts to share an answer however similar they are: every number
 * (so "2+2" never answers "2+3"), every negation ("not", "no", "...n't") and every guard word
 * ("enable" never answers "disable"), counted, in order of appearance sorted away.
 */
export function guardSignature(text: string, guardWords: readonly string[]): string {
  const guards = new Set(guardWords.map((w) => w.toLowerCase()));
  const out: string[] = [];
  for (const m of text.toLowerCase().matchAll(/\d+(?:[.,]\d+)*|[a-z]+(?:'[a-z]+)?/g)) {
    const w = m[0];
    if (/^\d/.test(w)) out.push(`#${w}`);
    else if (NEGATIONS.has(w) || w.endsWith("n't")) out.push("!not");
    else if (guards.has(w)) out.push(w);
  }
  return out.sort().join(" ");
}
