import { z } from "zod";
import {
  attemptSchema,
  CorruptRecordError,
  isTerminal,
  JOB_STATUSES,
  PRIORITIES,
  jobErrorSchema,
  jobResultSchema,
  usageSchema,
  type Attempt,
  type JobError,
  type JobResult,
  type JobStatus,
  type JobView,
  type Priority,
  type Usage,
} from "@switchyard/core";
import type { Redis } from "ioredis";
import { Keys } from "./keys";
import createJobLua from "./lua/create-job.lua";
import fairLibLua from "./lua/fair-lib.lua";
import beginLua from "./lua/begin.lua";
import { LuaLibrary, type LuaMode } from "./lua-library";
import releaseClaimLua from "./lua/release-claim.lua";
import transitionLua from "./lua/transition.lua";
import requestCancelLua from "./lua/request-cancel.lua";

/**
 * Job records: the public view of each job (status, times, result), one Redis hash per job,
 * separate from BullMQ's own job data so that cancelled and expired are first-class statuses
 * and results outlive Bull Board's bounded history. Every record has a TTL.
 */
/** W3C trace-context traceparent: version-traceid-spanid-flags. */
const TRACEPARENT = /^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$/;

export interface NewJobRecord {
  id: string;
  tenantId: string;
  queue: string;
  model: string;
  priority: Priority;
  createdAt: number;
  metadata?: Record<string, string | number | boolean | null>;
  traceId: string;
  /** The W3C traceparent of the submission (tracing on): its webhook deliveries continue that trace. */
  traceparent?: string | undefined;
  /** The job's own webhook target (signed with the tenant's secret). */
  webhookUrl?: string;
  /** Submitted by a drop-in endpoint that waits for it: the tenant's webhook endpoints stay quiet. */
  sync?: boolean;
  /** Its answer is relayed piece by piece through its stream (GET /v1/jobs/:id/stream). */
  stream?: boolean;
  /** A line of this batch (its hash key): the job's end counts in the batch's counters. */
  batchKey?: string;
}

/**
 * What a submission is checked against before its record is written (create-job.lua): its
 * tier's and tenant's bounds (undefined: none), its tenant's quota, and what it reserves.
 */
export interface AdmissionCheck {
  tier: string;
  tenantId: string;
  /** 0 high, 1 normal, 2 low. */
  priorityRank: number;
  tenantWeight: number;
  tierMaxWaiting?: number | undefined;
  tierMaxWaitMs?: number | undefined;
  tenantMaxWaiting?: number | undefined;
  tenantMaxWaitMs?: number | undefined;
  /** Degrade the job when its estimated wait is over this. */
  degradeOverMs?: number | undefined;
  quota: {
    requestsPerDay?: number | undefined;
    tokensPerDay?: number | undefined;
    nanoUsdPerDay?: number | undefined;
    nanoUsdPerMonth?: number | undefined;
  };
  /** What the job reserves of the quota, as routed and as degraded. */
  estimate: Spend;
  degradedEstimate?: Spend | undefined;
  /** Where a degraded job goes instead (admission.<tier>.degrade). */
  degradeTo?: { model: string; max_tokens_cap?: number | undefined } | undefined;
  /** The UTC day and month it is counted in (dayPeriod, monthPeriod). */
  day: string;
  month: string;
}

export interface Spend {
  tokens: number;
  nanoUsd: number;
}

/** Which admission bound refused a submission. */
export type AdmissionBound =
  "tier_max_waiting" | "tier_max_wait_seconds" | "tenant_max_waiting" | "tenant_max_wait_seconds";
export type QuotaName = "requests_per_day" | "tokens_per_day" | "usd_per_day" | "usd_per_month";

export type CreateOutcome =
  /** listed: the job went into the fair queue with its record (asked for, and not degraded). */
  | { kind: "created"; estimatedWaitMs: number | null; degraded: boolean; listed: boolean }
  | { kind: "claimed"; claimedBy: string }
  | { kind: "refused"; bound: AdmissionBound; retryAfterMs: number; estimatedWaitMs: number | null }
  | { kind: "over_quota"; quota: QuotaName };

const DAY_MS = 86_400_000;

/**
 * The submission's script as a function library (lua-library.ts): the fair queue's listing
 * functions it shares with fair-queue.lua are made once, not at every submission.
 */
const CREATE_JOB_PROGRAM = {
  family: "sy_create_job",
  shared: `${fairLibLua}\n${beginLua}`,
  bodies: [createJobLua],
};
/** The last day asked about and its names: every submission asks, and formatting a date costs. */
let periods = { day: NaN, dayName: "", monthName: "" };
function periodsOf(at: number): typeof periods {
  const day = Math.floor(at / DAY_MS);
  if (day !== periods.day) {
    const iso = new Date(day * DAY_MS).toISOString();
    periods = {
      day,
      dayName: `d${iso.slice(0, 10).replace(/-/g, "")}`,
      monthName: `m${iso.slice(0, 7).replace(/-/g, "")}`,
    };
  }
  return periods;
}

/** The usage counters' period names (Keys.usage) of a UTC day (dyyyymmdd) and month (myyyymm). */
export const dayPeriod = (at: number): string => periodsOf(at).dayName;
export const monthPeriod = (at: number): string => periodsOf(at).monthName;

/** Admission with no bound and no quota (tools and tests that write records directly). */
export function admitAlways(tenantId: string, tier = "paid", at = Date.now()): AdmissionCheck {
  return {
    tier,
    tenantId,
    priorityRank: 1,
    tenantWeight: 1,
    quota: {},
    estimate: { tokens: 0, nanoUsd: 0 },
    day: dayPeriod(at),
    month: monthPeriod(at),
  };
}

/** Usage counters are kept this long (one hash per tenant per day and per month). */
export const USAGE_RETENTION_DAYS = 400;

/**
 * Listing a new job in the fair queue with its record (create-job.lua): its BullMQ job must be
 * parked in its queue already. The tier and tenant, queue and priority come from the record and
 * the admission check.
 */
export interface Listing {
  /** BullMQ's key prefix (the queue prefix): the listing wakes a worker on the queue's marker. */
  bullPrefix: string;
  cost: number;
  tierWeight: number;
  /** The BullMQ job to park with the listing (JobProducer.parkable); absent: parked already. */
  park?: ParkedJob;
}

/** A BullMQ job as BullMQ's own add would store it, parked in its queue's delayed set. */
export interface ParkedJob {
  name: string;
  /** The job's data, as JSON. */
  data: string;
  /** Its options, as JSON (BullMQ's stored form). */
  opts: string;
  /** When it was added, ms. */
  timestamp: number;
  /** How long it stays parked, ms (> 0). */
  delay: number;
}

/** What a job really spent upstream, settled against its reservation when it ends. */
export interface Spent {
  usage: Usage;
  /** "provider/model" that served it. */
  label: string;
}

export interface JobRecord {
  view: JobView;
  tenantId: string;
  queue: string;
  cancelRequested: boolean;
  webhookUrl?: string;
  /** Submitted with streaming: its answer is in its stream. */
  streamed: boolean;
  /** The submission's trace context, when it was traced. */
  traceparent?: string;
}

export interface TransitionOutcome {
  applied: boolean;
  /** False when the record is gone (expired retention or never written). */
  exists: boolean;
  status: string;
  cancelRequested: boolean;
  /** The attempt history as it was before this transition (the runner appends to it). */
  attemptLog: Attempt[];
}

export interface TransitionFields {
  started_at?: number;
  finished_at?: number;
  attempts?: number;
  result?: JobResult;
  /** null removes an error left by an earlier attempt. */
  error?: JobError | null;
  usage?: Usage;
  /** The attempt history; GET shows it as result.attempts or error.attempts. */
  attempt_log?: Attempt[];
}

/** { applied (1|0|-1), status, cancel_requested, attempt_log } as the scripts return them. */
const luaReplySchema = z.tuple([z.number().int(), z.string()], z.string());

/** A transition's answer (transition.lua's, or the running mark of a pick: fair-queue.lua). */
export function transitionOutcome(reply: unknown): TransitionOutcome {
  const [applied, after, cancel, log] = luaReplySchema.parse(reply);
  return {
    applied: applied === 1,
    exists: applied !== -1,
    status: after,
    cancelRequested: cancel === "1",
    attemptLog: parseJson(log, (v) => attemptLogSchema.parse(v)) ?? [],
  };
}

/** A transition.lua call: its three keys (record, outbox, tenants with endpoints) and its arguments. */
export interface TransitionCall {
  keys: string[];
  args: (string | number)[];
}

/** Terminal events waiting for fan-out; a safety cap, far above any healthy backlog. */
const OUTBOX_CAP = 1_000_000;

/** An Idempotency-Key claimed in the same step as the record is written. */
export interface IdempotencyClaim {
  key: string;
  value: string;
  ttlMs: number;
}

interface StoreCommands {
  syReleaseClaim(idem: string, value: string): Promise<unknown>;
  syTransition(key: string, outbox: string, tenants: string, ...args: (string | number)[]): Promise<unknown>;
  syRequestCancel(key: string, now: number): Promise<unknown>;
}

const parseJson = <T>(raw: string | undefined, parse: (v: unknown) => T): T | undefined => {
  if (!raw) return undefined;
  try {
    return parse(JSON.parse(raw));
  } catch {
    return undefined;
  }
};

const attemptLogSchema = attemptSchema.array();
const createReplySchema = z.union([
  z.tuple([z.literal(1), z.number(), z.number(), z.number()]),
  z.tuple([z.literal(0), z.string()]),
  z.tuple([
    z.literal(2),
    z.enum(["tier_max_waiting", "tier_max_wait_seconds", "tenant_max_waiting", "tenant_max_wait_seconds"]),
    z.number(),
    z.number(),
  ]),
  z.tuple([z.literal(3), z.enum(["requests_per_day", "tokens_per_day", "usd_per_day", "usd_per_month"])]),
]);
const degradedToSchema = z.object({ model: z.string(), max_tokens_cap: z.number().int().optional() });
/** ARGV[30..36] of create-job.lua: the BullMQ job it parks, or nothing to park. */
const parkArgs = (p: ParkedJob | undefined): (string | number)[] =>
  p
    ? ["1", p.name, p.data, p.opts, p.timestamp, p.delay, p.timestamp + p.delay]
    : ["", "", "", "", "", "", ""];

const orNone = (n: number | undefined): number => (n === undefined ? -1 : Math.max(0, Math.round(n)));
const statusSchema = z.enum(JOB_STATUSES);
const prioritySchema = z.enum(PRIORITIES);
const metadataSchema = z.record(z.string(), z.union([z.string(), z.number(), z.boolean(), z.null()]));
/** Whole numbers written by us; anything else in the field is corruption. */
const countSchema = z.coerce.number().int().min(0);
const msSchema = z.coerce.number().finite().min(0);

export class JobStore {
  private readonly redis: Redis & StoreCommands;
  private readonly createJob: LuaLibrary;

  /** luaMode "script": create-job runs as an EVAL script even where Redis has functions (tests). */
  constructor(
    redis: Redis,
    readonly keys: Keys,
    luaMode?: LuaMode,
  ) {
    if (!("syTransition" in redis)) {
      redis.defineCommand("syReleaseClaim", { numberOfKeys: 1, lua: releaseClaimLua });
      redis.defineCommand("syTransition", { numberOfKeys: 3, lua: transitionLua });
      redis.defineCommand("syRequestCancel", { numberOfKeys: 1, lua: requestCancelLua });
    }
    this.redis = redis as Redis & StoreCommands;
    this.createJob = new LuaLibrary(redis, CREATE_JOB_PROGRAM, keys.luaLibraries(), luaMode);
  }

  /** How Redis runs create-job (see LuaLibrary). */
  get luaMode(): LuaMode {
    return this.createJob.mode;
  }

  /**
   * Admits and writes a new record in one atomic step: with `idem`, claims the Idempotency-Key
   * (or writes nothing and says which record value holds it already); checks the admission
   * bounds and the quota (or writes nothing and says which refused); reserves the estimate.
   */
  async create(
    rec: NewJobRecord,
    ttlMs: number,
    idem: IdempotencyClaim | undefined,
    adm: AdmissionCheck,
    now?: number,
    listing?: Listing,
  ): Promise<CreateOutcome> {
    const key = this.keys.job(rec.id);
    // The script writes the record's tenant from the admission's (a job is admitted as its own).
    if (rec.tenantId !== adm.tenantId) throw new Error(`job ${rec.id} is admitted as another tenant`);
    // The optional fields as field, value pairs; the rest are create-job.lua's ARGV[37..41].
    const fields: string[] = [];
    if (rec.metadata) fields.push("metadata", JSON.stringify(rec.metadata));
    if (rec.webhookUrl) fields.push("webhook_url", rec.webhookUrl);
    if (rec.traceparent) fields.push("traceparent", rec.traceparent);
    if (rec.sync) fields.push("sync", "1");
    if (rec.stream) fields.push("stream", "1");
    if (rec.batchKey) fields.push("batch", rec.batchKey);
    const fq = this.keys.fairQueue;
    const degraded = adm.degradedEstimate ?? adm.estimate;
    const reply = await this.createJob.call(
      [
        key,
        idem?.key ?? key,
        fq.state,
        this.keys.fairLane(adm.tenantId),
        this.keys.fairTier(adm.tier),
        this.keys.usage(adm.tenantId, adm.day),
        this.keys.usage(adm.tenantId, adm.month),
        fq.tiers,
        fq.meta,
      ],
      [
        ttlMs,
        idem?.ttlMs ?? 0,
        idem?.value ?? "",
        adm.tier,
        adm.tenantId,
        adm.priorityRank,
        adm.tenantWeight,
        orNone(adm.tierMaxWaiting),
        orNone(adm.tierMaxWaitMs),
        orNone(adm.tenantMaxWaiting),
        orNone(adm.tenantMaxWaitMs),
        orNone(adm.degradeOverMs),
        orNone(adm.quota.requestsPerDay),
        orNone(adm.quota.tokensPerDay),
        orNone(adm.quota.nanoUsdPerDay),
        orNone(adm.quota.nanoUsdPerMonth),
        Math.round(adm.estimate.tokens),
        Math.round(adm.estimate.nanoUsd),
        Math.round(degraded.tokens),
        Math.round(degraded.nanoUsd),
        USAGE_RETENTION_DAYS * 86_400_000,
        now ?? "",
        adm.degradeTo ? JSON.stringify(adm.degradeTo) : "",
        listing ? "1" : "0",
        fq.prefix,
        listing?.bullPrefix ?? "",
        rec.queue,
        Math.max(listing?.cost ?? 1, 1e-6),
        listing?.tierWeight ?? 1,
        ...parkArgs(listing?.park),
        rec.id,
        rec.model,
        rec.priority,
        String(rec.createdAt),
        rec.traceId,
        ...fields,
      ],
    );
    const r = createReplySchema.parse(reply);
    switch (r[0]) {
      case 1:
        return {
          kind: "created",
          estimatedWaitMs: r[1] < 0 ? null : r[1],
          degraded: r[2] === 1,
          listed: r[3] === 1,
        };
      case 0:
        return { kind: "claimed", claimedBy: r[1] };
      case 2:
        return { kind: "refused", bound: r[1], retryAfterMs: r[2], estimatedWaitMs: r[3] < 0 ? null : r[3] };
      case 3:
        return { kind: "over_quota", quota: r[1] };
    }
  }

  /** Releases an Idempotency-Key claim if it still holds `value`; true when released. */
  async releaseClaim(key: string, value: string): Promise<boolean> {
    return (await this.redis.syReleaseClaim(key, value)) === 1;
  }

  async remove(jobId: string): Promise<void> {
    await this.redis.del(this.keys.job(jobId));
  }

  async get(jobId: string): Promise<JobRecord | undefined> {
    const h = await this.redis.hgetall(this.keys.job(jobId));
    if (!h.id || !h.status || !h.tenant) return undefined;
    const field = <T>(name: string, schema: z.ZodType<T>, raw: string | undefined): T => {
      const r = schema.safeParse(raw);
      if (!r.success) throw new CorruptRecordError(jobId, name);
      return r.data;
    };
    const view: JobView = {
      id: h.id,
      object: "job",
      status: field("status", statusSchema, h.status),
      model: h.model ?? "",
      priority: field("priority", prioritySchema, h.priority ?? "normal"),
      attempts: field("attempts", countSchema, h.attempts ?? "0"),
      created_at: field("created_at", msSchema, h.created_at) / 1000,
    };
    if (h.started_at) view.started_at = field("started_at", msSchema, h.started_at) / 1000;
    if (h.finished_at) view.finished_at = field("finished_at", msSchema, h.finished_at) / 1000;
    const result = parseJson(h.result, (v) => jobResultSchema.parse(v));
    const error = parseJson(h.error, (v) => jobErrorSchema.parse(v));
    const usage = parseJson(h.usage, (v) => usageSchema.parse(v));
    const metadata = parseJson(h.metadata, (v) => metadataSchema.parse(v));
    const attempts = parseJson(h.attempt_log, (v) => attemptLogSchema.parse(v));
    if (result) view.result = attempts ? { ...result, attempts } : result;
    if (error) view.error = attempts && !result ? { ...error, attempts } : error;
    if (usage) view.usage = usage;
    if (metadata) view.metadata = metadata;
    const degradedTo = parseJson(h.degraded, (v) => degradedToSchema.parse(v));
    if (degradedTo) {
      view.degraded = {
        from: view.model,
        to: degradedTo.model,
        estimated_wait_seconds: field("degraded_ms", msSchema, h.degraded_ms ?? "0") / 1000,
        ...(degradedTo.max_tokens_cap !== undefined ? { max_tokens_cap: degradedTo.max_tokens_cap } : {}),
      };
    }
    const cancelRequested = h.cancel_requested === "1";
    if (cancelRequested && !isTerminal(view.status)) view.cancel_requested = true;
    return {
      view,
      tenantId: h.tenant,
      queue: h.queue ?? "",
      cancelRequested,
      streamed: h.stream === "1",
      ...(h.webhook_url ? { webhookUrl: h.webhook_url } : {}),
      ...(h.traceparent && TRACEPARENT.test(h.traceparent) ? { traceparent: h.traceparent } : {}),
    };
  }

  /**
   * Moves a record to `status` unless it is final already; publishes the change. A final status
   * settles the usage reserved at admission with `spent` (nothing spent when absent).
   */
  async transition(
    jobId: string,
    status: JobStatus,
    fields: TransitionFields,
    ttlMs = 0,
    spent?: Spent,
  ): Promise<TransitionOutcome> {
    const { keys, args } = this.transitionCall(jobId, status, fields, ttlMs, spent);
    return this.runTransition(keys, args);
  }

  /** Runs a transition.lua call built by transitionCall. */
  async runTransition(
    keys: readonly string[],
    args: readonly (string | number)[],
  ): Promise<TransitionOutcome> {
    const [record = "", outbox = "", tenants = ""] = keys;
    return transitionOutcome(await this.redis.syTransition(record, outbox, tenants, ...args));
  }

  /**
   * transition.lua's keys and arguments for a move of `jobId` to `status` (see transition()),
   * for a caller that runs it inside another script call (bullmq-functions.ts, FinishFold).
   */
  transitionCall(
    jobId: string,
    status: JobStatus,
    fields: TransitionFields,
    ttlMs = 0,
    spent?: Spent,
  ): TransitionCall {
    const u = spent?.usage;
    const settle = u
      ? `${u.input_tokens}|${u.output_tokens}|${u.cached_input_tokens ?? 0}|${Math.round((u.cost_usd ?? 0) * 1e9)}|${spent.label}`
      : "";
    const args: (string | number)[] = [status, ttlMs, this.keys.jobEventsPrefix, jobId, OUTBOX_CAP, settle];
    for (const [k, v] of Object.entries(fields)) {
      if (v === undefined) continue;
      args.push(k, v === null ? "" : typeof v === "object" ? JSON.stringify(v) : String(v));
    }
    return { keys: [this.keys.job(jobId), this.keys.webhookOutbox, this.keys.tenantsWithEndpoints], args };
  }

  async requestCancel(
    jobId: string,
    now = Date.now(),
  ): Promise<{ exists: boolean; applied: boolean; status: string }> {
    const [applied, status] = luaReplySchema.parse(
      await this.redis.syRequestCancel(this.keys.job(jobId), now),
    );
    return { exists: applied !== -1, applied: applied === 1, status };
  }
}
