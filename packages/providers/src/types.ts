import type { ChatMessage, ChatRequest, Usage } from "@switchyard/core";
import type { RateLimitInfo } from "./rate-limits";

export interface ChatResult {
  output_text: string;
  /** In OpenAI's vocabulary for every provider: stop, length, content_filter, tool_calls, unknown. */
  finish_reason: string;
  provider: string;
  model: string;
  usage: Usage;
  /** The upstream's rate-limit headers, parsed (the limiter uses them to correct its view). */
  rateLimit?: RateLimitInfo;
}

/** The request as one route link sends it: the upstream model name and the link's extra body fields. */
export interface ProviderRequest extends ChatRequest {
  /** Fields merged into the upstream body as they are (e.g. Ollama `options`, Anthropic `thinking`). */
  extraBody?: Record<string, unknown>;
}

/** What one upstream call needs besides the request: which key, and when to give up. */
export interface CallContext {
  apiKey: string;
  signal: AbortSignal;
  /** Stream the answer: each piece of text goes here as the upstream sends it. */
  onDelta?: (text: string) => void;
}

/**
 * Reads one provider's stream events into the answer: pieces of text go to `onDelta` as they
 * come; `result` is the whole answer once the stream has ended (undefined: it never finished).
 */
export interface StreamReader {
  event(event: string | undefined, data: string): void;
  result(): Omit<ChatResult, "provider"> | undefined;
}

/** One provider endpoint. Adapters throw ProviderError for every failure, never anything else. */
export interface ChatProvider {
  readonly id: string;
  readonly type: string;
  chat(request: ProviderRequest, ctx: CallContext): Promise<ChatResult>;
  /** Whether a key works, without spending tokens (used to bring a disabled key back). */
  probe(ctx: CallContext): Promise<void>;
  close(): Promise<void>;
}

/** System and developer messages become the system prompt where a provider takes it apart. */
export const isSystemRole = (role: ChatMessage["role"]): boolean => role === "system" || role === "developer";
