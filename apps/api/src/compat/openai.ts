import { z } from "zod";
import type { ApiError, JobView } from "@switchyard/core";
import {
  outcome,
  type Dialect,
  type JobRequestFields,
  type SseOut,
  type StreamContext,
  type StreamWriter,
} from "./common";

/**
 * OpenAI's Chat Completions API (POST /v1/chat/completions, GET /v1/models): the request as a
 * job, the job as a `chat.completion`, errors as `{error: {message, type, param, code}}`.
 */
const textPart = z.object({ type: z.literal("text"), text: z.string() }).strict();
const message = z
  .object({
    role: z.enum(["system", "developer", "user", "assistant"], {
      message: "role must be system, developer, user or assistant (tool messages are not supported)",
    }),
    content: z.union([z.string(), z.array(textPart).min(1)], {
      message: "content must be a string or text parts (images, audio and files are not supported)",
    }),
    name: z.string().max(64).optional(),
  })
  .strict();

export const openaiRequestSchema = z
  .object({
    model: z.string().min(1).max(200),
    messages: z.array(message).min(1).max(1000),
    max_tokens: z.number().int().min(1).max(1_000_000).nullish(),
    max_completion_tokens: z.number().int().min(1).max(1_000_000).nullish(),
    temperature: z.number().min(0).max(2).nullish(),
    top_p: z.number().min(0).max(1).nullish(),
    stop: z.union([z.string().min(1), z.array(z.string().min(1)).min(1).max(4)]).nullish(),
    user: z.string().max(256).optional(),
    n: z.literal(1, { message: "only n: 1 is supported" }).nullish(),
    stream: z.boolean().nullish(),
    stream_options: z.object({ include_usage: z.boolean().optional() }).strict().nullish(),
    response_format: z
      .object({ type: z.literal("text", { message: "only response_format {type: text} is supported" }) })
      .strict()
      .optional(),
  })
  .strict();

export function openaiToJob(req: z.infer<typeof openaiRequestSchema>): JobRequestFields {
  const max = req.max_completion_tokens ?? req.max_tokens;
  return {
    model: req.model,
    messages: req.messages,
    ...(max != null ? { max_tokens: max } : {}),
    ...(req.temperature != null ? { temperature: req.temperature } : {}),
    ...(req.top_p != null ? { top_p: req.top_p } : {}),
    ...(req.stop != null ? { stop: req.stop } : {}),
    ...(req.user !== undefined ? { user: req.user } : {}),
  };
}

const FINISH: Record<string, string> = { stop: "stop", length: "length", content_filter: "content_filter" };

const ERROR_TYPES: Record<number, string> = {
  400: "invalid_request_error",
  401: "authentication_error",
  403: "permission_error",
  404: "not_found_error",
  409: "conflict_error",
  413: "invalid_request_error",
  429: "rate_limit_error",
};

export const openaiDialect: Dialect = {
  name: "openai",
  answer(view: JobView) {
    const o = outcome(view);
    return {
      id: `chatcmpl-${view.id}`,
      object: "chat.completion",
      created: o.created,
      model: o.model,
      choices: [
        {
          index: 0,
          message: { role: "assistant", content: o.text, refusal: null, annotations: [] },
          logprobs: null,
          finish_reason: FINISH[o.finish] ?? "stop",
        },
      ],
      usage: {
        prompt_tokens: o.input,
        completion_tokens: o.output,
        total_tokens: o.input + o.output,
        prompt_tokens_details: { cached_tokens: o.cached },
      },
      service_tier: "default",
      system_fingerprint: null,
    };
  },
  streamWriter(out: SseOut, ctx: StreamContext): StreamWriter {
    const chunk = (choices: unknown[], extra: Record<string, unknown> = {}) =>
      JSON.stringify({
        id: `chatcmpl-${ctx.jobId}`,
        object: "chat.completion.chunk",
        created: ctx.created,
        model: ctx.model,
        system_fingerprint: null,
        choices,
        ...extra,
      });
    return {
      start: () =>
        out.send(chunk([{ index: 0, delta: { role: "assistant", content: "" }, finish_reason: null }])),
      delta: (text) => out.send(chunk([{ index: 0, delta: { content: text }, finish_reason: null }])),
      end: (d) => {
        out.send(chunk([{ index: 0, delta: {}, finish_reason: FINISH[d.finish_reason] ?? "stop" }]));
        if (ctx.includeUsage) {
          const u = d.usage;
          out.send(
            chunk([], {
              usage: {
                prompt_tokens: u.input_tokens,
                completion_tokens: u.output_tokens,
                total_tokens: u.input_tokens + u.output_tokens,
                prompt_tokens_details: { cached_tokens: u.cached_input_tokens ?? 0 },
              },
            }),
          );
        }
        out.send("[DONE]");
      },
      error: (e) => out.send(JSON.stringify(openaiDialect.errorBody(e))),
    };
  },
  errorBody(e: ApiError) {
    return {
      error: {
        message: e.message,
        type: ERROR_TYPES[e.status] ?? (e.status >= 500 ? "server_error" : e.type),
        param: e.details?.[0]?.path ?? null,
        code: e.type,
      },
    };
  },
};

/** GET /v1/models: every model alias the tenant can ask for. */
export function openaiModels(models: string[], created: number) {
  return {
    object: "list",
    data: models.map((id) => ({ id, object: "model", created, owned_by: "switchyard" })),
  };
}
