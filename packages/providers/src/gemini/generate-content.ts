import { z } from "zod";
import { parseJson, withCached } from "../usage";
import { HttpAdapter, type AdapterOptions, type UpstreamError } from "../adapter";
import { ProviderError, type ProviderErrorKind } from "../errors";
import { parseProtoDuration } from "../retry-hints";
import type { RateLimitInfo } from "../rate-limits";
import { messageText } from "@switchyard/core";
import { isSystemRole, type ChatResult, type ProviderRequest, type StreamReader } from "../types";

/**
 * Gemini generateContent (POST {base_url}/{api_version}/models/{model}:generateContent, key in
 * the x-goog-api-key header). Assistant turns are "model" turns; system messages become the
 * systemInstruction; thought parts are left out of the text but their tokens are output tokens.
 */
const responseSchema = z.object({
  candidates: z
    .array(
      z.object({
        content: z
          .object({
            parts: z
              .array(z.object({ text: z.string().optional(), thought: z.boolean().optional() }))
              .optional(),
          })
          .optional(),
        finishReason: z.string().optional(),
      }),
    )
    .optional(),
  promptFeedback: z.object({ blockReason: z.string().optional() }).optional(),
  usageMetadata: z
    .object({
      promptTokenCount: z.number().int().min(0).optional(),
      candidatesTokenCount: z.number().int().min(0).optional(),
      thoughtsTokenCount: z.number().int().min(0).optional(),
      cachedContentTokenCount: z.number().int().min(0).optional(),
    })
    .optional(),
  modelVersion: z.string().optional(),
});

const errorSchema = z.object({
  error: z.object({
    code: z.number().optional(),
    message: z.string(),
    status: z.string().optional(),
    details: z.array(z.looseObject({ "@type": z.string().optional() })).optional(),
  }),
});
/** Google sometimes wraps the error in an array. */
const errorBodySchema = z.union([errorSchema, z.tuple([errorSchema]).transform(([e]) => e)]);

const FINISH_REASONS: Record<string, string> = {
  STOP: "stop",
  MAX_TOKENS: "length",
  SAFETY: "content_filter",
  RECITATION: "content_filter",
  LANGUAGE: "content_filter",
  BLOCKLIST: "content_filter",
  PROHIBITED_CONTENT: "content_filter",
  SPII: "content_filter",
  IMAGE_SAFETY: "content_filter",
};

const KEY_REASONS = new Set(["API_KEY_INVALID", "API_KEY_SERVICE_BLOCKED", "API_KEY_HTTP_REFERRER_BLOCKED"]);

export interface GeminiOptions extends AdapterOptions {
  /** Path segment before /models; v1beta carries every current feature. */
  apiVersion?: string;
}

export class GeminiProvider extends HttpAdapter {
  readonly type = "gemini";
  private readonly apiVersion: string;

  constructor(opts: GeminiOptions) {
    super(opts);
    this.apiVersion = opts.apiVersion ?? "v1beta";
  }

  protected probeUrl(): string {
    return `${this.baseUrl}/${this.apiVersion}/models?pageSize=1`;
  }

  protected url(req: ProviderRequest): string {
    const model = req.model.replace(/^models\//, "");
    return `${this.baseUrl}/${this.apiVersion}/models/${encodeURIComponent(model)}:generateContent`;
  }

  protected authHeaders(apiKey: string): Record<string, string> {
    return { "x-goog-api-key": apiKey };
  }

  buildBody(req: ProviderRequest): Record<string, unknown> {
    const system = req.messages.filter((m) => isSystemRole(m.role)).map(messageText);
    const contents = req.messages
      .filter((m) => !isSystemRole(m.role))
      .map((m) => ({
        role: m.role === "assistant" ? "model" : "user",
        parts:
          typeof m.content === "string" ? [{ text: m.content }] : m.content.map((p) => ({ text: p.text })),
      }));
    const generationConfig: Record<string, unknown> = {};
    if (req.max_tokens !== undefined) generationConfig.maxOutputTokens = req.max_tokens;
    if (req.temperature !== undefined) generationConfig.temperature = req.temperature;
    if (req.top_p !== undefined) generationConfig.topP = req.top_p;
    if (req.stop !== undefined)
      generationConfig.stopSequences = typeof req.stop === "string" ? [req.stop] : req.stop;
    const body: Record<string, unknown> = { contents };
    if (system.length > 0) body.systemInstruction = { parts: system.map((text) => ({ text })) };
    if (Object.keys(generationConfig).length > 0) body.generationConfig = generationConfig;
    return body;
  }

  protected toResult(body: unknown, req: ProviderRequest): Omit<ChatResult, "provider"> | undefined {
    const parsed = responseSchema.safeParse(body);
    if (!parsed.success) return undefined;
    const { candidates, promptFeedback, usageMetadata, modelVersion } = parsed.data;
    const candidate = candidates?.[0];
    const usage = withCached(
      {
        input_tokens: usageMetadata?.promptTokenCount ?? 0,
        output_tokens: (usageMetadata?.candidatesTokenCount ?? 0) + (usageMetadata?.thoughtsTokenCount ?? 0),
      },
      usageMetadata?.cachedContentTokenCount,
    );
    const model = modelVersion ?? req.model;
    if (!candidate) {
      // A blocked prompt is an answer (no candidates, a block reason), not a broken body.
      if (!promptFeedback?.blockReason) return undefined;
      return { output_text: "", finish_reason: "content_filter", model, usage };
    }
    const text = (candidate.content?.parts ?? [])
      .filter((p) => !p.thought)
      .map((p) => p.text ?? "")
      .join("");
    const reason = candidate.finishReason;
    return {
      output_text: text,
      finish_reason: reason ? (FINISH_REASONS[reason] ?? "unknown") : "unknown",
      model,
      usage,
    };
  }

  protected override streamUrl(req: ProviderRequest): string {
    return this.url(req).replace(/:generateContent$/, ":streamGenerateContent?alt=sse");
  }

  protected override streamBody(req: ProviderRequest): Record<string, unknown> {
    return this.buildBody(req);
  }

  /** Every chunk is a GenerateContentResponse of its own: its text is the next piece. */
  protected streamReader(req: ProviderRequest, onDelta: (text: string) => void): StreamReader {
    let text = "";
    let last: Omit<ChatResult, "provider"> | undefined;
    let finished = false;
    return {
      event: (_event, data) => {
        const body = parseJson(data);
        const upstream = this.readError(body);
        if (upstream) throw new ProviderError("server", `the stream failed: ${upstream.message}`, this.id);
        const chunk = this.toResult(body, req);
        if (!chunk)
          throw new ProviderError("malformed", "a stream chunk is not a GenerateContentResponse", this.id);
        if (chunk.output_text) {
          text += chunk.output_text;
          onDelta(chunk.output_text);
        }
        if (chunk.finish_reason !== "unknown") finished = true;
        last = chunk;
      },
      result: () => (finished && last ? { ...last, output_text: text } : undefined),
    };
  }

  protected readError(body: unknown): UpstreamError | undefined {
    const parsed = errorBodySchema.safeParse(body);
    if (!parsed.success) return undefined;
    const { message, status, details = [] } = parsed.data.error;
    let retryDelayMs: number | undefined;
    let kind: ProviderErrorKind | undefined;
    for (const d of details) {
      const type = d["@type"] ?? "";
      if (type.endsWith("google.rpc.RetryInfo")) retryDelayMs = parseProtoDuration(d.retryDelay);
      // Google answers a bad key with 400 INVALID_ARGUMENT; the ErrorInfo reason says what it is.
      if (type.endsWith("google.rpc.ErrorInfo") && typeof d.reason === "string" && KEY_REASONS.has(d.reason))
        kind = "auth";
    }
    return {
      message,
      ...(status ? { code: status } : {}),
      ...(kind ? { kind } : {}),
      ...(retryDelayMs !== undefined ? { retryDelayMs } : {}),
    };
  }

  protected rateLimits(): RateLimitInfo | undefined {
    return undefined; // Gemini sends no rate-limit headers
  }
}
