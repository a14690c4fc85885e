import { z } from "zod";
import { chatMessageSchema, degradedSchema, PRIORITIES } from "./schemas";

/**
 * The BullMQ job payload: the queue contract between api (producer) and worker (consumer).
 * Validated at enqueue and again at dequeue, so a malformed job fails loudly, never half-runs.
 */
export const jobPayloadSchema = z
  .object({
    v: z.literal(1),
    job_id: z.string(),
    tenant_id: z.string(),
    tier: z.enum(["paid", "free"]),
    /** The alias the client asked for; the worker resolves it against config at run time. */
    model: z.string(),
    request: z.object({
      messages: z.array(chatMessageSchema).min(1),
      max_tokens: z.number().int().optional(),
      temperature: z.number().optional(),
      top_p: z.number().optional(),
      stop: z.union([z.string(), z.array(z.string())]).optional(),
      user: z.string().optional(),
    }),
    /** The client's route hint (rules aliases use it). */
    task: z.string().optional(),
    priority: z.enum(PRIORITIES),
    /** Epoch ms after which a job that has not started is expired instead of run. */
    start_deadline: z.number().int(),
    trace_id: z.string(),
    /** The request's cache directives: read (no-cache / "cache": false turn it off), write (no-store). */
    cache: z.object({ read: z.boolean(), write: z.boolean() }).strict().optional(),
    /** Admission degraded the job: `model` is the cheaper route, `from` what the client asked for. */
    degraded: degradedSchema.optional(),
    /** Stream the answer: the worker relays its pieces through the job's Redis stream. */
    stream: z.literal(true).optional(),
  })
  .strict();
export type JobPayload = z.infer<typeof jobPayloadSchema>;
