/** Usage with the provider's count of prompt-cache reads, when it gave one. */
export function withCached(
  u: { input_tokens: number; output_tokens: number },
  cached: number | null | undefined,
): { input_tokens: number; output_tokens: number; cached_input_tokens?: number } {
  return cached ? { ...u, cached_input_tokens: Math.min(cached, u.input_tokens) } : u;
}

/** JSON.parse that answers undefined for text that is not JSON. */
export function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}
