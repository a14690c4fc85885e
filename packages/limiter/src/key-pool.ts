import { randomUUID } from "node:crypto";
import {
  ownEntry,
  type KeyLimits,
  type ProviderConfig,
  type ProviderKeyConfig,
  type TenantConfig,
} from "@switchyard/core";
import { LuaLibrary, type Keys, type LuaMode, type LuaProgram } from "@switchyard/queue";
import type { Redis } from "ioredis";
import { Packr } from "msgpackr";
import poolLua from "./lua/pool.lua";
import poolAdminLua from "./lua/pool-admin.lua";
import poolReserveLua from "./lua/pool-reserve.lua";
import poolSettleLua from "./lua/pool-settle.lua";

/**
 * One Lua program: the window helpers, then each op's file (see pool.lua). A worker's final
 * write runs it too, to settle a succeeded call in the same script call (settleCall).
 */
export const POOL_PROGRAM: LuaProgram = {
  family: "sy_pool",
  shared: poolLua,
  bodies: [poolReserveLua, poolSettleLua, poolAdminLua],
};

/**
 * The fleet-wide key pool: before each upstream call a worker reserves a request, its
 * estimated tokens and a concurrency slot on the provider key with the most room (one Lua
 * call, atomic across every worker); after the call it settles the reservation with the real
 * usage, what the provider's headers said, and the outcome (a 429 cools the key down, a
 * 401/403 takes it out until a probe succeeds). State lives in Redis (see pool.lua).
 */
export const WINDOW_MS = 60_000;
/** A slot whose worker died is given up this long after the provider's call timeout. */
const SLOT_SLACK_MS = 5_000;
const LIMIT_ORDER = ["rpm", "tpm", "itpm", "otpm", "rpd", "max_concurrency"] as const;

export const DENY_REASONS = ["limited", "cooling", "share", "disabled", "too_large"] as const;
export type DenyReason = (typeof DENY_REASONS)[number];

/** A deny reason as pool.lua answers it; anything else is a script/contract mismatch, reported. */
export function parseDenyReason(raw: unknown): DenyReason {
  const found = DENY_REASONS.find((r) => r === raw);
  if (!found) throw new Error(`key pool answered an unknown deny reason '${String(raw).slice(0, 40)}'`);
  return found;
}

export interface ReserveRequest {
  provider: ProviderConfig;
  model: string;
  tenant: Pick<TenantConfig, "id" | "tier">;
  tokensIn: number;
  tokensOut: number;
  /** The job was sent away to wait before: it comes back at the front, without a new appointment. */
  returning: boolean;
  now?: number;
}

export interface Reservation {
  readonly id: string;
  readonly provider: ProviderConfig;
  readonly key: ProviderKeyConfig;
  readonly model: string;
  readonly minute: number;
  readonly day: number;
  readonly tokensIn: number;
  readonly tokensOut: number;
  readonly shareClass?: string;
  readonly at: number;
  /** The key-wide window counted this reservation (it counts while a key-wide limit is in force). */
  readonly keyWide: boolean;
}

export type ReserveResult =
  | { granted: true; reservation: Reservation }
  | { granted: false; reason: DenyReason; retryAt: number; now: number };

/** The provider's rate-limit headers, as the adapters parse them. */
export interface ReportedWindow {
  limit?: number;
  remaining?: number;
  /** Time until the provider's window is full again, in ms. */
  resetMs?: number;
}
export interface ReportedLimits {
  requests?: ReportedWindow;
  tokens?: ReportedWindow;
  inputTokens?: ReportedWindow;
  outputTokens?: ReportedWindow;
}

export type SettleKind = "ok" | "error" | "rate_limited" | "disabled";

export interface SettleOutcome {
  kind: SettleKind;
  usage?: { input_tokens: number; output_tokens: number };
  reported?: ReportedLimits;
  /** rate_limited: cool the key (for this model) down until then, ms since epoch. */
  coolUntil?: number;
  /** disabled: why the key leaves the pool (shown to operators; never the provider's text). */
  reason?: string;
  durationMs?: number;
  now?: number;
}

export interface WindowUsage {
  requests: number;
  tokens: number;
  input_tokens: number;
  output_tokens: number;
  requests_today: number;
  in_flight: number;
  cooling_until: number | null;
  reported_limits: { rpm?: number; tpm?: number; itpm?: number; otpm?: number };
}

export interface KeyView {
  id: string;
  /** The secret's last four characters, for telling keys apart; never more. */
  secret_hint: string;
  limits: KeyLimits;
  model_limits: Record<string, KeyLimits>;
  status: "active" | "cooling" | "disabled";
  disabled: { reason: string; since: number; next_probe_at: number } | null;
  usage: WindowUsage;
  models: Record<string, WindowUsage & { limits: KeyLimits }>;
  health: {
    ok: number;
    errors: number;
    rate_limited: number;
    last_outcome: string | null;
    last_at: number | null;
    avg_call_ms: number | null;
  };
}

type LuaReply = (number | string)[];
/** The pool's answers are flat arrays of integers and strings (an error is thrown by ioredis). */
function parseReply(raw: unknown): LuaReply {
  if (!Array.isArray(raw)) throw new Error(`key pool answered ${typeof raw}, not an array`);
  const out: LuaReply = [];
  for (const v of raw as unknown[]) {
    if (typeof v !== "number" && typeof v !== "string")
      throw new Error(`key pool answered a ${typeof v} in its array`);
    out.push(v);
  }
  return out;
}

const mask = (secret: string): string => (secret.length >= 12 ? `…${secret.slice(-4)}` : "…");

/** Limits that apply per model on a key: the model's own entry, else "*". */
export function modelLimits(key: ProviderKeyConfig, model: string): KeyLimits {
  return ownEntry(key.models, model) ?? ownEntry(key.models, "*") ?? {};
}

const limitArgs = (l: KeyLimits): number[] => LIMIT_ORDER.map((name) => l[name] ?? 0);

/**
 * A reservation's and a settlement's values go to the script as one MessagePack array, which it
 * unpacks with Redis's cmsgpack: as ~30 separate arguments each one was made a Redis string, then
 * parsed back into a number (see pool-reserve.lua). Plain arrays only (no msgpackr records).
 */
const packr = new Packr({ useRecords: false });
type Packed = string | number;
const pack = (values: Packed[]): Buffer => packr.pack(values);

/** A key's usage from its models' windows: counts add up; cooldown and reported limits stay the key's own. */
function sumUsage(keyWide: WindowUsage, perModel: readonly (WindowUsage | undefined)[]): WindowUsage {
  const total: WindowUsage = {
    ...keyWide,
    requests: 0,
    tokens: 0,
    input_tokens: 0,
    output_tokens: 0,
    requests_today: 0,
    in_flight: 0,
  };
  for (const u of perModel) {
    if (!u) continue;
    total.requests += u.requests;
    total.tokens += u.tokens;
    total.input_tokens += u.input_tokens;
    total.output_tokens += u.output_tokens;
    total.requests_today += u.requests_today;
    total.in_flight += u.in_flight;
  }
  return total;
}

/** At most this many reservations go in one script call (each has 7 keys or more). */
const MAX_GATHERED = 32;

interface GatheredReservation {
  keys: string[];
  values: Packed[];
  now: number | undefined;
  resolve: (reply: LuaReply) => void;
  reject: (err: unknown) => void;
}

/** A reservation's answer (pool-reserve.lua) as a ReserveResult. */
function reservationOf(
  reply: LuaReply,
  req: ReserveRequest,
  id: string,
  shareClass: string | undefined,
): ReserveResult {
  const [granted, a, b, c, d, e] = reply;
  if (granted !== 1)
    return { granted: false, retryAt: Number(a), reason: parseDenyReason(b), now: Number(c) };
  const key = req.provider.keys[Number(a) - 1];
  if (!key) throw new Error(`key pool answered an unknown key index ${String(a)}`);
  return {
    granted: true,
    reservation: {
      id,
      provider: req.provider,
      key,
      model: req.model,
      minute: Number(b),
      day: Number(c),
      tokensIn: req.tokensIn,
      tokensOut: req.tokensOut,
      at: Number(d),
      keyWide: e === 1,
      ...(shareClass !== undefined ? { shareClass } : {}),
    },
  };
}

/** A settlement as POOL_PROGRAM's keys and arguments (KeyPool.settleCall). */
export interface SettleCall {
  keys: string[];
  args: (string | number | Buffer)[];
}

export class KeyPool {
  private readonly lua: LuaLibrary;
  private readonly noShare: string;

  /** mode "script" runs the pool as an EVAL script even where Redis has functions (tests). */
  constructor(
    private readonly redis: Redis,
    private readonly keys: Keys,
    mode?: LuaMode,
  ) {
    this.lua = new LuaLibrary(redis, POOL_PROGRAM, keys.luaLibraries(), mode);
    this.noShare = `${keys.prefix}:kp:-:noshare`;
  }

  /** How Redis runs the pool's program (see LuaLibrary). */
  get luaMode(): LuaMode {
    return this.lua.mode;
  }

  private async pool(keys: string[], args: (string | number | Buffer)[]): Promise<LuaReply> {
    return parseReply(await this.lua.call(keys, args));
  }

  /** The share that applies to a tenant's work on a provider: its own, else its tier's. */
  shareOf(provider: ProviderConfig, tenant: Pick<TenantConfig, "id" | "tier">) {
    const shares = provider.limiter.shares;
    const s = shares.find((x) => x.tenant === tenant.id) ?? shares.find((x) => x.tier === tenant.tier);
    if (!s) return undefined;
    return { cls: s.tenant !== undefined ? `tenant:${s.tenant}` : `tier:${s.tier}`, fraction: s.fraction };
  }

  /** A share's limits: its fraction of the pool's summed limit, per axis every key limits. */
  shareLimits(provider: ProviderConfig, model: string, fraction: number): number[] {
    return (["rpm", "tpm", "itpm", "otpm"] as const).map((axis) => {
      let sum = 0;
      for (const key of provider.keys) {
        const both = [key[axis], modelLimits(key, model)[axis]].filter((v): v is number => v !== undefined);
        if (both.length === 0) return 0; // one key unlimited on this axis: the pool is too
        sum += Math.min(...both);
      }
      return Math.floor(sum * fraction);
    });
  }

  /**
   * Reserves a key for one call. The reservations asked for in the same turn of the event loop
   * (a pick starts several jobs at once) go to Redis together, as one script call that makes them
   * one after the other (pool-reserve.lua's reserve_many): the same answers as that many calls in
   * a row, for one round trip and one call's fixed cost in Redis and in this client.
   */
  reserve(req: ReserveRequest): Promise<ReserveResult> {
    const { provider, model } = req;
    const share = this.shareOf(provider, req.tenant);
    const keys = [
      this.keys.poolBook(provider.id, model),
      share ? this.keys.poolShare(provider.id, share.cls, model) : this.noShare,
    ];
    const id = randomUUID();
    const values: Packed[] = [
      id,
      model,
      req.tokensIn,
      req.tokensOut,
      provider.timeout_ms + SLOT_SLACK_MS,
      WINDOW_MS,
      provider.limiter.window_margin_ms,
      req.returning ? 1 : 0,
      ...(share ? this.shareLimits(provider, model, share.fraction) : [0, 0, 0, 0]),
      provider.keys.length,
    ];
    for (const key of provider.keys) {
      keys.push(
        this.keys.keyState(provider.id, key.id),
        this.keys.keyWindow(provider.id, key.id),
        this.keys.keySlots(provider.id, key.id),
        this.keys.keyWindow(provider.id, key.id, model),
        this.keys.keySlots(provider.id, key.id, model),
      );
      values.push(...limitArgs(key), ...limitArgs(modelLimits(key, model)));
    }
    return new Promise<LuaReply>((resolve, reject) => {
      this.gathered.push({ keys, values, now: req.now, resolve, reject });
      if (this.gathered.length === 1) process.nextTick(this.sendGathered);
    }).then((reply) => reservationOf(reply, req, id, share?.cls));
  }

  /** Reservations asked for in this turn, sent together at its end (reserve). */
  private gathered: GatheredReservation[] = [];

  private readonly sendGathered = (): void => {
    // One call per clock (tests pass their own; the service leaves it to Redis), at most
    // MAX_GATHERED reservations each, in the order they were asked for.
    const byClock = new Map<number | undefined, GatheredReservation[]>();
    for (const g of this.gathered) {
      const list = byClock.get(g.now);
      if (list) list.push(g);
      else byClock.set(g.now, [g]);
    }
    this.gathered = [];
    for (const [now, list] of byClock)
      for (let i = 0; i < list.length; i += MAX_GATHERED)
        void this.sendReservations(list.slice(i, i + MAX_GATHERED), now);
  };

  private async sendReservations(batch: GatheredReservation[], now: number | undefined): Promise<void> {
    try {
      const [only] = batch;
      if (batch.length === 1 && only) {
        only.resolve(await this.pool(only.keys, ["reserve", now ?? "", pack(only.values)]));
        return;
      }
      const keys: string[] = [];
      for (const g of batch) for (const k of g.keys) keys.push(k);
      const raw = await this.lua.call(keys, [
        "reserve_many",
        now ?? "",
        packr.pack(batch.map((g) => g.values)),
      ]);
      if (!Array.isArray(raw) || raw.length !== batch.length)
        throw new Error(`key pool answered ${batch.length} reservations with ${String(raw).slice(0, 80)}`);
      batch.forEach((g, i) => {
        try {
          const reply = parseReply(raw[i]);
          // One that failed in Redis fails alone (pool-reserve.lua), with Redis's error.
          if (reply[0] === "error") g.reject(new Error(String(reply[1])));
          else g.resolve(reply);
        } catch (err) {
          g.reject(err);
        }
      });
    } catch (err) {
      for (const g of batch) g.reject(err);
    }
  }

  /** Releases the slot, corrects the tokens with the real usage, and records what happened. */
  async settle(r: Reservation, o: SettleOutcome): Promise<{ coolingUntil: number; disabled: boolean }> {
    return this.runSettle(this.settleCall(r, o));
  }

  /** Runs a settlement settleCall made. */
  async runSettle(call: SettleCall): Promise<{ coolingUntil: number; disabled: boolean }> {
    const reply = await this.pool(call.keys, call.args);
    return { coolingUntil: Number(reply[0]), disabled: reply[1] === 1 };
  }

  /**
   * The settlement as POOL_PROGRAM's keys and arguments, for settle or for another script call
   * that runs the program within it (a succeeded job's final write: FinishFold in @switchyard/queue).
   */
  settleCall(r: Reservation, o: SettleOutcome): SettleCall {
    const p = r.provider;
    const rep = o.reported ?? {};
    const ml = modelLimits(r.key, r.model);
    // Four per dimension, pushed one by one (flatMap takes V8's slow generic path on Node 20).
    const headerArgs: number[] = [];
    for (const [configured, w] of [
      [ml.rpm ?? r.key.rpm, rep.requests],
      [ml.tpm ?? r.key.tpm, rep.tokens],
      [ml.itpm ?? r.key.itpm, rep.inputTokens],
      [ml.otpm ?? r.key.otpm, rep.outputTokens],
    ] as const)
      headerArgs.push(configured ?? 0, w?.limit ?? -1, w?.remaining ?? -1, w?.resetMs ?? -1);
    return {
      keys: [
        this.keys.keyState(p.id, r.key.id),
        this.keys.keyWindow(p.id, r.key.id),
        this.keys.keySlots(p.id, r.key.id),
        this.keys.keyWindow(p.id, r.key.id, r.model),
        this.keys.keySlots(p.id, r.key.id, r.model),
        r.shareClass ? this.keys.poolShare(p.id, r.shareClass, r.model) : this.noShare,
        this.keys.poolBook(p.id, r.model),
      ],
      args: [
        "settle",
        o.now ?? "",
        pack([
          r.id,
          r.minute,
          r.day,
          r.tokensIn,
          r.tokensOut,
          o.usage?.input_tokens ?? -1,
          o.usage?.output_tokens ?? -1,
          o.kind,
          o.coolUntil ?? 0,
          "model",
          o.durationMs ?? -1,
          o.reason ?? "",
          p.limiter.probe_interval_ms,
          WINDOW_MS,
          p.limiter.window_margin_ms,
          "model",
          p.limiter.cooldown_ms,
          ...headerArgs,
          r.keyWide ? 1 : 0,
        ]),
      ],
    };
  }

  /** Claims the provider's disabled keys whose probe is due (each is claimed by one worker only). */
  /**
   * Clears the appointment book of a provider's models (its limits changed): the next job that
   * finds no room is given an appointment at the new pace, not after the old ones.
   */
  async reopenBooks(providerId: string, models: readonly string[]): Promise<void> {
    if (models.length === 0) return;
    const pipe = this.redis.pipeline();
    for (const m of models) pipe.hdel(this.keys.poolBook(providerId, m), "at", "front");
    await pipe.exec();
  }

  async dueProbes(provider: ProviderConfig, now?: number): Promise<ProviderKeyConfig[]> {
    const reply = await this.pool(
      provider.keys.map((k) => this.keys.keyState(provider.id, k.id)),
      ["probe", now ?? "", provider.limiter.probe_interval_ms],
    );
    return reply.map((i) => provider.keys[Number(i) - 1]).filter((k): k is ProviderKeyConfig => !!k);
  }

  /** Puts a key back in the pool (its probe worked). */
  async enable(provider: ProviderConfig, key: ProviderKeyConfig, now?: number): Promise<void> {
    await this.lua.call([this.keys.keyState(provider.id, key.id)], ["enable", now ?? ""]);
  }

  private async usage(
    provider: ProviderConfig,
    key: ProviderKeyConfig,
    model: string | undefined,
    now: number | undefined,
  ): Promise<WindowUsage> {
    const v = (
      await this.pool(
        [this.keys.keyWindow(provider.id, key.id, model), this.keys.keySlots(provider.id, key.id, model)],
        ["inspect", now ?? "", WINDOW_MS, provider.limiter.window_margin_ms],
      )
    ).map(Number);
    const at = (i: number) => v[i] ?? 0;
    const reported: WindowUsage["reported_limits"] = {};
    (["rpm", "tpm", "itpm", "otpm"] as const).forEach((name, i) => {
      if (at(7 + i) > 0) reported[name] = at(7 + i);
    });
    return {
      requests: at(0),
      tokens: at(1),
      input_tokens: at(2),
      output_tokens: at(3),
      requests_today: at(4),
      in_flight: at(5),
      cooling_until: at(6) > (now ?? Date.now()) ? at(6) : null,
      reported_limits: reported,
    };
  }

  /** Every key of a provider as operators see it: limits, usage, in flight, cooldown, health. */
  async inspect(provider: ProviderConfig, now?: number): Promise<KeyView[]> {
    const views: KeyView[] = [];
    for (const key of provider.keys) {
      const state = await this.redis.hgetall(this.keys.keyState(provider.id, key.id));
      const names = Object.keys(state)
        .filter((f) => f.startsWith("m:"))
        .map((f) => f.slice(2))
        .sort();
      const [keyWide, ...perModel] = await Promise.all([
        this.usage(provider, key, undefined, now),
        ...names.map((model) => this.usage(provider, key, model, now)),
      ]);
      if (!keyWide) throw new Error("key pool inspect answered nothing");
      // The key-wide window counts only while a key-wide limit is in force ("kc", see
      // pool-reserve.lua); otherwise the key's usage is what its models used.
      const usage = Number(state.kc ?? 0) > (now ?? Date.now()) ? keyWide : sumUsage(keyWide, perModel);
      const models: KeyView["models"] = {};
      names.forEach((model, i) => {
        const u = perModel[i];
        if (u) models[model] = { ...u, limits: modelLimits(key, model) };
      });
      const n = (f: string): number | null => (state[f] === undefined ? null : Number(state[f]));
      const disabled =
        state.disabled !== undefined
          ? { reason: state.disabled, since: n("disabled_at") ?? 0, next_probe_at: n("probe_at") ?? 0 }
          : null;
      const cooling =
        usage.cooling_until !== null || Object.values(models).some((m) => m.cooling_until !== null);
      const { id, secret: _secret, models: modelCfg, ...limits } = key;
      views.push({
        id,
        secret_hint: mask(key.secret),
        limits,
        model_limits: modelCfg ?? {},
        status: disabled ? "disabled" : cooling ? "cooling" : "active",
        disabled,
        usage,
        models,
        health: {
          ok: n("ok") ?? 0,
          errors: n("err") ?? 0,
          rate_limited: n("n429") ?? 0,
          last_outcome: state.last_status ?? null,
          last_at: n("last_at"),
          avg_call_ms: n("ema"),
        },
      });
    }
    return views;
  }
}
