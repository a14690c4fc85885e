import { calcPrice, type PriceCalculation } from "@pydantic/genai-prices";
import type { SwitchyardConfig } from "./config";
import type { ProviderType } from "./config-providers";
import { linkMaxTokens, estimatePromptTokens, resolveRoute } from "./routes";
import type { ModelPrice } from "./config-protection";
import { ownEntry } from "./own";
import type { ChatMessage, Usage } from "./schemas";

/**
 * What upstream calls cost, in USD: the config's prices first (providers[].prices, e.g. 0 for a
 * self-hosted model), else the maintained price table of @pydantic/genai-prices (bundled data,
 * no network). Prices that are flat per token are looked up once per model and then cost a few
 * multiplications; tiered or time-dependent ones go through the table on every call.
 */

/** The price table's provider for each of our provider types (openai-compatible: by base URL). */
const TABLE_PROVIDER: Record<ProviderType, string | undefined> = {
  openai: "openai",
  anthropic: "anthropic",
  gemini: "google",
  "openai-compatible": undefined,
};

interface ProviderRef {
  id: string;
  type: ProviderType;
  base_url?: string | undefined;
  prices?: Record<string, ModelPrice> | undefined;
}

/** USD per token. */
interface Rates {
  input: number;
  cachedInput: number;
  output: number;
}

type Entry =
  | { kind: "flat"; rates: Rates }
  | { kind: "table"; opts: { providerId?: string; providerApiUrl?: string } }
  | { kind: "unknown" };

const MILLION = 1_000_000;

export class PriceBook {
  private readonly providers = new Map<string, ProviderRef>();
  private readonly memo = new Map<string, Entry>();

  constructor(providers: readonly ProviderRef[]) {
    for (const p of providers) this.providers.set(p.id, p);
  }

  /** True when a price is known for the provider's model (config or table). */
  has(providerId: string, model: string): boolean {
    return this.entry(providerId, model).kind !== "unknown";
  }

  /** The cost of `usage` on the provider's model in USD, or undefined when no price is known. */
  cost(providerId: string, model: string, usage: Usage): number | undefined {
    const e = this.entry(providerId, model);
    if (e.kind === "unknown") return undefined;
    const cached = Math.min(usage.cached_input_tokens ?? 0, usage.input_tokens);
    if (e.kind === "flat") {
      const r = e.rates;
      return round(
        (usage.input_tokens - cached) * r.input + cached * r.cachedInput + usage.output_tokens * r.output,
      );
    }
    const priced = tableCalc(model, usage.input_tokens, cached, usage.output_tokens, e.opts);
    return priced ? round(priced.total_price) : undefined;
  }

  private entry(providerId: string, model: string): Entry {
    const key = `${providerId}\u0000${model}`;
    let e = this.memo.get(key);
    if (!e) {
      e = this.lookup(providerId, model);
      this.memo.set(key, e);
    }
    return e;
  }

  private lookup(providerId: string, model: string): Entry {
    const p = this.providers.get(providerId);
    if (!p) return { kind: "unknown" };
    const own = (p.prices && ownEntry(p.prices, model)) ?? (p.prices && ownEntry(p.prices, "*"));
    if (own) {
      const input = own.input_per_million / MILLION;
      return {
        kind: "flat",
        rates: {
          input,
          cachedInput: (own.cached_input_per_million ?? own.input_per_million) / MILLION,
          output: own.output_per_million / MILLION,
        },
      };
    }
    const tableId = TABLE_PROVIDER[p.type];
    const opts = tableId ? { providerId: tableId } : p.base_url ? { providerApiUrl: p.base_url } : undefined;
    if (!opts) return { kind: "unknown" };
    const probe = tableCalc(model, MILLION, 0, 0, opts);
    if (!probe) return { kind: "unknown" };
    // Flat prices are plain numbers per unit and no date or time-of-day conditions apply.
    const flat =
      !Array.isArray(probe.model.prices) &&
      Object.values(probe.model_price).every((v) => v === undefined || typeof v === "number");
    if (!flat) return { kind: "table", opts };
    const cachedProbe = tableCalc(model, MILLION, MILLION, 0, opts);
    const outProbe = tableCalc(model, 0, 0, MILLION, opts);
    return {
      kind: "flat",
      rates: {
        input: probe.total_price / MILLION,
        cachedInput: (cachedProbe?.total_price ?? probe.total_price) / MILLION,
        output: (outProbe?.total_price ?? 0) / MILLION,
      },
    };
  }
}

function tableCalc(
  model: string,
  input: number,
  cached: number,
  output: number,
  opts: { providerId?: string; providerApiUrl?: string },
): PriceCalculation | null {
  try {
    return calcPrice(
      { input_tokens: input, output_tokens: output, ...(cached > 0 ? { cache_read_tokens: cached } : {}) },
      model,
      opts,
    );
  } catch {
    return null;
  }
}

/** Costs are kept to the nano-dollar: what the usage counters in Redis hold. */
const round = (usd: number): number => Math.round(usd * 1e9) / 1e9;

/**
 * What a request may spend at most, reserved against its tenant's quota at admission: the
 * estimated prompt plus the most output it can get, priced on the dearest link of its route (a
 * fallback may serve it). Unknown prices count 0.
 */
export function estimateSpend(
  cfg: SwitchyardConfig,
  book: PriceBook,
  req: { model: string; messages: ChatMessage[]; max_tokens?: number | undefined; task?: string | undefined },
): { tokens: number; nanoUsd: number } {
  const prompt = estimatePromptTokens(req.messages);
  const route = resolveRoute(cfg, req.model, req);
  let tokens = prompt;
  let usd = 0;
  for (const link of route?.links ?? []) {
    const output =
      linkMaxTokens(req.max_tokens || undefined, link.options) ??
      cfg.providers.find((p) => p.id === link.provider)?.default_max_tokens ??
      0;
    tokens = Math.max(tokens, prompt + output);
    usd = Math.max(
      usd,
      book.cost(link.provider, link.model, { input_tokens: prompt, output_tokens: output }) ?? 0,
    );
  }
  return { tokens, nanoUsd: Math.round(usd * 1e9) };
}

/** Every upstream model a route can call that has no known price ("provider/model"). */
export function unpricedModels(cfg: SwitchyardConfig, book: PriceBook): string[] {
  const out = new Set<string>();
  for (const [alias, m] of Object.entries(cfg.models)) {
    const links = m.chain ?? (m.provider !== undefined ? [{ provider: m.provider, model: m.model }] : []);
    for (const l of links) {
      const model = l.model ?? alias;
      if (!book.has(l.provider, model)) out.add(`${l.provider}/${model}`);
    }
  }
  return [...out].sort();
}

/** One price book for a config, with a warning line when some models have no price. */
export function priceBookFor(cfg: SwitchyardConfig, warn: (msg: string, fields: object) => void): PriceBook {
  const book = new PriceBook(cfg.providers);
  const unknown = unpricedModels(cfg, book);
  if (unknown.length > 0)
    warn("no price known for these models: their cost counts as 0 (set providers[].prices)", {
      models: unknown.slice(0, 50),
    });
  return book;
}
