/**
 * Ids seen lately: each is kept for `keepMs` after it was last added, and at most `max` of them
 * (the oldest go first), so the set stays bounded whatever arrives.
 */
export class RecentIds {
  /** id -> when it was added, oldest first (an id added again moves to the end). */
  private readonly seen = new Map<string, number>();

  constructor(
    private readonly keepMs: number,
    private readonly max: number,
  ) {}

  add(id: string, now = Date.now()): void {
    this.seen.delete(id);
    this.seen.set(id, now);
    for (const [old, at] of this.seen) {
      if (now - at <= this.keepMs && this.seen.size <= this.max) break;
      this.seen.delete(old);
    }
  }

  /** Whether `id` was added within `keepMs`; it is forgotten either way. */
  take(id: string, now = Date.now()): boolean {
    const at = this.seen.get(id);
    this.seen.delete(id);
    return at !== undefined && now - at <= this.keepMs;
  }

  get size(): number {
    return this.seen.size;
  }
}
