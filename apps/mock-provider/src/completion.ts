/**
 * Deterministic completions: the answer is "Echo: " followed by the last user message, cut
 * to max_tokens words (finish_reason "length") so tests can assert on exact output.
 * Token counts use a fixed 4-characters-per-token rule with 4 tokens of overhead per message.
 */
export interface SimpleMessage {
  role: string;
  text: string;
}

export function promptTokens(messages: SimpleMessage[]): number {
  return messages.reduce((n, m) => n + 4 + Math.ceil(m.text.length / 4), 0);
}

export function complete(
  messages: SimpleMessage[],
  maxTokens?: number,
): { text: string; finishReason: "stop" | "length"; outputTokens: number } {
  const lastUser = [...messages].reverse().find((m) => m.role === "user")?.text ?? "";
  const words = `Echo: ${lastUser.replace(/\[\[mock:[^\]]*\]\]/g, "").trim()}`.split(/\s+/).filter(Boolean);
  if (maxTokens !== undefined && words.length > maxTokens) {
    return { text: words.slice(0, maxTokens).join(" "), finishReason: "length", outputTokens: maxTokens };
  }
  return { text: words.join(" "), finishReason: "stop", outputTokens: words.length };
}
