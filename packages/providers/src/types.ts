import type { ChatRequest, Usage } from "@switchyard/core";

export interface ChatResult {
  output_text: string;
  finish_reason: string;
  provider: string;
  model: string;
  usage: Usage;
}

/** What one upstream call needs besides the request: which key, and when to give up. */
export interface CallContext {
  apiKey: string;
  signal: AbortSignal;
}

/** One provider endpoint. Adapters throw ProviderError for every failure, never anything else. */
export interface ChatProvider {
  readonly id: string;
  readonly type: string;
  chat(request: ChatRequest, ctx: CallContext): Promise<ChatResult>;
  close(): Promise<void>;
}
