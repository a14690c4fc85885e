import { randomBytes } from "node:crypto";
import type { Completion, ParsedRequest, WireName } from "./formats/types";

/**
 * Streamed answers in each provider's event format, byte for byte where the SDKs care: OpenAI's
 * `chat.completion.chunk` lines ending in `data: [DONE]` (usage in a last chunk when asked),
 * Anthropic's message_start ... message_stop sequence, Gemini's `alt=sse` chunks. The answer is
 * cut into words; the server writes one content event per word.
 */
export interface SseEvent {
  event?: string;
  data: string;
  /** A content event (one piece of the answer): fail_after=N counts these. */
  content?: boolean;
}

/** "Echo: a b" -> ["Echo:", " a", " b"]. */
export function pieces(text: string): string[] {
  return text.split(/(?= )/).filter((p) => p.length > 0);
}

export function streamEvents(
  format: WireName,
  req: ParsedRequest & { includeUsage?: boolean },
  out: Completion,
): SseEvent[] {
  const words = pieces(out.text);
  const id = randomBytes(12).toString("hex");
  const created = Math.floor(Date.now() / 1000);
  const json = (v: unknown) => JSON.stringify(v);
  if (format === "openai") {
    const chunk = (choices: unknown[], extra: Record<string, unknown> = {}) =>
      json({
        id: `chatcmpl-${id}`,
        object: "chat.completion.chunk",
        created,
        model: req.model,
        system_fingerprint: "fp_switchyard_mock",
        choices,
        ...extra,
      });
    const events: SseEvent[] = [
      { data: chunk([{ index: 0, delta: { role: "assistant", content: "" }, finish_reason: null }]) },
      ...words.map((w) => ({
        data: chunk([{ index: 0, delta: { content: w }, finish_reason: null }]),
        content: true,
      })),
      { data: chunk([{ index: 0, delta: {}, finish_reason: out.finished }]) },
    ];
    if (req.includeUsage)
      events.push({
        data: chunk([], {
          usage: {
            prompt_tokens: out.inputTokens,
            completion_tokens: out.outputTokens,
            total_tokens: out.inputTokens + out.outputTokens,
            prompt_tokens_details: { cached_tokens: out.cachedTokens ?? 0 },
          },
        }),
      });
    events.push({ data: "[DONE]" });
    return events;
  }
  if (format === "anthropic") {
    const ev = (event: string, body: Record<string, unknown>): SseEvent => ({
      event,
      data: json({ type: event, ...body }),
    });
    return [
      ev("message_start", {
        message: {
          id: `msg_${id}`,
          type: "message",
          role: "assistant",
          model: req.model,
          content: [],
          stop_reason: null,
          stop_sequence: null,
          usage: {
            input_tokens: out.inputTokens - (out.cachedTokens ?? 0),
            cache_creation_input_tokens: 0,
            cache_read_input_tokens: out.cachedTokens ?? 0,
            output_tokens: 1,
          },
        },
      }),
      ev("content_block_start", { index: 0, content_block: { type: "text", text: "" } }),
      ev("ping", {}),
      ...words.map((w) => ({
        ...ev("content_block_delta", { index: 0, delta: { type: "text_delta", text: w } }),
        content: true,
      })),
      ev("content_block_stop", { index: 0 }),
      ev("message_delta", {
        delta: { stop_reason: out.finished === "length" ? "max_tokens" : "end_turn", stop_sequence: null },
        usage: { output_tokens: out.outputTokens },
      }),
      ev("message_stop", {}),
    ];
  }
  const usage = (final: boolean) => ({
    promptTokenCount: out.inputTokens,
    ...(final ? { candidatesTokenCount: out.outputTokens } : {}),
    totalTokenCount: out.inputTokens + (final ? out.outputTokens : 0),
    ...(out.cachedTokens ? { cachedContentTokenCount: out.cachedTokens } : {}),
  });
  return words.map((w, i) => {
    const last = i === words.length - 1;
    return {
      data: json({
        candidates: [
          {
            content: { parts: [{ text: w }], role: "model" },
            ...(last ? { finishReason: out.finished === "length" ? "MAX_TOKENS" : "STOP" } : {}),
            index: 0,
          },
        ],
        usageMetadata: usage(last),
        modelVersion: req.model,
        responseId: id,
      }),
      content: true,
    };
  });
}
