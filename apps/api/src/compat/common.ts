import { ApiError, type ChatRequest, type JobError, type JobView } from "@switchyard/core";
import type { StreamEnd } from "@switchyard/queue";

/**
 * What the drop-in endpoints share: each provider's request becomes a Switchyard job (the chat
 * fields every route understands), the finished job becomes that provider's answer, and every
 * error is told in that provider's error shape. Parameters a format has and Switchyard cannot
 * carry to every provider are refused by path, never dropped.
 */
/** The chat fields every route understands: what a provider's request becomes. */
export type JobRequestFields = ChatRequest;

export interface Dialect {
  readonly name: "openai" | "anthropic" | "gemini";
  /** The finished job as the provider's answer object. */
  answer(view: JobView, requestedModel: string): unknown;
  /** Any error as the provider's error body. */
  errorBody(e: ApiError): unknown;
  /** The provider's server-sent events for a streamed answer. */
  streamWriter(out: SseOut, ctx: StreamContext): StreamWriter;
}

export interface StreamContext {
  jobId: string;
  /** The model the caller asked for (each chunk names it; the end names what served it). */
  model: string;
  created: number;
  /** OpenAI's stream_options.include_usage. */
  includeUsage: boolean;
}

/** Where SSE events go: one `event:`/`data:` block each. */
export interface SseOut {
  send(data: string, event?: string): void;
}

export interface StreamWriter {
  /** The opening events, before the first piece. */
  start(): void;
  delta(text: string): void;
  end(data: StreamEnd): void;
  /** A failure after the stream began: the format's error event. */
  error(e: ApiError): void;
}

/** A failed (or cancelled, or expired) job as the error its caller gets, with a fitting status. */
export function jobFailure(view: Pick<JobView, "status" | "error">): ApiError {
  const e: JobError = view.error ?? { type: "failed", message: `the job ended ${view.status}` };
  const where = e.provider ? ` (${e.provider}${e.model ? `/${e.model}` : ""})` : "";
  switch (view.status === "failed" ? e.type : view.status) {
    case "client":
      return new ApiError(
        400,
        "invalid_request_error",
        `the upstream refused the request${where}: ${e.message}`,
      );
    case "invalid_model":
      return new ApiError(400, "invalid_request_error", e.message);
    case "rate_limit":
      return new ApiError(
        429,
        "rate_limit_error",
        `every route link stayed rate limited${where}: ${e.message}`,
      );
    case "timeout":
      return new ApiError(504, "timeout", `the upstream timed out${where}: ${e.message}`);
    case "expired":
      return new ApiError(
        504,
        "timeout",
        "the job was not started before its deadline (queue too long for its ttl)",
      );
    case "cancelled":
      return new ApiError(409, "conflict_error", "the job was cancelled before it finished");
    default:
      return new ApiError(502, "api_error", `the upstream failed${where}: ${e.message}`);
  }
}

/** The job's answer text, finish reason and usage, as every dialect needs them. */
export function outcome(view: JobView) {
  const r = view.result;
  const u = view.usage ?? { input_tokens: 0, output_tokens: 0 };
  return {
    text: r?.output_text ?? "",
    finish: r?.finish_reason ?? "stop",
    model: r?.model ?? view.model,
    input: u.input_tokens,
    output: u.output_tokens,
    cached: u.cached_input_tokens ?? 0,
    created: Math.floor(view.created_at),
  };
}
