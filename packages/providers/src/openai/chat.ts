import { z } from "zod";
import { ProviderError } from "../errors";
import { parseJson, withCached } from "../usage";
import { HttpAdapter, type AdapterOptions, type UpstreamError } from "../adapter";
import type { JsonResponse } from "../http";
import { openaiRateLimits, type RateLimitInfo } from "../rate-limits";
import type { ChatResult, ProviderRequest, StreamReader } from "../types";

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

const chunkSchema = z.object({
  model: z.string().optional(),
  choices: z
    .array(
      z.object({
        delta: z.object({ content: z.string().nullish() }).nullish(),
        finish_reason: z.string().nullish(),
      }),
    )
    .optional(),
  usage: z
    .object({
      prompt_tokens: z.number().int().min(0),
      completion_tokens: z.number().int().min(0),
      prompt_tokens_details: z.object({ cached_tokens: z.number().int().min(0).nullish() }).nullish(),
    })
    .nullish(),
  error: z.object({ message: z.string() }).optional(),
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

  protected override streamBody(req: ProviderRequest): Record<string, unknown> {
    return { ...this.buildBody(req), stream: true, stream_options: { include_usage: true } };
  }

  protected streamReader(req: ProviderRequest, onDelta: (text: string) => void): StreamReader {
    let text = "";
    let finish: string | undefined;
    let model = req.model;
    let usage: ChatResult["usage"] | undefined;
    let done = false;
    return {
      event: (_event, data) => {
        if (data === "[DONE]") {
          done = true;
          return;
        }
        const chunk = chunkSchema.safeParse(parseJson(data));
        if (!chunk.success)
          throw new ProviderError("malformed", "a stream chunk is not a chat.completion.chunk", this.id);
        const c = chunk.data;
        if (c.error) throw new ProviderError("server", `the stream failed: ${c.error.message}`, this.id);
        if (c.model) model = c.model;
        const choice = c.choices?.[0];
        const piece = choice?.delta?.content;
        if (piece) {
          text += piece;
          onDelta(piece);
        }
        if (choice?.finish_reason) finish = choice.finish_reason;
        if (c.usage)
          usage = withCached(
            { input_tokens: c.usage.prompt_tokens, output_tokens: c.usage.completion_tokens },
            c.usage.prompt_tokens_details?.cached_tokens,
          );
      },
      result: () =>
        done || finish
          ? {
              output_text: text,
              finish_reason: finish ?? "unknown",
              model,
              usage: usage ?? { input_tokens: 0, output_tokens: 0 },
            }
          : undefined,
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
