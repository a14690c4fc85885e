import { randomBytes } from "node:crypto";
import { complete, promptTokens, type SimpleMessage } from "./completion";
import type { MockResponse } from "./server";

/**
 * OpenAI chat completions as OpenAI shapes them: request validation with
 * invalid_request_error bodies naming the `param`, chat.completion answers with usage.
 */
interface Parsed {
  model: string;
  messages: SimpleMessage[];
  maxTokens?: number;
}

export const openaiError = (
  status: number,
  message: string,
  type: string,
  param: string | null = null,
  code: string | null = null,
) => ({
  status,
  body: { error: { message, type, param, code } },
});

function contentText(content: unknown): string | undefined {
  if (typeof content === "string") return content;
  if (Array.isArray(content)) {
    const texts = content.map((p) =>
      p && typeof p === "object" && (p as { type?: unknown }).type === "text"
        ? (p as { text?: unknown }).text
        : undefined,
    );
    if (texts.every((t): t is string => typeof t === "string")) return texts.join("\n");
  }
  return undefined;
}

export function parseOpenAIRequest(body: unknown): Parsed | MockResponse {
  if (!body || typeof body !== "object" || Array.isArray(body)) {
    return openaiError(400, "We could not parse the JSON body of your request.", "invalid_request_error");
  }
  const b = body as Record<string, unknown>;
  if (typeof b.model !== "string" || b.model.length === 0) {
    return openaiError(400, "you must provide a model parameter", "invalid_request_error", "model");
  }
  if (!Array.isArray(b.messages) || b.messages.length === 0) {
    return openaiError(400, "[] is too short - 'messages'", "invalid_request_error", "messages");
  }
  const messages: SimpleMessage[] = [];
  for (let i = 0; i < b.messages.length; i++) {
    const m = b.messages[i] as Record<string, unknown> | null;
    const role = m?.role;
    if (typeof role !== "string" || !["system", "developer", "user", "assistant", "tool"].includes(role)) {
      return openaiError(
        400,
        `Invalid value for 'messages[${i}].role'.`,
        "invalid_request_error",
        `messages.[${i}].role`,
        "invalid_value",
      );
    }
    const text = contentText(m?.content);
    if (text === undefined) {
      return openaiError(
        400,
        `Invalid type for 'messages[${i}].content'.`,
        "invalid_request_error",
        `messages.[${i}].content`,
        "invalid_type",
      );
    }
    messages.push({ role, text });
  }
  const maxRaw = b.max_completion_tokens ?? b.max_tokens;
  if (maxRaw !== undefined && (typeof maxRaw !== "number" || !Number.isInteger(maxRaw) || maxRaw < 1)) {
    return openaiError(
      400,
      "Invalid 'max_tokens': integer below minimum value.",
      "invalid_request_error",
      "max_tokens",
      "integer_below_min_value",
    );
  }
  return { model: b.model, messages, ...(typeof maxRaw === "number" ? { maxTokens: maxRaw } : {}) };
}

export function openaiCompletion(req: Parsed): {
  response: MockResponse;
  inputTokens: number;
  outputTokens: number;
} {
  const inputTokens = promptTokens(req.messages);
  const out = complete(req.messages, req.maxTokens);
  return {
    inputTokens,
    outputTokens: out.outputTokens,
    response: {
      status: 200,
      body: {
        id: `chatcmpl-${randomBytes(12).toString("hex")}`,
        object: "chat.completion",
        created: Math.floor(Date.now() / 1000),
        model: req.model,
        choices: [
          {
            index: 0,
            message: { role: "assistant", content: out.text, refusal: null },
            logprobs: null,
            finish_reason: out.finishReason,
          },
        ],
        usage: {
          prompt_tokens: inputTokens,
          completion_tokens: out.outputTokens,
          total_tokens: inputTokens + out.outputTokens,
        },
        system_fingerprint: "fp_switchyard_mock",
      },
    },
  };
}
