import { randomBytes } from "node:crypto";
import { z } from "zod";
import { CorruptRecordError, type WebhooksConfig } from "@switchyard/core";
import type { Keys, Redis } from "@switchyard/queue";
import { JOB_URL_TARGET, WEBHOOK_EVENTS, type WebhookEvent } from "./events";
import createDeliveryLua from "./lua/create-delivery.lua";
import deleteEndpointLua from "./lua/delete-endpoint.lua";
import updateEndpointLua from "./lua/update-endpoint.lua";
import { newSecret } from "./signing";

/**
 * Webhook endpoints, tenant signing secrets and delivery records in Redis. Endpoints are
 * bounded by a count per tenant; delivery records expire (their TTL is renewed on each change,
 * long enough to cover the whole retry schedule plus the retention); delivery indexes keep the
 * newest N. Secrets are only ever returned by create and rotate, never by a read.
 */
export type EndpointStatus = "enabled" | "disabled";

export interface EndpointView {
  id: string;
  object: "webhook_endpoint";
  url: string;
  events: WebhookEvent[];
  description?: string;
  status: EndpointStatus;
  disabled_reason?: string;
  created_at: number;
  /** When deliveries started failing with no success since (Unix seconds). */
  failing_since?: number;
  /** While a rotated-out secret is still valid, deliveries carry both signatures until then. */
  previous_secret_expires_at?: number;
}

export interface Endpoint extends EndpointView {
  tenantId: string;
  /** Secrets to sign with now: the current one first, then a rotated-out one still in its grace. */
  secrets: string[];
  failingSinceMs?: number;
}

export const DELIVERY_STATUSES = ["pending", "succeeded", "failed"] as const;
export type DeliveryStatus = (typeof DELIVERY_STATUSES)[number];

const eventsSchema = z.array(z.enum(WEBHOOK_EVENTS));
const eventSchema = z.enum(WEBHOOK_EVENTS);
const deliveryStatusSchema = z.enum(DELIVERY_STATUSES);
const endpointStatusSchema = z.enum(["enabled", "disabled"]);
/** HGETALL's answer inside a pipeline: a hash (empty when the key is gone), or null on error. */
const hashSchema = z.record(z.string(), z.string()).nullable();

/** Parses one stored field; a value we never write is a reported error, not a silent default. */
function stored<T>(record: string, field: string, schema: z.ZodType<T>, raw: unknown): T {
  const r = schema.safeParse(raw);
  if (!r.success) throw new CorruptRecordError(record, field);
  return r.data;
}

export interface DeliveryView {
  id: string;
  object: "webhook_delivery";
  endpoint_id: string | null;
  /** The job's own webhook.url, for deliveries that are not to an endpoint. */
  url?: string;
  job_id: string;
  event_type: WebhookEvent;
  webhook_id: string;
  status: DeliveryStatus;
  attempts: number;
  created_at: number;
  last_attempt_at?: number;
  next_attempt_at?: number;
  response_status?: number;
  last_error?: string;
  replays?: number;
}

export interface Delivery extends DeliveryView {
  tenantId: string;
  body: string;
}

export interface NewDelivery {
  id: string;
  tenantId: string;
  /** An endpoint id, or JOB_URL_TARGET with `url`. */
  target: string;
  url?: string;
  jobId: string;
  event: WebhookEvent;
  msgId: string;
  body: string;
}

export interface SigningSecretView {
  object: "webhook_secret";
  created_at: number;
  previous_secret_expires_at?: number;
}

interface StoreCommands {
  syUpdateEndpoint(ep: string, ...args: string[]): Promise<string | number | null>;
  syCreateDelivery(
    rec: string,
    index: string,
    jobIndex: string,
    ...args: (string | number)[]
  ): Promise<number>;
  syDeleteEndpoint(
    ep: string,
    set: string,
    tenants: string,
    index: string,
    id: string,
    tenant: string,
  ): Promise<number>;
}

const sec = (ms: string | undefined): number | undefined => (ms ? Number(ms) / 1000 : undefined);
const num = (s: string | undefined): number | undefined =>
  s === undefined || s === "" ? undefined : Number(s);

/** The secrets valid at `now`: current, plus the previous one during its grace period. */
export function validSecrets(h: Record<string, string>, now: number): string[] {
  const out = h.secret ? [h.secret] : [];
  if (h.prev_secret && Number(h.prev_until ?? 0) > now) out.push(h.prev_secret);
  return out;
}

export class WebhookStore {
  private readonly redis: Redis & StoreCommands;

  constructor(
    redis: Redis,
    private readonly keys: Keys,
    private cfg: WebhooksConfig,
  ) {
    if (!("syDeleteEndpoint" in redis)) {
      redis.defineCommand("syDeleteEndpoint", { numberOfKeys: 4, lua: deleteEndpointLua });
      redis.defineCommand("syCreateDelivery", { numberOfKeys: 3, lua: createDeliveryLua });
      redis.defineCommand("syUpdateEndpoint", { numberOfKeys: 1, lua: updateEndpointLua });
    }
    this.redis = redis as Redis & StoreCommands;
  }
  /** New webhook settings (a config reload) for what is written from now on. */
  configure(cfg: WebhooksConfig): void {
    this.cfg = cfg;
  }

  /** How long a delivery record lives after its last change: the whole schedule plus retention. */
  get deliveryTtlMs(): number {
    const schedule = this.cfg.retry_schedule_seconds.reduce((a, b) => a + b, 0) * (1 + this.cfg.jitter);
    return Math.round(schedule * 1000 + this.cfg.delivery_retention_hours * 3_600_000);
  }

  // ---- endpoints

  async countEndpoints(tenantId: string): Promise<number> {
    return this.redis.scard(this.keys.tenantEndpoints(tenantId));
  }

  async createEndpoint(
    tenantId: string,
    input: { url: string; events: WebhookEvent[]; description?: string },
    now = Date.now(),
  ): Promise<{ endpoint: EndpointView; secret: string }> {
    const id = `ep_${randomBytes(10).toString("hex")}`;
    const secret = newSecret();
    const fields: Record<string, string> = {
      id,
      tenant: tenantId,
      url: input.url,
      events: JSON.stringify(input.events),
      status: "enabled",
      created_at: String(now),
      secret,
    };
    if (input.description) fields.description = input.description;
    await this.redis
      .multi()
      .hset(this.keys.webhookEndpoint(id), fields)
      .sadd(this.keys.tenantEndpoints(tenantId), id)
      .sadd(this.keys.tenantsWithEndpoints, tenantId)
      .exec();
    const endpoint = this.toEndpoint(fields, now);
    return { endpoint: this.view(endpoint), secret };
  }

  /** The endpoint when it exists and belongs to the tenant (no tenant given: any owner). */
  async endpoint(id: string, tenantId?: string, now = Date.now()): Promise<Endpoint | undefined> {
    const h = await this.redis.hgetall(this.keys.webhookEndpoint(id));
    if (!h.id || (tenantId !== undefined && h.tenant !== tenantId)) return undefined;
    return this.toEndpoint(h, now);
  }

  async endpoints(tenantId: string, now = Date.now()): Promise<Endpoint[]> {
    const ids = (await this.redis.smembers(this.keys.tenantEndpoints(tenantId))).sort();
    const pipe = this.redis.pipeline();
    for (const id of ids) pipe.hgetall(this.keys.webhookEndpoint(id));
    const rows = (await pipe.exec()) ?? [];
    const out: Endpoint[] = [];
    for (const [, h] of rows) {
      const rec = stored("endpoint", "(hash)", hashSchema, h);
      if (rec?.id && rec.tenant === tenantId) out.push(this.toEndpoint(rec, now));
    }
    return out.sort((a, b) => a.created_at - b.created_at);
  }

  async deleteEndpoint(tenantId: string, id: string): Promise<boolean> {
    const done = await this.redis.syDeleteEndpoint(
      this.keys.webhookEndpoint(id),
      this.keys.tenantEndpoints(tenantId),
      this.keys.tenantsWithEndpoints,
      this.keys.endpointDeliveries(id),
      id,
      tenantId,
    );
    return done === 1;
  }

  /** A new secret; the old one stays valid (and is signed with too) for graceMs. */
  async rotateEndpointSecret(id: string, graceMs: number, now = Date.now()): Promise<string> {
    return this.rotate(this.keys.webhookEndpoint(id), graceMs, now);
  }

  async setEndpointStatus(
    id: string,
    status: EndpointStatus,
    reason?: string,
    now = Date.now(),
  ): Promise<void> {
    const fields =
      status === "enabled"
        ? ["status", "enabled", "disabled_reason", "", "disabled_at", "", "failing_since", ""]
        : ["status", status, "disabled_reason", reason ?? "disabled", "disabled_at", String(now)];
    await this.redis.syUpdateEndpoint(this.keys.webhookEndpoint(id), "set", ...fields);
  }

  /** Notes a failed attempt; returns since when the endpoint has been failing (ms). */
  async noteFailure(id: string, now = Date.now()): Promise<number> {
    const since = await this.redis.syUpdateEndpoint(this.keys.webhookEndpoint(id), "failing", String(now));
    return since === null ? now : Number(since);
  }

  async noteSuccess(id: string, now = Date.now()): Promise<void> {
    await this.redis.syUpdateEndpoint(
      this.keys.webhookEndpoint(id),
      "set",
      "failing_since",
      "",
      "last_success_at",
      String(now),
    );
  }

  // ---- the tenant's own signing secret (for jobs with their own webhook.url)

  async tenantSecrets(tenantId: string, now = Date.now()): Promise<string[]> {
    return validSecrets(await this.redis.hgetall(this.keys.tenantSigningSecret(tenantId)), now);
  }

  async tenantSecretView(tenantId: string, now = Date.now()): Promise<SigningSecretView | undefined> {
    const h = await this.redis.hgetall(this.keys.tenantSigningSecret(tenantId));
    if (!h.secret) return undefined;
    return this.secretView(h, now);
  }

  /** Creates the tenant's secret, or rotates it keeping the old one valid for graceMs. */
  async rotateTenantSecret(
    tenantId: string,
    graceMs: number,
    now = Date.now(),
  ): Promise<{ secret: string; view: SigningSecretView }> {
    const key = this.keys.tenantSigningSecret(tenantId);
    const secret = await this.rotate(key, graceMs, now);
    return { secret, view: this.secretView(await this.redis.hgetall(key), now) };
  }

  private async rotate(key: string, graceMs: number, now: number): Promise<string> {
    const secret = newSecret();
    const old = await this.redis.hget(key, "secret");
    const fields: Record<string, string> = { secret, rotated_at: String(now) };
    if (!(await this.redis.hexists(key, "created_at"))) fields.created_at = String(now);
    const m = this.redis.multi().hset(key, fields);
    if (old && graceMs > 0) m.hset(key, { prev_secret: old, prev_until: String(now + graceMs) });
    else m.hdel(key, "prev_secret", "prev_until");
    await m.exec();
    return secret;
  }

  private secretView(h: Record<string, string>, now: number): SigningSecretView {
    const view: SigningSecretView = {
      object: "webhook_secret",
      created_at: Number(h.created_at ?? now) / 1000,
    };
    if (h.prev_secret && Number(h.prev_until ?? 0) > now)
      view.previous_secret_expires_at = Number(h.prev_until) / 1000;
    return view;
  }

  private toEndpoint(h: Record<string, string>, now: number): Endpoint {
    const name = `endpoint ${h.id ?? "?"}`;
    let json: unknown;
    try {
      json = JSON.parse(h.events ?? "");
    } catch {
      throw new CorruptRecordError(name, "events");
    }
    const events: WebhookEvent[] = stored(name, "events", eventsSchema, json);
    const ep: Endpoint = {
      id: h.id ?? "",
      object: "webhook_endpoint",
      url: h.url ?? "",
      events,
      status: stored(name, "status", endpointStatusSchema, h.status ?? "enabled"),
      created_at: Number(h.created_at) / 1000,
      tenantId: h.tenant ?? "",
      secrets: validSecrets(h, now),
    };
    if (h.description) ep.description = h.description;
    if (h.disabled_reason && ep.status === "disabled") ep.disabled_reason = h.disabled_reason;
    if (h.failing_since) {
      ep.failingSinceMs = Number(h.failing_since);
      ep.failing_since = ep.failingSinceMs / 1000;
    }
    if (h.prev_secret && Number(h.prev_until ?? 0) > now)
      ep.previous_secret_expires_at = Number(h.prev_until) / 1000;
    return ep;
  }

  /** The public view: no tenant id, never a secret. */
  view(ep: Endpoint): EndpointView {
    const { tenantId: _t, secrets: _s, failingSinceMs: _f, ...view } = ep;
    return view;
  }

  // ---- deliveries

  /** Writes a new delivery record (NX: a repeated fan-out leaves the first one alone). */
  async createDelivery(d: NewDelivery, now = Date.now()): Promise<boolean> {
    const fields: Record<string, string> = {
      id: d.id,
      tenant: d.tenantId,
      target: d.target,
      job: d.jobId,
      event: d.event,
      msg_id: d.msgId,
      body: d.body,
      status: "pending",
      attempts: "0",
      created_at: String(now),
    };
    if (d.url) fields.url = d.url;
    const created = await this.redis.syCreateDelivery(
      this.keys.webhookDelivery(d.id),
      this.indexKey(d.tenantId, d.target),
      this.keys.jobDeliveries(d.jobId),
      this.deliveryTtlMs,
      now,
      d.id,
      this.cfg.max_deliveries_per_endpoint,
      ...Object.entries(fields).flat(),
    );
    return created === 1;
  }

  /** Index of an endpoint's deliveries; deliveries to jobs' own URLs are indexed per tenant. */
  private indexKey(tenantId: string, target: string): string {
    return this.keys.endpointDeliveries(target === JOB_URL_TARGET ? `${JOB_URL_TARGET}:${tenantId}` : target);
  }

  async delivery(id: string, tenantId?: string): Promise<Delivery | undefined> {
    const h = await this.redis.hgetall(this.keys.webhookDelivery(id));
    if (!h.id || (tenantId !== undefined && h.tenant !== tenantId)) return undefined;
    return toDelivery(h);
  }

  async updateDelivery(
    id: string,
    fields: Partial<
      Record<
        "status" | "attempts" | "last_attempt_at" | "next_attempt_at" | "response_status" | "last_error",
        string | number | null
      >
    >,
  ): Promise<void> {
    const key = this.keys.webhookDelivery(id);
    const set: Record<string, string> = {};
    const del: string[] = [];
    for (const [k, v] of Object.entries(fields)) {
      if (v === undefined) continue;
      if (v === null) del.push(k);
      else set[k] = String(v);
    }
    const m = this.redis.multi();
    if (Object.keys(set).length) m.hset(key, set);
    if (del.length) m.hdel(key, ...del);
    await m.pexpire(key, this.deliveryTtlMs).exec();
  }

  async incrementReplays(id: string): Promise<number> {
    const key = this.keys.webhookDelivery(id);
    const [r] =
      (await this.redis.multi().hincrby(key, "replays", 1).pexpire(key, this.deliveryTtlMs).exec()) ?? [];
    return Number(r?.[1] ?? 1);
  }

  /** Newest first, optionally only one status. */
  async listDeliveries(
    tenantId: string,
    target: string,
    opts: { status?: DeliveryStatus; limit: number },
  ): Promise<DeliveryView[]> {
    const ids = await this.redis.zrevrange(this.indexKey(tenantId, target), 0, -1);
    return this.collect(ids, tenantId, opts);
  }

  async jobDeliveries(tenantId: string, jobId: string): Promise<DeliveryView[]> {
    const ids = await this.redis.smembers(this.keys.jobDeliveries(jobId));
    const list = await this.collect(ids, tenantId, { limit: 1_000 });
    return list.sort((a, b) => a.created_at - b.created_at || a.id.localeCompare(b.id));
  }

  private async collect(
    ids: string[],
    tenantId: string,
    opts: { status?: DeliveryStatus; limit: number },
  ): Promise<DeliveryView[]> {
    const out: DeliveryView[] = [];
    for (let i = 0; i < ids.length && out.length < opts.limit; i += 100) {
      const pipe = this.redis.pipeline();
      for (const id of ids.slice(i, i + 100)) pipe.hgetall(this.keys.webhookDelivery(id));
      for (const [, h] of (await pipe.exec()) ?? []) {
        const rec = stored("delivery", "(hash)", hashSchema, h);
        if (!rec?.id || rec.tenant !== tenantId) continue;
        const d = deliveryView(toDelivery(rec));
        if (opts.status && d.status !== opts.status) continue;
        out.push(d);
        if (out.length >= opts.limit) break;
      }
    }
    return out;
  }
}

function toDelivery(h: Record<string, string>): Delivery {
  const name = `delivery ${h.id ?? "?"}`;
  const d: Delivery = {
    id: h.id ?? "",
    object: "webhook_delivery",
    endpoint_id: h.target && h.target !== JOB_URL_TARGET ? h.target : null,
    job_id: h.job ?? "",
    event_type: stored(name, "event", eventSchema, h.event),
    webhook_id: h.msg_id ?? "",
    status: stored(name, "status", deliveryStatusSchema, h.status),
    attempts: Number(h.attempts ?? 0),
    created_at: Number(h.created_at) / 1000,
    tenantId: h.tenant ?? "",
    body: h.body ?? "",
  };
  if (h.url) d.url = h.url;
  const last = sec(h.last_attempt_at);
  const next = sec(h.next_attempt_at);
  const code = num(h.response_status);
  if (last !== undefined) d.last_attempt_at = last;
  if (next !== undefined && d.status === "pending") d.next_attempt_at = next;
  if (code !== undefined) d.response_status = code;
  if (h.last_error) d.last_error = h.last_error;
  if (h.replays) d.replays = Number(h.replays);
  return d;
}

/** The public view: no tenant id, no body (the body is the job, which GET /v1/jobs/:id shows). */
export function deliveryView(d: Delivery): DeliveryView {
  const { tenantId: _t, body: _b, ...view } = d;
  return view;
}
