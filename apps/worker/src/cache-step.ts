import {
  cachePlan,
  type CachePlan,
  type JobError,
  type JobPayload,
  type JobResult,
  type ResolvedRoute,
  type SwitchyardConfig,
  type TenantConfig,
  type Usage,
} from "@switchyard/core";
import type { Logger } from "@switchyard/observability";
import { OpenAIEmbeddings } from "@switchyard/providers";
import {
  fairEntryOf,
  type AnswerCache,
  type CacheEntry,
  type FairEntry,
  type FairQueue,
} from "@switchyard/queue";
import { z } from "zod";
import type { WorkerMetrics } from "./metrics";
import type { RouteOutcome } from "./route-executor";

/**
 * The answer cache around a job's upstream call: before it, a stored answer (or a stored 400)
 * ends the job at once, and a job identical to one already calling upstream waits for that one
 * (single-flight, across workers); after it, a complete answer is stored, a 400 is remembered
 * briefly, and the jobs that waited are woken: they find the answer, or one of them leads anew.
 */
export type CacheDecision =
  /** Call upstream; `vector` is the prompt's embedding (semantic routes), stored with the answer. */
  | { kind: "proceed"; lead: boolean; vector?: Float32Array }
  /** `saved`: the upstream usage the cached answer had, which this hit did not spend again. */
  | { kind: "hit"; result: JobResult; tokensSaved: number; saved?: Usage | undefined; route: string }
  | { kind: "negative"; error: JobError }
  /**
   * Another job is calling upstream for the same key: park (at most waitMs), then `register`,
   * which asks the leader to wake this job when it ends.
   */
  | { kind: "follow"; waitMs: number; register: () => Promise<void> };

/** A follower as the leader needs it to wake it: its fair-queue listing. */
const followerSchema = z.object({
  jobId: z.string(),
  tier: z.string(),
  tenantId: z.string(),
  queue: z.string(),
  cost: z.number(),
  priority: z.enum(["high", "normal", "low"]),
  tierWeight: z.number(),
  tenantWeight: z.number(),
});

export class CacheStep {
  private readonly tenants: Map<string, TenantConfig>;
  private readonly timeouts: Map<string, number>;
  private readonly embedders = new Map<string, OpenAIEmbeddings>();

  constructor(
    private readonly config: SwitchyardConfig,
    private readonly cache: AnswerCache,
    private readonly fair: FairQueue,
    private readonly metrics: WorkerMetrics,
  ) {
    this.tenants = new Map(config.tenants.map((t) => [t.id, t]));
    this.timeouts = new Map(config.providers.map((p) => [p.id, p.timeout_ms]));
    for (const p of config.providers)
      if (p.type === "openai" || p.type === "openai-compatible")
        this.embedders.set(p.id, new OpenAIEmbeddings(p));
  }

  close(): Promise<void[]> {
    return Promise.all([...this.embedders.values()].map((e) => e.close()));
  }

  /** The prompt's embedding, or undefined when the embeddings provider fails (no semantic lookup then). */
  private async embed(plan: CachePlan, log: Logger): Promise<Float32Array | undefined> {
    const s = plan.semantic;
    const embedder = s && this.embedders.get(s.embedding.provider);
    if (!s || !embedder) return undefined;
    try {
      return await embedder.embed(s.embedding.model, s.text);
    } catch (err) {
      this.metrics.cacheEvents.inc({ route: plan.route, event: "embedding_error" });
      log.warn({ err: { message: (err as Error).message } }, "embedding the prompt failed; exact cache only");
      return undefined;
    }
  }

  plan(p: JobPayload, route: ResolvedRoute): CachePlan | undefined {
    return cachePlan(this.config, this.tenants.get(p.tenant_id), route, p);
  }

  /** How long a leader may hold its claim: every link's timeout once, and a margin. */
  private flightMs(route: ResolvedRoute): number {
    return route.links.reduce((ms, l) => ms + (this.timeouts.get(l.provider) ?? 60_000), 0) + 5_000;
  }

  async before(
    p: JobPayload,
    plan: CachePlan,
    route: ResolvedRoute,
    queue: string,
    createdAtMs: number,
    log: Logger,
  ): Promise<CacheDecision> {
    if (!plan.read) {
      const vector = plan.write ? await this.embed(plan, log) : undefined;
      return { kind: "proceed", lead: false, ...(vector ? { vector } : {}) };
    }
    const flightMs = this.flightMs(route);
    const begun = await this.cache.begin(plan, p.job_id, createdAtMs, flightMs);
    const now = Date.now();
    if (begun.kind === "hit") return this.hit(plan, begun.entry, "exact", createdAtMs, now);
    if (begun.kind === "negative") {
      this.metrics.cacheEvents.inc({ route: plan.route, event: "negative_hit" });
      return {
        kind: "negative",
        error: {
          ...begun.error,
          cache: { hit: true, kind: "negative", key_age_seconds: Math.max(0, (now - begun.storedAt) / 1000) },
        },
      };
    }
    const lead = begun.kind === "lead";
    let vector: Float32Array | undefined;
    if (plan.semantic) {
      vector = await this.embed(plan, log);
      const near = vector && (await this.cache.nearest(plan, vector));
      if (near) {
        // Answered by a similar prompt: the exact key's flight (if this job leads it) ends here.
        if (lead) await this.wake(await this.cache.release(plan.key, p.job_id));
        await this.cache.count("semantic_hits");
        return this.hit(plan, near.entry, "semantic", createdAtMs, now, near.similarity);
      }
    }
    if (lead) {
      this.metrics.cacheEvents.inc({ route: plan.route, event: "miss" });
      return { kind: "proceed", lead: true, ...(vector ? { vector } : {}) };
    }
    // Someone leads: wait for it, woken when it ends, at most as long as its claim can last.
    const ref = fairEntryOf(this.config, p, queue, this.tenants.get(p.tenant_id)?.weight);
    const leftMs = begun.leaderTtlMs || flightMs;
    return {
      kind: "follow",
      waitMs: leftMs + 250 + Math.round(Math.random() * 250),
      // Once parked: ask the leader to wake this job, or, if it has ended meanwhile, wake now.
      register: async () => {
        if (!(await this.cache.follow(plan.key, JSON.stringify(ref), leftMs + 5_000)))
          await this.fair.enqueue(ref);
      },
    };
  }

  private hit(
    plan: CachePlan,
    entry: CacheEntry,
    kind: "exact" | "semantic",
    createdAtMs: number,
    now: number,
    similarity?: number,
  ): CacheDecision {
    // Stored after this job was submitted: it waited for the identical job that made it.
    const coalesced = entry.stored_at > createdAtMs;
    this.metrics.cacheEvents.inc({
      route: plan.route,
      event: coalesced ? "coalesced" : kind === "semantic" ? "semantic_hit" : "hit",
    });
    const saved = (entry.usage?.input_tokens ?? 0) + (entry.usage?.output_tokens ?? 0);
    this.metrics.cacheTokensSaved.inc({ route: plan.route }, saved);
    return {
      kind: "hit",
      tokensSaved: saved,
      saved: entry.usage,
      route: plan.route,
      result: {
        ...entry.result,
        cache: {
          hit: true,
          kind,
          key_age_seconds: Math.max(0, (now - entry.stored_at) / 1000),
          ...(similarity !== undefined ? { similarity: Math.round(similarity * 10_000) / 10_000 } : {}),
          ...(coalesced ? { coalesced: true } : {}),
        },
      },
    };
  }

  /** After the upstream work of a job: store what can be stored, then end or keep the lead. */
  async after(
    p: JobPayload,
    plan: CachePlan,
    route: ResolvedRoute,
    lead: boolean,
    outcome: RouteOutcome,
    log: Logger,
    vector?: Float32Array,
  ): Promise<void> {
    try {
      if (plan.write && outcome.kind === "succeeded" && this.complete(p, outcome.result.finish_reason)) {
        const { usage, rateLimit: _r, ...result } = outcome.result;
        const view = route.name === p.model ? result : { ...result, route: route.name };
        // Storing ends the lead in the same step: the waiting jobs wake to the stored answer.
        const { stored, followers, evictedRoutes } = await this.cache.store(
          plan,
          p.tenant_id,
          view,
          usage,
          lead ? p.job_id : undefined,
        );
        for (const route of evictedRoutes) this.metrics.cacheEvents.inc({ route, event: "eviction" });
        if (stored) {
          this.metrics.cacheEvents.inc({ route: plan.route, event: "store" });
          if (vector) await this.cache.storeVector(plan, vector);
        }
        if (lead) return await this.wake(followers);
      }
      if (plan.write && outcome.kind === "failed" && outcome.error.kind === "client") {
        await this.cache.storeNegative(plan, {
          type: outcome.error.kind,
          message: outcome.error.message,
          provider: outcome.error.provider,
          model: outcome.error.model,
          ...(outcome.error.status !== undefined ? { status: outcome.error.status } : {}),
        });
        this.metrics.cacheEvents.inc({ route: plan.route, event: "negative_store" });
      }
      if (!lead) return;
      if (outcome.kind === "retry" || outcome.kind === "busy") {
        // The job comes back later: keep leading, so the others keep waiting for it.
        const delay = outcome.kind === "retry" ? outcome.delayMs : outcome.retryInMs;
        await this.cache.extend(plan.key, p.job_id, delay + this.flightMs(route));
        return;
      }
      await this.wake(await this.cache.release(plan.key, p.job_id));
    } catch (err) {
      // The answer itself is not lost over the cache's bookkeeping; waiting jobs wake at their bound.
      log.warn({ err: { message: (err as Error).message } }, "answer cache bookkeeping failed");
    }
  }

  /** Lists the waiting jobs in the fair queue at once (they are parked in BullMQ). */
  private async wake(refs: string[]): Promise<void> {
    for (const raw of refs) {
      let ref: FairEntry;
      try {
        ref = followerSchema.parse(JSON.parse(raw));
      } catch {
        continue; // a damaged entry: that job still wakes when its wait ends
      }
      await this.fair.enqueue(ref);
    }
  }

  /** Only complete answers are stored: stop, or length when the request set max_tokens. */
  private complete(p: JobPayload, finishReason: string): boolean {
    return finishReason === "stop" || (finishReason === "length" && p.request.max_tokens !== undefined);
  }
}
