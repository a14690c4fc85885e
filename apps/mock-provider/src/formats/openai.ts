import { randomBytes } from "node:crypto";
import type { IncomingMessage } from "node:http";
import type { SimpleMessage } from "../completion";
import {
  asRecord,
  textOf,
  type Completion,
  type HintPlace,
  type LimitState,
  type MockResponse,
  type ParsedRequest,
  type WireFormat,
} from "./types";

/**
 * OpenAI chat completions as OpenAI shapes them: request validation with invalid_request_error
 * bodies naming the `param`, chat.completion answers with usage, x-ratelimit-* headers with
 * Go-style reset durations.
 */
const error = (
  status: number,
  message: string,
  type: string,
  param: string | null = null,
  code: string | null = null,
) => ({
  status,
  body: { error: { message, type, param, code } },
});

const TYPES: Record<number, string> = {
  400: "invalid_request_error",
  404: "invalid_request_error",
  413: "invalid_request_error",
};
const MESSAGES: Record<number, string> = {
  500: "The server had an error while processing your request. Sorry about that!",
  502: "Bad gateway.",
  503: "The engine is currently overloaded, please try again later.",
};

const duration = (ms: number): string =>
  ms < 1000 ? `${Math.max(0, Math.round(ms))}ms` : `${Math.ceil(ms / 1000)}s`;

function limitHeaders(l: LimitState): Record<string, string> {
  return {
    "x-ratelimit-limit-requests": String(l.requests.limit),
    "x-ratelimit-remaining-requests": String(l.requests.remaining),
    "x-ratelimit-reset-requests": duration(l.requests.resetMs),
    "x-ratelimit-limit-tokens": String(l.tokens.limit),
    "x-ratelimit-remaining-tokens": String(l.tokens.remaining),
    "x-ratelimit-reset-tokens": duration(l.tokens.resetMs),
  };
}

export const openaiFormat: WireFormat = {
  name: "openai",
  match: (method, pathname) =>
    method === "POST" && pathname === "/v1/chat/completions" ? { pathModel: "" } : undefined,

  apiKey(req: IncomingMessage): string {
    const auth = req.headers.authorization ?? "";
    return auth.startsWith("Bearer ") ? auth.slice(7).trim() : "";
  },

  parse(body: unknown): ParsedRequest | MockResponse {
    const b = asRecord(body);
    if (!b) return error(400, "We could not parse the JSON body of your request.", "invalid_request_error");
    if (typeof b.model !== "string" || b.model.length === 0)
      return error(400, "you must provide a model parameter", "invalid_request_error", "model");
    if (!Array.isArray(b.messages) || b.messages.length === 0)
      return error(400, "[] is too short - 'messages'", "invalid_request_error", "messages");
    const messages: SimpleMessage[] = [];
    for (let i = 0; i < b.messages.length; i++) {
      const m = asRecord(b.messages[i]);
      const role = m?.role;
      if (typeof role !== "string" || !["system", "developer", "user", "assistant", "tool"].includes(role))
        return error(
          400,
          `Invalid value for 'messages[${i}].role'.`,
          "invalid_request_error",
          `messages.[${i}].role`,
          "invalid_value",
        );
      const text = textOf(m?.content);
      if (text === undefined)
        return error(
          400,
          `Invalid type for 'messages[${i}].content'.`,
          "invalid_request_error",
          `messages.[${i}].content`,
          "invalid_type",
        );
      messages.push({ role, text });
    }
    const maxRaw = b.max_completion_tokens ?? b.max_tokens;
    if (maxRaw !== undefined && (typeof maxRaw !== "number" || !Number.isInteger(maxRaw) || maxRaw < 1))
      return error(
        400,
        "Invalid 'max_tokens': integer below minimum value.",
        "invalid_request_error",
        "max_tokens",
        "integer_below_min_value",
      );
    return {
      model: b.model,
      messages,
      ...(typeof maxRaw === "number" ? { maxTokens: maxRaw } : {}),
      ...(b.stream === true ? { stream: true } : {}),
    };
  },

  success(req: ParsedRequest, out: Completion, limits: LimitState): MockResponse {
    return {
      status: 200,
      headers: { ...limitHeaders(limits), "x-request-id": `req_${randomBytes(12).toString("hex")}` },
      body: {
        id: `chatcmpl-${randomBytes(12).toString("hex")}`,
        object: "chat.completion",
        created: Math.floor(Date.now() / 1000),
        model: req.model,
        choices: [
          {
            index: 0,
            message: { role: "assistant", content: out.text, refusal: null, annotations: [] },
            logprobs: null,
            finish_reason: out.finished,
          },
        ],
        usage: {
          prompt_tokens: out.inputTokens,
          completion_tokens: out.outputTokens,
          total_tokens: out.inputTokens + out.outputTokens,
          prompt_tokens_details: { cached_tokens: out.cachedTokens ?? 0, audio_tokens: 0 },
        },
        service_tier: "default",
        system_fingerprint: "fp_switchyard_mock",
      },
    };
  },

  error(status: number, message?: string): MockResponse {
    const type = TYPES[status] ?? (status >= 500 ? "server_error" : "invalid_request_error");
    return error(status, message ?? MESSAGES[status] ?? "Injected client error.", type);
  },

  invalidKey: () =>
    error(
      401,
      "Incorrect API key provided. You can find your API key at your provider's dashboard.",
      "invalid_request_error",
      null,
      "invalid_api_key",
    ),

  rateLimited(seconds: number, place: HintPlace, limits: LimitState): MockResponse {
    const headers: Record<string, string> = {};
    if (place === "all" || place === "header") headers["retry-after"] = String(seconds);
    if (place === "all" || place === "reset") {
      Object.assign(
        headers,
        limitHeaders({ ...limits, requests: { ...limits.requests, remaining: 0, resetMs: seconds * 1000 } }),
      );
    }
    return {
      ...error(
        429,
        `Rate limit reached for requests on this organization. Please try again in ${seconds}s.`,
        "requests",
        null,
        "rate_limit_exceeded",
      ),
      headers,
    };
  },
};
