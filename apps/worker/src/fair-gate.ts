/**
 * A counting semaphore whose waiters are served by smooth weighted round robin across classes
 * (nginx's algorithm): with paid weight 4 and free weight 1, five grants while both wait go
 * paid, paid, free, paid, paid. A class with nobody waiting takes no turn, so the gate is
 * work-conserving; a class that waits always gets its weighted share, so none starves.
 */
interface ClassState {
  weight: number;
  current: number;
  waiters: Array<(granted: boolean) => void>;
}

export class FairGate {
  private readonly classes = new Map<string, ClassState>();
  private inUse = 0;
  private closed = false;

  constructor(
    private readonly permits: number,
    weights: Record<string, number>,
  ) {
    for (const [name, weight] of Object.entries(weights))
      this.classes.set(name, { weight, current: 0, waiters: [] });
  }

  /** Resolves true when a permit is granted, false when the gate closes first. */
  acquire(cls: string): Promise<boolean> {
    const state = this.classes.get(cls);
    if (!state) throw new Error(`unknown class ${cls}`);
    if (this.closed) return Promise.resolve(false);
    if (this.inUse < this.permits && this.nobodyWaiting()) {
      this.inUse += 1;
      return Promise.resolve(true);
    }
    return new Promise((resolve) => {
      state.waiters.push(resolve);
      this.grant();
    });
  }

  /** Takes a permit even when none is free (a job already fetched must run); bounded by the caller. */
  force(): void {
    this.inUse += 1;
  }

  release(): void {
    this.inUse = Math.max(0, this.inUse - 1);
    this.grant();
  }

  close(): void {
    this.closed = true;
    for (const s of this.classes.values()) for (const w of s.waiters.splice(0)) w(false);
  }

  get used(): number {
    return this.inUse;
  }

  private nobodyWaiting(): boolean {
    for (const s of this.classes.values()) if (s.waiters.length > 0) return false;
    return true;
  }

  private grant(): void {
    while (this.inUse < this.permits) {
      let total = 0;
      let best: ClassState | undefined;
      for (const s of this.classes.values()) {
        if (s.waiters.length === 0) continue;
        s.current += s.weight;
        total += s.weight;
        if (!best || s.current > best.current) best = s;
      }
      if (!best) return;
      best.current -= total;
      const waiter = best.waiters.shift();
      this.inUse += 1;
      waiter?.(true);
    }
  }
}
