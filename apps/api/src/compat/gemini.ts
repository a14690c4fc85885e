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
 * Gemini's generateContent (POST /v1beta/models/{model}:generateContent): the request as a job
 * (role "model" is the assistant), the job as a `GenerateContentResponse`, errors as
 * `{error: {code, message, status}}`.
 */
const part = z.object({ text: z.string() }).strict();
const parts = z.array(part, { message: "only text parts are supported" }).min(1);

export const geminiRequestSchema = z
  .object({
    contents: z
      .array(z.object({ role: z.enum(["user", "model"]).optional(), parts }).strict())
      .min(1)
      .max(1000),
    systemInstruction: z.object({ role: z.string().optional(), parts }).strict().optional(),
    generationConfig: z
      .object({
        maxOutputTokens: z.number().int().min(1).max(1_000_000).optional(),
        temperature: z.number().min(0).max(2).optional(),
        topP: z.number().min(0).max(1).optional(),
        stopSequences: z.array(z.string().min(1)).min(1).max(4).optional(),
        candidateCount: z.literal(1, { message: "only candidateCount 1 is supported" }).optional(),
      })
      .strict()
      .optional(),
  })
  .strict();

export function geminiToJob(model: string, req: z.infer<typeof geminiRequestSchema>): JobRequestFields {
  const text = (ps: { text: string }[]) => ps.map((p) => p.text).join("");
  const messages: ChatMessage[] = [];
  if (req.systemInstruction) messages.push({ role: "system", content: text(req.systemInstruction.parts) });
  for (const c of req.contents)
    messages.push({ role: c.role === "model" ? "assistant" : "user", content: text(c.parts) });
  const g = req.generationConfig;
  return {
    model,
    messages,
    ...(g?.maxOutputTokens !== undefined ? { max_tokens: g.maxOutputTokens } : {}),
    ...(g?.temperature !== undefined ? { temperature: g.temperature } : {}),
    ...(g?.topP !== undefined ? { top_p: g.topP } : {}),
    ...(g?.stopSequences ? { stop: g.stopSequences } : {}),
  };
}

const FINISH: Record<string, string> = { stop: "STOP", length: "MAX_TOKENS", content_filter: "SAFETY" };

const STATUS: Record<number, string> = {
  400: "INVALID_ARGUMENT",
  401: "UNAUTHENTICATED",
  403: "PERMISSION_DENIED",
  404: "NOT_FOUND",
  409: "ABORTED",
  413: "INVALID_ARGUMENT",
  429: "RESOURCE_EXHAUSTED",
  503: "UNAVAILABLE",
  504: "DEADLINE_EXCEEDED",
};

export const geminiDialect: Dialect = {
  name: "gemini",
  answer(view: JobView) {
    const o = outcome(view);
    return {
      candidates: [
        {
          content: { parts: [{ text: o.text }], role: "model" },
          finishReason: FINISH[o.finish] ?? "STOP",
          index: 0,
        },
      ],
      usageMetadata: {
        promptTokenCount: o.input,
        candidatesTokenCount: o.output,
        totalTokenCount: o.input + o.output,
        ...(o.cached > 0 ? { cachedContentTokenCount: o.cached } : {}),
      },
      modelVersion: o.model,
      responseId: view.id,
    };
  },
  streamWriter(out: SseOut, ctx: StreamContext): StreamWriter {
    const send = (text: string, extra: Record<string, unknown> = {}, final: Record<string, unknown> = {}) =>
      out.send(
        JSON.stringify({
          candidates: [{ content: { parts: [{ text }], role: "model" }, ...final, index: 0 }],
          ...extra,
          modelVersion: ctx.model,
          responseId: ctx.jobId,
        }),
      );
    return {
      start: () => undefined,
      delta: (text) => send(text),
      end: (d) => {
        const u = d.usage;
        send(
          "",
          {
            usageMetadata: {
              promptTokenCount: u.input_tokens,
              candidatesTokenCount: u.output_tokens,
              totalTokenCount: u.input_tokens + u.output_tokens,
              ...(u.cached_input_tokens ? { cachedContentTokenCount: u.cached_input_tokens } : {}),
            },
          },
          { finishReason: FINISH[d.finish_reason] ?? "STOP" },
        );
      },
      error: (e) => out.send(JSON.stringify(geminiDialect.errorBody(e))),
    };
  },
  errorBody(e: ApiError) {
    return { error: { code: e.status, message: e.message, status: STATUS[e.status] ?? "INTERNAL" } };
  },
};
