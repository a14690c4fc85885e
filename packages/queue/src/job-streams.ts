import { z } from "zod";
import type { Redis } from "ioredis";
import { JobEvents } from "./job-events";
import type { Keys } from "./keys";

/**
 * A streamed job's answer, relayed from the worker to whichever API process serves the client:
 * one Redis stream per job (bounded, expiring) with its pieces of text in order, then one end
 * or error entry; a pub/sub message per entry wakes the readers, who read from where they are
 * (so a reader that comes late, or comes back with Last-Event-ID, misses nothing).
 */
export type StreamEntry =
  | { id: string; kind: "delta"; text: string }
  | { id: string; kind: "end"; data: StreamEnd }
  | { id: string; kind: "error"; data: StreamFailure };

export const streamEndSchema = z.object({
  finish_reason: z.string(),
  provider: z.string(),
  model: z.string(),
  usage: z.object({
    input_tokens: z.number(),
    output_tokens: z.number(),
    cached_input_tokens: z.number().optional(),
    cost_usd: z.number().optional(),
  }),
});
export type StreamEnd = z.infer<typeof streamEndSchema>;
export const streamFailureSchema = z.object({ status: z.string(), type: z.string(), message: z.string() });
export type StreamFailure = z.infer<typeof streamFailureSchema>;

/** Entries kept per job at most (a piece is usually a word or a few). */
export const STREAM_MAX_ENTRIES = 20_000;

const rowsSchema = z.array(z.tuple([z.string(), z.array(z.string())]));

export class JobStreams {
  constructor(
    private readonly redis: Redis,
    private readonly keys: Keys,
    private readonly ttlMs: number,
  ) {}

  /** Appends one entry; the write and the wake-up go out together, in order with earlier ones. */
  append(jobId: string, kind: "delta" | "end" | "error", payload: string): Promise<unknown> {
    const key = this.keys.jobStream(jobId);
    return this.redis
      .pipeline()
      .xadd(key, "MAXLEN", "~", STREAM_MAX_ENTRIES, "*", "k", kind, "d", payload)
      .pexpire(key, this.ttlMs)
      .publish(this.keys.jobStreamEvents(jobId), `${jobId} ${kind}`)
      .exec();
  }

  /** Entries after `afterId` ("0": from the start), at most `count`. */
  async read(jobId: string, afterId: string, count = 1000): Promise<StreamEntry[]> {
    const rows = rowsSchema.parse(
      await this.redis.xrange(this.keys.jobStream(jobId), `(${afterId}`, "+", "COUNT", count),
    );
    const out: StreamEntry[] = [];
    for (const [id, fields] of rows) {
      const f: Record<string, string> = {};
      for (let i = 0; i + 1 < fields.length; i += 2) f[fields[i] ?? ""] = fields[i + 1] ?? "";
      const d = f.d ?? "";
      if (f.k === "delta") out.push({ id, kind: "delta", text: d });
      else if (f.k === "end") out.push({ id, kind: "end", data: streamEndSchema.parse(JSON.parse(d)) });
      else if (f.k === "error")
        out.push({ id, kind: "error", data: streamFailureSchema.parse(JSON.parse(d)) });
    }
    return out;
  }

  async exists(jobId: string): Promise<boolean> {
    return (await this.redis.exists(this.keys.jobStream(jobId))) === 1;
  }
}

/** The wake-ups of streamed jobs' readers: a subscription per job followed in this process. */
export function streamEvents(subscriber: Redis, keys: Keys): JobEvents {
  return new JobEvents(subscriber, (jobId) => keys.jobStreamEvents(jobId));
}
