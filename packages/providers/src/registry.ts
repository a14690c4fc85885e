import type { ProviderConfig } from "@switchyard/core";
import type { AdapterOptions } from "./adapter";
import { AnthropicMessagesProvider } from "./anthropic/messages";
import { GeminiProvider } from "./gemini/generate-content";
import { OpenAIChatProvider } from "./openai/chat";
import type { ChatProvider } from "./types";

/**
 * Builds the adapter for a configured provider; one keep-alive HTTP pool per provider, of at most
 * `connections` connections (HTTP/1.1 carries one call at a time on each).
 */
export function createProvider(cfg: ProviderConfig, connections?: number): ChatProvider {
  const base: AdapterOptions = {
    id: cfg.id,
    baseUrl: cfg.base_url,
    timeoutMs: cfg.timeout_ms,
    connectTimeoutMs: cfg.connect_timeout_ms,
    maxResponseBytes: cfg.max_response_bytes,
    connections,
    ...(cfg.headers ? { headers: cfg.headers } : {}),
  };
  switch (cfg.type) {
    case "openai":
    case "openai-compatible":
      return new OpenAIChatProvider({ ...base, type: cfg.type });
    case "anthropic":
      return new AnthropicMessagesProvider({
        ...base,
        version: cfg.anthropic_version,
        defaultMaxTokens: cfg.default_max_tokens,
      });
    case "gemini":
      return new GeminiProvider({ ...base, apiVersion: cfg.api_version });
  }
}
