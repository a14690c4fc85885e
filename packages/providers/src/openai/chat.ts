import { z } from "zod";
import type { ChatRequest } from "@switchyard/core";
import { HttpClient } from "../http";
import { kindForStatus, ProviderError } from "../errors";
import { retryAfterMsFromHeaders } from "../retry-hints";
import type { CallContext, ChatProvider, ChatResult } from "../types";

/**
 * OpenAI chat completions (POST {base_url}/chat/completions). "openai-compatible" servers
 * (Ollama, vLLM, LM Studio, ...) use the same wire format; they differ in the token-limit
 * field name, which is the one thing this adapter varies.
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
    .object({ prompt_tokens: z.number().int().min(0), completion_tokens: z.number().int().min(0) })
    .optional(),
});

const errorBodySchema = z.object({ error: z.object({ message: z.string() }) });

export interface OpenAIChatOptions {
  id: string;
  type: "openai" | "openai-compatible";
  baseUrl: string;
  timeoutMs: number;
  connectTimeoutMs: number;
  maxResponseBytes: number;
}

export class OpenAIChatProvider implements ChatProvider {
  readonly id: string;
  readonly type: "openai" | "openai-compatible";
  private readonly http: HttpClient;
  private readonly url: string;

  constructor(opts: OpenAIChatOptions) {
    this.id = opts.id;
    this.type = opts.type;
    this.url = `${opts.baseUrl.replace(/\/+$/, "")}/chat/completions`;
    this.http = new HttpClient({
      provider: opts.id,
      timeoutMs: opts.timeoutMs,
      connectTimeoutMs: opts.connectTimeoutMs,
      maxResponseBytes: opts.maxResponseBytes,
    });
  }

  buildBody(req: ChatRequest): Record<string, unknown> {
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

  async chat(req: ChatRequest, ctx: CallContext): Promise<ChatResult> {
    const res = await this.http.postJson(
      this.url,
      { authorization: `Bearer ${ctx.apiKey}` },
      this.buildBody(req),
      ctx.signal,
    );
    if (res.status < 200 || res.status >= 300) {
      const parsed = errorBodySchema.safeParse(res.body);
      const upstreamMessage = parsed.success
        ? parsed.data.error.message
        : res.rawText.slice(0, 300) || "(empty body)";
      const kind = kindForStatus(res.status);
      // Auth failures must not echo anything the upstream may have said about our key.
      const message = kind === "auth" ? `upstream rejected the API key (${res.status})` : upstreamMessage;
      throw new ProviderError(kind, message, this.id, res.status, retryAfterMsFromHeaders(res.headers));
    }
    const parsed = responseSchema.safeParse(res.body);
    if (!parsed.success) {
      throw new ProviderError(
        "malformed",
        "upstream answered 2xx with a body that is not a chat completion",
        this.id,
        res.status,
      );
    }
    const choice = parsed.data.choices[0];
    const usage = parsed.data.usage;
    return {
      output_text: choice?.message.content ?? "",
      finish_reason: choice?.finish_reason ?? "unknown",
      provider: this.id,
      model: parsed.data.model,
      usage: { input_tokens: usage?.prompt_tokens ?? 0, output_tokens: usage?.completion_tokens ?? 0 },
    };
  }

  close(): Promise<void> {
    return this.http.close();
  }
}
