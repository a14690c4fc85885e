import type { LimitState } from "./formats/types";

/**
 * Per-key usage over a sliding 60 s window, as the rate-limit headers report it. Each key has
 * limits (large defaults); the window holds one entry per answered request, pruned as it ages.
 */
export interface KeyLimits {
  rpm: number;
  tpm: number;
}

export const WINDOW_MS = 60_000;
export const DEFAULT_LIMITS: KeyLimits = { rpm: 10_000, tpm: 10_000_000 };

interface Entry {
  at: number;
  tokens: number;
}

export class SlidingWindows {
  private readonly windows = new Map<string, Entry[]>();

  constructor(private readonly limitsFor: (key: string) => KeyLimits = () => DEFAULT_LIMITS) {}

  private prune(key: string, now: number): Entry[] {
    const w = this.windows.get(key) ?? [];
    let drop = 0;
    while (drop < w.length && (w[drop]?.at ?? now) <= now - WINDOW_MS) drop += 1;
    if (drop > 0) w.splice(0, drop);
    this.windows.set(key, w);
    return w;
  }

  record(key: string, tokens: number, now = Date.now()): void {
    this.prune(key, now).push({ at: now, tokens });
  }

  state(key: string, now = Date.now()): LimitState {
    const w = this.prune(key, now);
    const limits = this.limitsFor(key);
    const used = w.reduce((n, e) => n + e.tokens, 0);
    const oldest = w[0]?.at;
    const resetMs = oldest === undefined ? 0 : Math.max(0, oldest + WINDOW_MS - now);
    return {
      requests: { limit: limits.rpm, remaining: Math.max(0, limits.rpm - w.length), resetMs },
      tokens: { limit: limits.tpm, remaining: Math.max(0, limits.tpm - used), resetMs },
    };
  }

  reset(): void {
    this.windows.clear();
  }
}
