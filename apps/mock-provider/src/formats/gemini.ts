import { randomBytes } from "node:crypto";
import type { IncomingMessage } from "node:http";
import type { SimpleMessage } from "../completion";
import {
  asRecord,
  textOf,
  type Completion,
  type HintPlace,
  type MockResponse,
  type ParsedRequest,
  type WireFormat,
} from "./types";

/**
 * Gemini generateContent at /v1beta/models/{model}:generateContent (v1 too): the key in
 * x-goog-api-key or ?key=, contents/parts, systemInstruction, generationConfig, usageMetadata,
 * and google.rpc error bodies; a 429 carries RetryInfo.retryDelay in the body, not in headers.
 */
const PATH = /^\/(v1beta|v1)\/models\/([^/:]+):(generateContent|streamGenerateContent)$/;

const STATUSES: Record<number, string> = {
  400: "INVALID_ARGUMENT",
  401: "UNAUTHENTICATED",
  403: "PERMISSION_DENIED",
  404: "NOT_FOUND",
  429: "RESOURCE_EXHAUSTED",
  500: "INTERNAL",
  503: "UNAVAILABLE",
  504: "DEADLINE_EXCEEDED",
};

const error = (code: number, message: string, details?: unknown[]): MockResponse => ({
  status: code,
  body: {
    error: {
      code,
      message,
      status: STATUSES[code] ?? (code >= 500 ? "INTERNAL" : "FAILED_PRECONDITION"),
      ...(details ? { details } : {}),
    },
  },
});

export const geminiFormat: WireFormat = {
  name: "gemini",
  match(method, pathname) {
    const m = method === "POST" ? PATH.exec(pathname) : null;
    return m?.[2] === undefined
      ? undefined
      : {
          pathModel: decodeURIComponent(m[2]),
          ...(m[3] === "streamGenerateContent" ? { stream: true } : {}),
        };
  },

  apiKey(req: IncomingMessage, url: URL): string {
    const key = req.headers["x-goog-api-key"];
    return (typeof key === "string" ? key : (url.searchParams.get("key") ?? "")).trim();
  },

  parse(body: unknown, pathModel: string, stream?: boolean): ParsedRequest | MockResponse {
    const b = asRecord(body);
    if (!b) return error(400, "Invalid JSON payload received.");
    if (!Array.isArray(b.contents) || b.contents.length === 0)
      return error(400, "* GenerateContentRequest.contents: contents is not specified");
    const messages: SimpleMessage[] = [];
    const sys = asRecord(b.systemInstruction ?? b.system_instruction);
    if (sys) {
      const text = textOf(sys.parts);
      if (text === undefined)
        return error(400, "* GenerateContentRequest.system_instruction.parts: must be text parts");
      messages.push({ role: "system", text });
    }
    for (let i = 0; i < b.contents.length; i++) {
      const c = asRecord(b.contents[i]);
      const role = c?.role ?? "user";
      if (role !== "user" && role !== "model")
        return error(400, `Please use a valid role: user, model. (contents[${i}].role)`);
      const text = textOf(c?.parts);
      if (text === undefined)
        return error(400, `* GenerateContentRequest.contents[${i}].parts: contents.parts must not be empty.`);
      messages.push({ role: role === "model" ? "assistant" : "user", text });
    }
    const gen = asRecord(b.generationConfig ?? b.generation_config);
    const max = gen?.maxOutputTokens ?? gen?.max_output_tokens;
    if (max !== undefined && (typeof max !== "number" || !Number.isInteger(max) || max < 1))
      return error(
        400,
        "* GenerateContentRequest.generation_config.max_output_tokens: must be a positive integer",
      );
    return {
      model: pathModel,
      messages,
      ...(typeof max === "number" ? { maxTokens: max } : {}),
      ...(stream ? { stream: true } : {}),
    };
  },

  success(req: ParsedRequest, out: Completion): MockResponse {
    return {
      status: 200,
      body: {
        candidates: [
          {
            content: { parts: [{ text: out.text }], role: "model" },
            finishReason: out.finished === "length" ? "MAX_TOKENS" : "STOP",
            index: 0,
          },
        ],
        usageMetadata: {
          promptTokenCount: out.inputTokens,
          candidatesTokenCount: out.outputTokens,
          totalTokenCount: out.inputTokens + out.outputTokens,
          promptTokensDetails: [{ modality: "TEXT", tokenCount: out.inputTokens }],
          ...(out.cachedTokens ? { cachedContentTokenCount: out.cachedTokens } : {}),
        },
        modelVersion: req.model,
        responseId: randomBytes(12).toString("base64url"),
      },
    };
  },

  error(status: number, message?: string): MockResponse {
    const fallback =
      status === 503
        ? "The model is overloaded. Please try again later."
        : status >= 500
          ? "An internal error has occurred."
          : "Injected client error.";
    return error(status, message ?? fallback);
  },

  invalidKey: () =>
    error(400, "API key not valid. Please pass a valid API key.", [
      {
        "@type": "type.googleapis.com/google.rpc.ErrorInfo",
        reason: "API_KEY_INVALID",
        domain: "googleapis.com",
        metadata: { service: "generativelanguage.googleapis.com" },
      },
    ]),

  rateLimited(seconds: number, place: HintPlace): MockResponse {
    const details: unknown[] = [
      {
        "@type": "type.googleapis.com/google.rpc.QuotaFailure",
        violations: [
          {
            quotaMetric: "generativelanguage.googleapis.com/generate_content_requests",
            quotaId: "GenerateRequestsPerMinutePerProjectPerModel",
          },
        ],
      },
      {
        "@type": "type.googleapis.com/google.rpc.Help",
        links: [
          {
            description: "Learn more about Gemini API quotas",
            url: "https://ai.google.dev/gemini-api/docs/rate-limits",
          },
        ],
      },
    ];
    if (place === "all" || place === "body" || place === "reset")
      details.push({ "@type": "type.googleapis.com/google.rpc.RetryInfo", retryDelay: `${seconds}s` });
    const r = error(
      429,
      "You exceeded your current quota, please check your plan and billing details.",
      details,
    );
    return place === "header" ? { ...r, headers: { "retry-after": String(seconds) } } : r;
  },
};
