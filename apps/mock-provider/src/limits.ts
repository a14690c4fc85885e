import { z } from "zod";
import type { LimitState } from "./formats/types";

/**
 * Per-key usage over a rolling 60 s window, enforced at admission the way providers do: a
 * request that would take a key past its rpm or tpm is answered 429 and not counted. Tokens
 * are the request's prompt plus the completion the mock will produce. Limits come from
 * MOCK_LIMITS (a JSON object mapping an API key to {rpm, tpm}); other keys get large defaults.
 * Each window also remembers the highest count it ever held: the sum at any moment is the
 * sum over the 60 s ending then, so the highest of those is the worst 60 s window.
 */
export interface KeyLimits {
  rpm: number;
  tpm: number;
}

export const WINDOW_MS = 60_000;
export const DEFAULT_LIMITS: KeyLimits = { rpm: 10_000, tpm: 10_000_000 };

const limitsSchema = z.record(
  z.string().min(1),
  z.object({ rpm: z.number().int().min(1).optional(), tpm: z.number().int().min(1).optional() }).strict(),
);

/** Parses MOCK_LIMITS; throws with the failing path so a typo is caught at start-up. */
export function parseMockLimits(raw: string | undefined): Map<string, KeyLimits> {
  if (!raw?.trim()) return new Map();
  let doc: unknown;
  try {
    doc = JSON.parse(raw);
  } catch {
    throw new Error('MOCK_LIMITS is not JSON; expected e.g. {"sk-key-1": {"rpm": 60, "tpm": 10000}}');
  }
  const parsed = limitsSchema.safeParse(doc);
  if (!parsed.success)
    throw new Error(
      `MOCK_LIMITS: ${parsed.error.issues.map((i) => `${i.path.join(".") || "(root)"}: ${i.message}`).join("; ")}`,
    );
  return new Map(
    Object.entries(parsed.data).map(([k, v]) => [
      k,
      { rpm: v.rpm ?? DEFAULT_LIMITS.rpm, tpm: v.tpm ?? DEFAULT_LIMITS.tpm },
    ]),
  );
}

interface Entry {
  at: number;
  tokens: number;
}

export interface Peak {
  requests: number;
  tokens: number;
}

class Window {
  readonly entries: Entry[] = [];
  head = 0;
  tokens = 0;
  readonly peak: Peak = { requests: 0, tokens: 0 };

  prune(now: number): void {
    while (this.head < this.entries.length) {
      const e = this.entries[this.head];
      if (!e || e.at > now - WINDOW_MS) break;
      this.tokens -= e.tokens;
      this.head += 1;
    }
    if (this.head > 1024 && this.head * 2 > this.entries.length) {
      this.entries.splice(0, this.head);
      this.head = 0;
    }
  }

  get requests(): number {
    return this.entries.length - this.head;
  }

  add(at: number, tokens: number): void {
    this.entries.push({ at, tokens });
    this.tokens += tokens;
    this.peak.requests = Math.max(this.peak.requests, this.requests);
    this.peak.tokens = Math.max(this.peak.tokens, this.tokens);
  }

  /** How long until `tokens` more (and one more request) fit under the limits. */
  waitMs(limits: KeyLimits, tokens: number, now: number): number {
    let freedReq = 0;
    let freedTok = 0;
    for (let i = this.head; i < this.entries.length; i++) {
      const e = this.entries[i];
      if (!e) break;
      freedReq += 1;
      freedTok += e.tokens;
      if (this.requests - freedReq + 1 <= limits.rpm && this.tokens - freedTok + tokens <= limits.tpm)
        return Math.max(0, e.at + WINDOW_MS - now);
    }
    return WINDOW_MS;
  }
}

export type Admission = { ok: true } | { ok: false; retryAfterMs: number };

export class SlidingWindows {
  /** What each key let through. */
  private readonly accepted = new Map<string, Window>();
  /** Everything each key was sent, refused or not: how close the client came to the limits. */
  private readonly offered = new Map<string, Window>();

  constructor(private readonly configured: Map<string, KeyLimits> = new Map()) {}

  limitsFor(key: string): KeyLimits {
    return this.configured.get(key) ?? DEFAULT_LIMITS;
  }

  private window(map: Map<string, Window>, key: string, now: number): Window {
    let w = map.get(key);
    if (!w) {
      w = new Window();
      map.set(key, w);
    }
    w.prune(now);
    return w;
  }

  /** Counts the request if it fits the key's limits, else says when it would. */
  admit(key: string, tokens: number, now = Date.now()): Admission {
    this.window(this.offered, key, now).add(now, tokens);
    const w = this.window(this.accepted, key, now);
    const limits = this.limitsFor(key);
    if (w.requests + 1 > limits.rpm || w.tokens + tokens > limits.tpm)
      return { ok: false, retryAfterMs: w.waitMs(limits, tokens, now) };
    w.add(now, tokens);
    return { ok: true };
  }

  state(key: string, now = Date.now()): LimitState {
    const w = this.window(this.accepted, key, now);
    const limits = this.limitsFor(key);
    const oldest = w.entries[w.head]?.at;
    const resetMs = oldest === undefined ? 0 : Math.max(0, oldest + WINDOW_MS - now);
    return {
      requests: { limit: limits.rpm, remaining: Math.max(0, limits.rpm - w.requests), resetMs },
      tokens: { limit: limits.tpm, remaining: Math.max(0, limits.tpm - w.tokens), resetMs },
    };
  }

  /** The highest request and token counts any 60 s window held, accepted and offered. */
  peaks(key: string): { accepted: Peak; offered: Peak; limits: KeyLimits } {
    return {
      accepted: { ...(this.accepted.get(key)?.peak ?? { requests: 0, tokens: 0 }) },
      offered: { ...(this.offered.get(key)?.peak ?? { requests: 0, tokens: 0 }) },
      limits: this.limitsFor(key),
    };
  }

  reset(): void {
    this.accepted.clear();
    this.offered.clear();
  }
}
