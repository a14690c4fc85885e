import type { ProviderConfig } from "@switchyard/core";
import { OpenAIChatProvider } from "./openai/chat";
import type { ChatProvider } from "./types";

/** Builds the adapter for each configured provider; one HTTP pool per provider. */
export function createProvider(cfg: ProviderConfig): ChatProvider {
  switch (cfg.type) {
    case "openai":
    case "openai-compatible":
      return new OpenAIChatProvider({
        id: cfg.id,
        type: cfg.type,
        baseUrl: cfg.base_url,
        timeoutMs: cfg.timeout_ms,
        connectTimeoutMs: cfg.connect_timeout_ms,
        maxResponseBytes: cfg.max_response_bytes,
      });
  }
}

export function createProviders(cfgs: ProviderConfig[]): Map<string, ChatProvider> {
  return new Map(cfgs.map((c) => [c.id, createProvider(c)]));
}
