import { randomBytes } from "node:crypto";
import type { IncomingMessage } from "node:http";
import type { SimpleMessage } from "../completion";
import {
  asRecord,
  resetIso,
  textOf,
  type Completion,
  type HintPlace,
  type LimitState,
  type MockResponse,
  type ParsedRequest,
  type WireFormat,
} from "./types";

/**
 * The Anthropic Messages API: x-api-key and a required anthropic-version header, max_tokens
 * required, content blocks, stop_reason, anthropic-ratelimit-* headers with RFC 3339 resets,
 * and {"type":"error","error":{...}} bodies (529 overloaded_error included).
 */
const ERROR_TYPES: Record<number, string> = {
  400: "invalid_request_error",
  401: "authentication_error",
  403: "permission_error",
  404: "not_found_error",
  413: "request_too_large",
  429: "rate_limit_error",
  500: "api_error",
  529: "overloaded_error",
};

const error = (status: number, message: string): MockResponse => ({
  status,
  headers: { "request-id": `req_${randomBytes(12).toString("hex")}` },
  body: {
    type: "error",
    error: { type: ERROR_TYPES[status] ?? (status >= 500 ? "api_error" : "invalid_request_error"), message },
    request_id: `req_${randomBytes(12).toString("hex")}`,
  },
});

function limitHeaders(l: LimitState): Record<string, string> {
  const h: Record<string, string> = {
    "anthropic-ratelimit-requests-limit": String(l.requests.limit),
    "anthropic-ratelimit-requests-remaining": String(l.requests.remaining),
    "anthropic-ratelimit-requests-reset": resetIso(l.requests.resetMs),
  };
  for (const name of ["tokens", "input-tokens"]) {
    h[`anthropic-ratelimit-${name}-limit`] = String(l.tokens.limit);
    h[`anthropic-ratelimit-${name}-remaining`] = String(l.tokens.remaining);
    h[`anthropic-ratelimit-${name}-reset`] = resetIso(l.tokens.resetMs);
  }
  return h;
}

export const anthropicFormat: WireFormat = {
  name: "anthropic",
  match: (method, pathname) =>
    method === "POST" && pathname === "/v1/messages" ? { pathModel: "" } : undefined,

  /** x-api-key, or a bearer token (newer SDKs send the key that way). */
  apiKey(req: IncomingMessage): string {
    const key = req.headers["x-api-key"];
    if (typeof key === "string") return key.trim();
    const auth = req.headers.authorization ?? "";
    return auth.startsWith("Bearer ") ? auth.slice(7).trim() : "";
  },

  precheck(req: IncomingMessage): MockResponse | undefined {
    if (!req.headers["anthropic-version"]) return error(400, "anthropic-version: header is required");
    return undefined;
  },

  parse(body: unknown): ParsedRequest | MockResponse {
    const b = asRecord(body);
    if (!b) return error(400, "There was an issue with your request body.");
    if (typeof b.model !== "string" || !b.model) return error(400, "model: Field required");
    if (typeof b.max_tokens !== "number" || !Number.isInteger(b.max_tokens) || b.max_tokens < 1)
      return error(400, "max_tokens: Field required");
    if (!Array.isArray(b.messages) || b.messages.length === 0)
      return error(400, "messages: at least one message is required");
    const messages: SimpleMessage[] = [];
    if (b.system !== undefined) {
      const system = textOf(b.system);
      if (system === undefined)
        return error(400, "system: Input should be a valid string or list of text blocks");
      messages.push({ role: "system", text: system });
    }
    for (let i = 0; i < b.messages.length; i++) {
      const m = asRecord(b.messages[i]);
      if (m?.role !== "user" && m?.role !== "assistant")
        return error(400, `messages.${i}.role: Input should be 'user' or 'assistant'`);
      const text = textOf(m.content);
      if (text === undefined)
        return error(400, `messages.${i}.content: Input should be a valid string or list of content blocks`);
      messages.push({ role: m.role, text });
    }
    return {
      model: b.model,
      messages,
      maxTokens: b.max_tokens,
      ...(b.stream === true ? { stream: true } : {}),
    };
  },

  success(req: ParsedRequest, out: Completion, limits: LimitState): MockResponse {
    return {
      status: 200,
      headers: { ...limitHeaders(limits), "request-id": `req_${randomBytes(12).toString("hex")}` },
      body: {
        id: `msg_${randomBytes(12).toString("hex")}`,
        type: "message",
        role: "assistant",
        model: req.model,
        content: [{ type: "text", text: out.text }],
        stop_reason: out.finished === "length" ? "max_tokens" : "end_turn",
        stop_sequence: null,
        usage: {
          // Anthropic counts cache reads apart from input_tokens.
          input_tokens: out.inputTokens - (out.cachedTokens ?? 0),
          cache_creation_input_tokens: 0,
          cache_read_input_tokens: out.cachedTokens ?? 0,
          output_tokens: out.outputTokens,
          service_tier: "standard",
        },
      },
    };
  },

  error(status: number, message?: string): MockResponse {
    const fallback =
      status === 529 ? "Overloaded" : status >= 500 ? "Internal server error" : "Injected client error.";
    return error(status, message ?? fallback);
  },

  invalidKey: () => error(401, "invalid x-api-key"),

  rateLimited(seconds: number, place: HintPlace, limits: LimitState): MockResponse {
    const r = error(
      429,
      "This request would exceed the rate limit for your organization. Please try again later.",
    );
    const headers: Record<string, string> = { ...r.headers };
    if (place === "all" || place === "header") headers["retry-after"] = String(seconds);
    if (place === "all" || place === "reset")
      Object.assign(
        headers,
        limitHeaders({ ...limits, requests: { ...limits.requests, remaining: 0, resetMs: seconds * 1000 } }),
      );
    return { ...r, headers };
  },
};
