import type { LinkOptions, SwitchyardConfig } from "./config";
import type { ChatMessage, ChatRequest } from "./schemas";
import { ownEntry } from "./own";

/**
 * Route resolution: a requested model (an alias in config `models`) becomes an ordered chain
 * of {provider, model, options} links. Rules aliases pick another alias first, by the
 * request's `task` hint or its estimated prompt size, so cheap requests go to cheaper models.
 */
export interface RouteLink {
  provider: string;
  /** The model name sent upstream. */
  model: string;
  options: LinkOptions;
}

export interface ResolvedRoute {
  /** The alias whose chain is used (differs from the requested one when a rule picked it). */
  name: string;
  links: RouteLink[];
}

/**
 * A documented estimate until the limiter brings a tokenizer: 4 characters per token plus
 * 4 tokens of framing per message (the ratio OpenAI gives for English text).
 */
export const CHARS_PER_TOKEN = 4;
export function estimatePromptTokens(messages: ChatMessage[]): number {
  let n = 0;
  for (const m of messages) {
    const chars =
      typeof m.content === "string" ? m.content.length : m.content.reduce((c, p) => c + p.text.length, 0);
    n += 4 + Math.ceil(chars / CHARS_PER_TOKEN);
  }
  return n;
}

/** The links of a direct route (a provider or a chain); undefined for rules aliases and unknown names. */
export function routeLinks(cfg: SwitchyardConfig, alias: string): RouteLink[] | undefined {
  const m = ownEntry(cfg.models, alias);
  if (!m) return undefined;
  if (m.chain)
    return m.chain.map((l) => ({ provider: l.provider, model: l.model ?? alias, options: l.options ?? {} }));
  if (m.provider !== undefined)
    return [{ provider: m.provider, model: m.model ?? alias, options: m.options ?? {} }];
  return undefined;
}

export function resolveRoute(
  cfg: SwitchyardConfig,
  requested: string,
  req: { messages: ChatMessage[]; task?: string | undefined },
): ResolvedRoute | undefined {
  const m = ownEntry(cfg.models, requested);
  if (!m) return undefined;
  if (!m.rules) {
    const links = routeLinks(cfg, requested);
    return links && { name: requested, links };
  }
  let estimate: number | undefined;
  const promptTokens = () => (estimate ??= estimatePromptTokens(req.messages));
  for (const rule of m.rules) {
    const tasks = rule.task === undefined ? undefined : Array.isArray(rule.task) ? rule.task : [rule.task];
    if (tasks && (req.task === undefined || !tasks.includes(req.task))) continue;
    if (rule.max_prompt_tokens !== undefined && promptTokens() > rule.max_prompt_tokens) continue;
    if (rule.min_prompt_tokens !== undefined && promptTokens() < rule.min_prompt_tokens) continue;
    const links = routeLinks(cfg, rule.use);
    if (links) return { name: rule.use, links };
  }
  const fallback = m.default === undefined ? undefined : routeLinks(cfg, m.default);
  return fallback && m.default !== undefined ? { name: m.default, links: fallback } : undefined;
}

/**
 * The max_tokens one link sends for a request asking for `asked`: the link's default when the
 * request names none, capped by the link's cap (undefined: neither says).
 */
export function linkMaxTokens(asked: number | undefined, o: RouteLink["options"]): number | undefined {
  const maxTokens = asked ?? o.max_tokens;
  if (maxTokens !== undefined)
    return o.max_tokens_cap === undefined ? maxTokens : Math.min(maxTokens, o.max_tokens_cap);
  return o.max_tokens_cap;
}

/** The request as one link sends it: its model, and its defaults, caps and overrides applied. */
export function applyLink(
  req: Omit<ChatRequest, "model">,
  link: RouteLink,
): ChatRequest & { extraBody?: Record<string, unknown> } {
  const o = link.options;
  const out: ChatRequest & { extraBody?: Record<string, unknown> } = { ...req, model: link.model };
  const maxTokens = linkMaxTokens(req.max_tokens, o);
  if (maxTokens !== undefined) out.max_tokens = maxTokens;
  if (o.temperature !== undefined) out.temperature = o.temperature;
  if (o.extra_body) out.extraBody = o.extra_body;
  return out;
}

/**
 * What a job costs its tenant's fair share (`scheduler.cost`): 1 per job, or its estimated tokens,
 * the prompt (4 characters a token) plus the most output it can get on the route's first link
 * (its max_tokens after the link's defaults and caps, else the provider's default_max_tokens).
 */
export function jobCost(
  cfg: SwitchyardConfig,
  req: { model: string; messages: ChatMessage[]; max_tokens?: number | undefined; task?: string | undefined },
): number {
  if (cfg.scheduler.cost === "jobs") return 1;
  const prompt = estimatePromptTokens(req.messages);
  const link = resolveRoute(cfg, req.model, req)?.links[0];
  if (!link) return prompt + 1;
  // (a max_tokens of 0 counts as none, as everywhere the estimate is made)
  const maxTokens = linkMaxTokens(req.max_tokens || undefined, link.options);
  const provider = cfg.providers.find((p) => p.id === link.provider);
  return prompt + (maxTokens ?? provider?.default_max_tokens ?? 1);
}

const chainLengths = new WeakMap<SwitchyardConfig["models"], number>();
/** The longest chain any alias can resolve to; BullMQ's attempt cap is sized from it. */
export function longestChain(cfg: SwitchyardConfig): number {
  // Asked on every submission; a config's models never change once parsed (a reload parses anew).
  const known = chainLengths.get(cfg.models);
  if (known !== undefined) return known;
  let n = 1;
  for (const alias of Object.keys(cfg.models)) n = Math.max(n, routeLinks(cfg, alias)?.length ?? 1);
  chainLengths.set(cfg.models, n);
  return n;
}

/**
 * BullMQ's attempt cap for a job: every link's tries plus one. The runner ends jobs itself
 * (it knows the links); the cap only stops a job if something else went wrong.
 */
export const queueAttemptCap = (cfg: SwitchyardConfig): number => cfg.queue.attempts * longestChain(cfg) + 1;
