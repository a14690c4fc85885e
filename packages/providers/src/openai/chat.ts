import { z } from "zod";
import { withCached } from "../usage";
import { HttpAdapter, type AdapterOptions, type UpstreamError } from "../adapter";
import type { JsonResponse } from "../http";
import { openaiRateLimits, type RateLimitInfo } from "../rate-limits";
import type { ChatResult, ProviderRequest } from "../types";

/**
 * OpenAI chat completions (POST {base_url}/chat/completions, base_url ending in /v1).
 * "openai-compatible" servers (Ollama, vLLM, LM Studio, ...) use the same wire format; they
 * differ in the token-limit field name, which is the one thing this adapter varies.
 */
const responseSchema = z.object({
  model: z.string(),
  choices: z
    .array(
      z.object({
        message: z.object({ content: z.string().nullable().optional() }),
        finish_reason: z.string().nullable().optional(),
      }),
    )
    .min(1),
  usage: z
    .object({
      prompt_tokens: z.number().int().min(0),
      completion_tokens: z.number().int().min(0),
      prompt_tokens_details: z.object({ cached_tokens: z.number().int().min(0).nullish() }).nullish(),
    })
    .optional(),
});

const errorBodySchema = z.object({
  error: z.object({ message: z.string(), type: z.string().nullish(), code: z.string().nullish() }),
});

export interface OpenAIChatOptions extends AdapterOptions {
  type: "openai" | "openai-compatible";
}

export class OpenAIChatProvider extends HttpAdapter {
  readonly type: "openai" | "openai-compatible";

  constructor(opts: OpenAIChatOptions) {
    super(opts);
    this.type = opts.type;
  }

  protected url(): string {
    return `${this.baseUrl}/chat/completions`;
  }

  protected probeUrl(): string {
    return `${this.baseUrl}/models`;
  }

  protected authHeaders(apiKey: string): Record<string, string> {
    return { authorization: `Bearer ${apiKey}` };
  }

  buildBody(req: ProviderRequest): Record<string, unknown> {
    const body: Record<string, unknown> = { model: req.model, messages: req.messages };
    // OpenAI's newer models reject max_tokens; compatible servers mostly only know max_tokens.
    if (req.max_tokens !== undefined)
      body[this.type === "openai" ? "max_completion_tokens" : "max_tokens"] = req.max_tokens;
    if (req.temperature !== undefined) body.temperature = req.temperature;
    if (req.top_p !== undefined) body.top_p = req.top_p;
    if (req.stop !== undefined) body.stop = req.stop;
    if (req.user !== undefined) body.user = req.user;
    return body;
  }

  protected toResult(body: unknown): Omit<ChatResult, "provider"> | undefined {
    const parsed = responseSchema.safeParse(body);
    if (!parsed.success) return undefined;
    const choice = parsed.data.choices[0];
    const usage = parsed.data.usage;
    return {
      output_text: choice?.message.content ?? "",
      finish_reason: choice?.finish_reason ?? "unknown",
      model: parsed.data.model,
      usage: withCached(
        { input_tokens: usage?.prompt_tokens ?? 0, output_tokens: usage?.completion_tokens ?? 0 },
        usage?.prompt_tokens_details?.cached_tokens,
      ),
    };
  }

  protected readError(body: unknown): UpstreamError | undefined {
    const parsed = errorBodySchema.safeParse(body);
    if (!parsed.success) return undefined;
    const { message, type, code } = parsed.data.error;
    const c = code ?? type;
    return { message, ...(c ? { code: c } : {}) };
  }

  protected rateLimits(res: JsonResponse): RateLimitInfo | undefined {
    return openaiRateLimits(res.headers);
  }
}
