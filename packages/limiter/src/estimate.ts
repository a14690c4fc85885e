import { messageText, type ChatMessage, type ProviderConfig } from "@switchyard/core";

/**
 * What a call will cost before it is made. Prompt tokens come from OpenAI's own tokenizer
 * (o200k_base, or cl100k_base for GPT-4 and GPT-3.5) for OpenAI model names, else from the
 * provider's chars_per_token ratio (Anthropic and Google publish no offline tokenizer); every
 * message adds 4 tokens of framing. Output tokens are max_tokens, or the provider's
 * default_max_tokens when the request sets none: the most the call can use. The reservation
 * is corrected with the real usage afterwards.
 */
interface Encoding {
  countTokens(text: string): number;
}

/** Longer prompts are tokenized up to here and estimated by ratio beyond (tokenizing costs CPU). */
const TOKENIZE_MAX_CHARS = 200_000;
const O200K = /^(gpt-4o|gpt-4\.1|gpt-4\.5|gpt-5|o1|o3|o4|chatgpt-|gpt-oss)/;
const CL100K = /^(gpt-4|gpt-3\.5|text-embedding-3|text-embedding-ada)/;

let o200k: Encoding | undefined;
let cl100k: Encoding | undefined;

/** Loaded on first use: the encodings take ~200 ms to load, and only workers need them. */
function encodingFor(model: string): Encoding | undefined {
  const name = model.replace(/^ft:/, "").replace(/^openai\//, "");
  if (O200K.test(name)) {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    o200k ??= require("gpt-tokenizer/encoding/o200k_base") as Encoding;
    return o200k;
  }
  if (CL100K.test(name)) {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    cl100k ??= require("gpt-tokenizer/encoding/cl100k_base") as Encoding;
    return cl100k;
  }
  return undefined;
}

export function estimatePromptTokens(messages: ChatMessage[], model: string, charsPerToken: number): number {
  const enc = encodingFor(model);
  let total = 3;
  for (const m of messages) {
    const text = messageText(m);
    total += 4;
    if (enc) {
      const head = text.slice(0, TOKENIZE_MAX_CHARS);
      total += enc.countTokens(head) + Math.ceil((text.length - head.length) / charsPerToken);
    } else {
      total += Math.ceil(text.length / charsPerToken);
    }
  }
  return total;
}

export interface CostEstimate {
  tokensIn: number;
  tokensOut: number;
}

type CostedProvider = Pick<ProviderConfig, "limiter" | "default_max_tokens"> & {
  keys?: ProviderConfig["keys"];
};

const countsTokens = new WeakMap<object, boolean>();

/** True when some key of the provider (key-wide or per model) limits tokens. */
function limitsTokens(provider: CostedProvider): boolean {
  if (!provider.keys) return true;
  let v = countsTokens.get(provider);
  if (v === undefined) {
    const has = (l: { tpm?: number; itpm?: number; otpm?: number }) =>
      l.tpm !== undefined || l.itpm !== undefined || l.otpm !== undefined;
    v = provider.keys.some((k) => has(k) || Object.values(k.models ?? {}).some(has));
    countsTokens.set(provider, v);
  }
  return v;
}

/**
 * The estimate; zero when no key of the provider limits tokens (tokenizing cost ~5% of a worker's
 * CPU per job in the e2e benchmark, for a figure nothing would read). Shares follow the keys'
 * limits, so they need no tokens either then.
 */
export function estimateCost(
  provider: CostedProvider,
  model: string,
  request: { messages: ChatMessage[]; max_tokens?: number | undefined },
): CostEstimate {
  if (!limitsTokens(provider)) return { tokensIn: 0, tokensOut: 0 };
  return {
    tokensIn: estimatePromptTokens(request.messages, model, provider.limiter.chars_per_token),
    tokensOut: request.max_tokens ?? provider.default_max_tokens,
  };
}
