import { z } from "zod";
import type { ApiError, ChatMessage, JobView } from "@switchyard/core";
import {
  outcome,
  type Dialect,
  type JobRequestFields,
  type SseOut,
  type StreamContext,
  type StreamWriter,
} from "./common";

/**
 * Anthropic's Messages API (POST /v1/messages): the request as a job (system prompt first),
 * the job as a `message`, errors as `{type: "error", error: {type, message}}`.
 */
const textBlock = z.object({ type: z.literal("text"), text: z.string() }).strict();
const content = z.union([z.string(), z.array(textBlock).min(1)], {
  message: "content must be a string or text blocks (images, documents and tool blocks are not supported)",
});

export const anthropicRequestSchema = z
  .object({
    model: z.string().min(1).max(200),
    max_tokens: z.number().int().min(1).max(1_000_000),
    messages: z
      .array(z.object({ role: z.enum(["user", "assistant"]), content }).strict())
      .min(1)
      .max(1000),
    system: content.optional(),
    temperature: z.number().min(0).max(1).optional(),
    top_p: z.number().min(0).max(1).optional(),
    stop_sequences: z.array(z.string().min(1)).min(1).max(4).optional(),
    metadata: z
      .object({ user_id: z.string().max(256).nullish() })
      .strict()
      .optional(),
    stream: z.boolean().optional(),
  })
  .strict();

export function anthropicToJob(req: z.infer<typeof anthropicRequestSchema>): JobRequestFields {
  const messages: ChatMessage[] = [];
  if (req.system !== undefined) messages.push({ role: "system", content: req.system });
  for (const m of req.messages) messages.push({ role: m.role, content: m.content });
  return {
    model: req.model,
    messages,
    max_tokens: req.max_tokens,
    ...(req.temperature !== undefined ? { temperature: req.temperature } : {}),
    ...(req.top_p !== undefined ? { top_p: req.top_p } : {}),
    ...(req.stop_sequences ? { stop: req.stop_sequences } : {}),
    ...(req.metadata?.user_id ? { user: req.metadata.user_id } : {}),
  };
}

const STOP: Record<string, string> = { stop: "end_turn", length: "max_tokens", content_filter: "refusal" };

const ERROR_TYPES: Record<number, string> = {
  400: "invalid_request_error",
  401: "authentication_error",
  403: "permission_error",
  404: "not_found_error",
  409: "invalid_request_error",
  413: "request_too_large",
  429: "rate_limit_error",
  503: "overloaded_error",
  504: "timeout_error",
};

export const anthropicDialect: Dialect = {
  name: "anthropic",
  answer(view: JobView) {
    const o = outcome(view);
    return {
      id: `msg_${view.id}`,
      type: "message",
      role: "assistant",
      model: o.model,
      content: [{ type: "text", text: o.text }],
      stop_reason: STOP[o.finish] ?? "end_turn",
      stop_sequence: null,
      usage: {
        // Anthropic counts prompt-cache reads apart from input_tokens.
        input_tokens: o.input - o.cached,
        output_tokens: o.output,
        cache_creation_input_tokens: 0,
        cache_read_input_tokens: o.cached,
      },
    };
  },
  streamWriter(out: SseOut, ctx: StreamContext): StreamWriter {
    const ev = (event: string, body: Record<string, unknown>) =>
      out.send(JSON.stringify({ type: event, ...body }), event);
    return {
      start: () => {
        ev("message_start", {
          message: {
            id: `msg_${ctx.jobId}`,
            type: "message",
            role: "assistant",
            model: ctx.model,
            content: [],
            stop_reason: null,
            stop_sequence: null,
            usage: { input_tokens: 0, output_tokens: 0 },
          },
        });
        ev("content_block_start", { index: 0, content_block: { type: "text", text: "" } });
      },
      delta: (text) => ev("content_block_delta", { index: 0, delta: { type: "text_delta", text } }),
      end: (d) => {
        ev("content_block_stop", { index: 0 });
        const cached = d.usage.cached_input_tokens ?? 0;
        ev("message_delta", {
          delta: { stop_reason: STOP[d.finish_reason] ?? "end_turn", stop_sequence: null },
          usage: {
            input_tokens: d.usage.input_tokens - cached,
            cache_read_input_tokens: cached,
            output_tokens: d.usage.output_tokens,
          },
        });
        ev("message_stop", {});
      },
      error: (e) => out.send(JSON.stringify(anthropicDialect.errorBody(e)), "error"),
    };
  },
  errorBody(e: ApiError) {
    return { type: "error", error: { type: ERROR_TYPES[e.status] ?? "api_error", message: e.message } };
  },
};
