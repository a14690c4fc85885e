import { z } from "zod";
import { ProviderError } from "../errors";
import { parseJson, withCached } from "../usage";
import { HttpAdapter, type AdapterOptions, type UpstreamError } from "../adapter";
import type { JsonResponse } from "../http";
import { anthropicRateLimits, type RateLimitInfo } from "../rate-limits";
import { messageText } from "@switchyard/core";
import { isSystemRole, type ChatResult, type ProviderRequest, type StreamReader } from "../types";

/**
 * Anthropic Messages API (POST {base_url}/v1/messages, base_url as the SDK takes it:
 * https://api.anthropic.com). System messages become the `system` prompt; max_tokens is
 * required there, so a configured default fills it in; stop_reason maps onto OpenAI's words.
 */
export const ANTHROPIC_VERSION = "2023-06-01";

const responseSchema = z.object({
  type: z.literal("message"),
  model: z.string(),
  content: z.array(z.looseObject({ type: z.string(), text: z.string().optional() })),
  stop_reason: z.string().nullable(),
  usage: z.object({
    input_tokens: z.number().int().min(0),
    output_tokens: z.number().int().min(0),
    cache_creation_input_tokens: z.number().int().min(0).nullish(),
    cache_read_input_tokens: z.number().int().min(0).nullish(),
  }),
});

const errorBodySchema = z.object({
  type: z.literal("error"),
  error: z.object({ type: z.string(), message: z.string() }),
});

const streamUsage = z.object({
  input_tokens: z.number().int().min(0).nullish(),
  output_tokens: z.number().int().min(0).nullish(),
  cache_creation_input_tokens: z.number().int().min(0).nullish(),
  cache_read_input_tokens: z.number().int().min(0).nullish(),
});
const streamEventSchema = z.object({
  type: z.string(),
  message: z.object({ model: z.string().optional(), usage: streamUsage.optional() }).optional(),
  delta: z
    .object({ type: z.string().optional(), text: z.string().optional(), stop_reason: z.string().nullish() })
    .optional(),
  usage: streamUsage.optional(),
  error: z.object({ type: z.string().optional(), message: z.string().optional() }).optional(),
});

const STOP_REASONS: Record<string, string> = {
  end_turn: "stop",
  stop_sequence: "stop",
  pause_turn: "stop",
  max_tokens: "length",
  model_context_window_exceeded: "length",
  tool_use: "tool_calls",
  refusal: "content_filter",
};

export interface AnthropicOptions extends AdapterOptions {
  /** The `anthropic-version` header. */
  version?: string;
  /** max_tokens when neither the request nor the route gives one (the API requires it). */
  defaultMaxTokens: number;
}

export class AnthropicMessagesProvider extends HttpAdapter {
  readonly type = "anthropic";
  private readonly version: string;
  private readonly defaultMaxTokens: number;

  constructor(opts: AnthropicOptions) {
    super(opts);
    this.version = opts.version ?? ANTHROPIC_VERSION;
    this.defaultMaxTokens = opts.defaultMaxTokens;
  }

  protected url(): string {
    return `${this.baseUrl}/v1/messages`;
  }

  protected probeUrl(): string {
    return `${this.baseUrl}/v1/models?limit=1`;
  }

  protected authHeaders(apiKey: string): Record<string, string> {
    return { "x-api-key": apiKey, "anthropic-version": this.version };
  }

  buildBody(req: ProviderRequest): Record<string, unknown> {
    const system = req.messages
      .filter((m) => isSystemRole(m.role))
      .map(messageText)
      .join("\n\n");
    const messages = req.messages
      .filter((m) => !isSystemRole(m.role))
      .map((m) => ({
        role: m.role,
        content:
          typeof m.content === "string" ? m.content : m.content.map((p) => ({ type: "text", text: p.text })),
      }));
    const body: Record<string, unknown> = {
      model: req.model,
      max_tokens: req.max_tokens ?? this.defaultMaxTokens,
      messages,
    };
    if (system) body.system = system;
    if (req.temperature !== undefined) body.temperature = Math.min(1, req.temperature); // Anthropic's range is 0..1
    if (req.top_p !== undefined) body.top_p = req.top_p;
    if (req.stop !== undefined) body.stop_sequences = typeof req.stop === "string" ? [req.stop] : req.stop;
    if (req.user !== undefined) body.metadata = { user_id: req.user };
    return body;
  }

  protected toResult(body: unknown): Omit<ChatResult, "provider"> | undefined {
    const parsed = responseSchema.safeParse(body);
    if (!parsed.success) return undefined;
    const { content, stop_reason, usage, model } = parsed.data;
    return {
      output_text: content
        .filter((b) => b.type === "text")
        .map((b) => b.text ?? "")
        .join(""),
      finish_reason: stop_reason ? (STOP_REASONS[stop_reason] ?? "unknown") : "unknown",
      model,
      usage: withCached(
        {
          // Cached prompt tokens are prompt tokens too; they count against the input-token limit.
          input_tokens:
            usage.input_tokens +
            (usage.cache_creation_input_tokens ?? 0) +
            (usage.cache_read_input_tokens ?? 0),
          output_tokens: usage.output_tokens,
        },
        usage.cache_read_input_tokens,
      ),
    };
  }

  protected streamReader(req: ProviderRequest, onDelta: (text: string) => void): StreamReader {
    let text = "";
    let model = req.model;
    let stop: string | undefined;
    let input = 0;
    let cached = 0;
    let output = 0;
    let done = false;
    return {
      event: (event, data) => {
        const e = streamEventSchema.safeParse(parseJson(data));
        if (!e.success)
          throw new ProviderError(
            "malformed",
            `a stream event (${event ?? "?"}) is not Anthropic's`,
            this.id,
          );
        const v = e.data;
        switch (v.type) {
          case "message_start": {
            const u = v.message?.usage;
            if (v.message?.model) model = v.message.model;
            cached = u?.cache_read_input_tokens ?? 0;
            input = (u?.input_tokens ?? 0) + (u?.cache_creation_input_tokens ?? 0) + cached;
            output = u?.output_tokens ?? 0;
            break;
          }
          case "content_block_delta":
            if (v.delta?.type === "text_delta" && v.delta.text) {
              text += v.delta.text;
              onDelta(v.delta.text);
            }
            break;
          case "message_delta":
            if (v.delta?.stop_reason) stop = v.delta.stop_reason;
            if (typeof v.usage?.output_tokens === "number") output = v.usage.output_tokens;
            break;
          case "message_stop":
            done = true;
            break;
          case "error":
            throw new ProviderError(
              "server",
              `the stream failed: ${v.error?.message ?? "error event"}`,
              this.id,
              v.error?.type ? { code: v.error.type } : {},
            );
        }
      },
      result: () =>
        done
          ? {
              output_text: text,
              finish_reason: stop ? (STOP_REASONS[stop] ?? "unknown") : "unknown",
              model,
              usage: withCached({ input_tokens: input, output_tokens: output }, cached),
            }
          : undefined,
    };
  }

  protected readError(body: unknown): UpstreamError | undefined {
    const parsed = errorBodySchema.safeParse(body);
    if (!parsed.success) return undefined;
    return { message: parsed.data.error.message, code: parsed.data.error.type };
  }

  protected rateLimits(res: JsonResponse): RateLimitInfo | undefined {
    return anthropicRateLimits(res.headers);
  }
}
