import type { IncomingMessage } from "node:http";
import type { SimpleMessage } from "../completion";

/** What the mock answers: a status, a JSON body and headers. */
export interface MockResponse {
  status: number;
  body: unknown;
  headers?: Record<string, string>;
}

/** A request reduced to what the fake model needs, whatever wire format it came in. */
export interface ParsedRequest {
  model: string;
  messages: SimpleMessage[];
  maxTokens?: number;
  /** The answer goes out as server-sent events (stream: true, Gemini's :streamGenerateContent). */
  stream?: boolean;
}

export interface Completion {
  text: string;
  finished: "stop" | "length";
  inputTokens: number;
  outputTokens: number;
  /** Of inputTokens, how many the answer reports as read from a prompt cache. */
  cachedTokens?: number;
}

/** One rate-limit window as the headers report it. */
export interface WindowState {
  limit: number;
  remaining: number;
  resetMs: number;
}

export interface LimitState {
  requests: WindowState;
  tokens: WindowState;
}

/** Where a 429 carries its retry hint: every place the provider uses, or only one of them. */
export type HintPlace = "all" | "header" | "reset" | "body";

export const WIRE_NAMES = ["openai", "anthropic", "gemini"] as const;
export type WireName = (typeof WIRE_NAMES)[number];

/**
 * One upstream wire format at its real path: how it authenticates, what a valid request is,
 * and how its answers, errors and rate-limit headers look, byte for byte where it matters.
 */
export interface WireFormat {
  readonly name: WireName;
  /** The model named in the path (Gemini) or "" when the path matches without one; undefined: not this format. */
  match(method: string, pathname: string): { pathModel: string; stream?: boolean } | undefined;
  apiKey(req: IncomingMessage, url: URL): string;
  /** An error answer for a request the format itself rejects before any key check (e.g. missing version). */
  precheck?(req: IncomingMessage): MockResponse | undefined;
  parse(body: unknown, pathModel: string, stream?: boolean): ParsedRequest | MockResponse;
  success(req: ParsedRequest, out: Completion, limits: LimitState): MockResponse;
  error(status: number, message?: string): MockResponse;
  invalidKey(): MockResponse;
  rateLimited(retryAfterSeconds: number, place: HintPlace, limits: LimitState): MockResponse;
}

export const isParsed = (r: ParsedRequest | MockResponse): r is ParsedRequest => !("status" in r);

/** Text of a content value given as a string or as a list of text blocks; undefined when neither. */
export function textOf(content: unknown, field = "text"): string | undefined {
  if (typeof content === "string") return content;
  if (Array.isArray(content)) {
    const texts = content.map((p) =>
      p && typeof p === "object" ? (p as Record<string, unknown>)[field] : undefined,
    );
    if (texts.length > 0 && texts.every((t): t is string => typeof t === "string")) return texts.join("\n");
  }
  return undefined;
}

export const asRecord = (v: unknown): Record<string, unknown> | undefined =>
  v && typeof v === "object" && !Array.isArray(v) ? (v as Record<string, unknown>) : undefined;

/** Rounded up to whole seconds, as the providers' headers carry them. */
export const resetIso = (ms: number): string =>
  new Date(Date.now() + Math.ceil(ms / 1000) * 1000).toISOString();
