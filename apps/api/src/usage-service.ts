import { z } from "zod";
import { badRequest, type TenantConfig } from "@switchyard/core";
import { dayPeriod, monthPeriod, USAGE_RETENTION_DAYS, type Keys, type Redis } from "@switchyard/queue";

/**
 * GET /v1/usage: a tenant's requests, tokens and cost per UTC day or per model, read from the
 * counters admission reserves and job ends settle (create-job.lua, transition.lua). Only the
 * caller's own counters are ever read.
 */

const DAY_MS = 86_400_000;
const DATE = /^\d{4}-\d{2}-\d{2}$/;
const counters = z.record(z.string(), z.coerce.number().finite());

export interface UsageRow {
  requests: number;
  input_tokens: number;
  output_tokens: number;
  cached_input_tokens: number;
  cost_usd: number;
}

const nanoToUsd = (n: number): number => Math.round(n) / 1e9;

function parseDate(raw: unknown, name: string): number | undefined {
  if (raw === undefined) return undefined;
  const s = String(raw);
  const t = DATE.test(s) ? Date.parse(`${s}T00:00:00Z`) : NaN;
  if (!Number.isFinite(t) || new Date(t).toISOString().slice(0, 10) !== s)
    throw badRequest(`${name} must be a UTC date like 2026-01-31`, [
      { path: `query.${name}`, message: "invalid" },
    ]);
  return t;
}

const empty = (): UsageRow => ({
  requests: 0,
  input_tokens: 0,
  output_tokens: 0,
  cached_input_tokens: 0,
  cost_usd: 0,
});

function add(a: UsageRow, b: UsageRow): void {
  a.requests += b.requests;
  a.input_tokens += b.input_tokens;
  a.output_tokens += b.output_tokens;
  a.cached_input_tokens += b.cached_input_tokens;
  a.cost_usd = nanoToUsd((a.cost_usd + b.cost_usd) * 1e9);
}

export class UsageService {
  constructor(
    private readonly redis: Redis,
    private readonly keys: Keys,
  ) {}

  async report(tenant: TenantConfig, query: Record<string, unknown>, now = Date.now()) {
    const today = Date.UTC(
      new Date(now).getUTCFullYear(),
      new Date(now).getUTCMonth(),
      new Date(now).getUTCDate(),
    );
    const to = parseDate(query.to, "to") ?? today;
    const from = parseDate(query.from, "from") ?? to - 29 * DAY_MS;
    const groupBy = query.group_by === undefined ? "day" : String(query.group_by);
    if (groupBy !== "day" && groupBy !== "model")
      throw badRequest("group_by must be day or model", [{ path: "query.group_by", message: "invalid" }]);
    if (from > to)
      throw badRequest("from must not be after to", [{ path: "query.from", message: "after to" }]);
    if ((to - from) / DAY_MS >= USAGE_RETENTION_DAYS)
      throw badRequest(`at most ${USAGE_RETENTION_DAYS} days at a time (usage is kept that long)`, [
        { path: "query.from", message: "range too long" },
      ]);

    const days: number[] = [];
    for (let t = from; t <= to; t += DAY_MS) days.push(t);
    const pipe = this.redis.pipeline();
    for (const t of days) pipe.hgetall(this.keys.usage(tenant.id, dayPeriod(t)));
    pipe.hgetall(this.keys.usage(tenant.id, dayPeriod(now)));
    pipe.hgetall(this.keys.usage(tenant.id, monthPeriod(now)));
    const rows = (await pipe.exec()) ?? [];
    const hashes = rows.map(([err, v]) => {
      if (err) throw err;
      return counters.parse(v ?? {});
    });
    const month = hashes.pop() ?? {};
    const todays = hashes.pop() ?? {};
    const total = empty();
    const byModel = new Map<string, UsageRow>();
    const data: (UsageRow & { date?: string; model?: string })[] = [];
    let reservedTokens = 0;
    let reservedNano = 0;
    days.forEach((t, i) => {
      const h = hashes[i] ?? {};
      // The real usage is kept per model (transition.lua); the day's is their sum. Its requests
      // are every job admitted that day (create-job.lua), ended or not, served or not.
      const row: UsageRow = { ...empty(), requests: h.r ?? 0 };
      let usedNano = 0;
      for (const [field, n] of Object.entries(h)) {
        const m = /^m\|(.*)\|(r|i|o|ci|c)$/.exec(field);
        if (!m?.[1] || !m[2]) continue;
        const r = byModel.get(m[1]) ?? empty();
        byModel.set(m[1], r);
        if (m[2] === "r") r.requests += n;
        else if (m[2] === "i") {
          r.input_tokens += n;
          row.input_tokens += n;
        } else if (m[2] === "o") {
          r.output_tokens += n;
          row.output_tokens += n;
        } else if (m[2] === "ci") {
          r.cached_input_tokens += n;
          row.cached_input_tokens += n;
        } else {
          r.cost_usd = nanoToUsd(r.cost_usd * 1e9 + n);
          usedNano += n;
        }
      }
      row.cost_usd = nanoToUsd(usedNano);
      // What admission reserved for jobs that have not ended yet.
      reservedTokens += Math.max(0, (h.t ?? 0) - row.input_tokens - row.output_tokens);
      reservedNano += Math.max(0, (h.c ?? 0) - usedNano);
      add(total, row);
      if (groupBy === "day") data.push({ date: new Date(t).toISOString().slice(0, 10), ...row });
    });
    if (groupBy === "model")
      for (const [model, r] of [...byModel.entries()].sort(([a], [b]) => a.localeCompare(b)))
        data.push({ model, ...r });
    return {
      object: "usage",
      tenant: tenant.id,
      from: new Date(from).toISOString().slice(0, 10),
      to: new Date(to).toISOString().slice(0, 10),
      group_by: groupBy,
      data,
      total,
      in_flight: { reserved_tokens: reservedTokens, reserved_cost_usd: nanoToUsd(reservedNano) },
      quota: this.quota(tenant, todays, month, now, today),
    };
  }

  /** The tenant's quotas with what counts against them now (reservations included). */
  private quota(
    tenant: TenantConfig,
    day: Record<string, number>,
    month: Record<string, number>,
    now: number,
    today: number,
  ) {
    const q = tenant.quota;
    if (!q) return null;
    const d = new Date(now);
    const dayReset = new Date(today + DAY_MS).toISOString();
    const monthReset = new Date(Date.UTC(d.getUTCFullYear(), d.getUTCMonth() + 1, 1)).toISOString();
    const out: Record<string, { limit: number; used: number; resets_at: string }> = {};
    if (q.requests_per_day !== undefined)
      out.requests_per_day = { limit: q.requests_per_day, used: day.r ?? 0, resets_at: dayReset };
    if (q.tokens_per_day !== undefined)
      out.tokens_per_day = { limit: q.tokens_per_day, used: day.t ?? 0, resets_at: dayReset };
    if (q.usd_per_day !== undefined)
      out.usd_per_day = { limit: q.usd_per_day, used: nanoToUsd(day.c ?? 0), resets_at: dayReset };
    if (q.usd_per_month !== undefined)
      out.usd_per_month = { limit: q.usd_per_month, used: nanoToUsd(month.c ?? 0), resets_at: monthReset };
    return out;
  }
}
