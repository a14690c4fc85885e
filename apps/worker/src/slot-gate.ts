/**
 * A process's slots: a counting semaphore that caps how many jobs it runs at once. It decides
 * nothing about shares: which job takes a free slot is the fleet-wide fair queue's choice.
 */
export class SlotGate {
  private inUse = 0;
  private closed = false;
  private readonly waiters: Array<(granted: boolean) => void> = [];

  constructor(private permits: number) {}

  /** A new slot count (a config reload); jobs running go on, waiters get the slots that free up. */
  resize(permits: number): void {
    this.permits = permits;
    this.grant();
  }

  private grant(): void {
    while (this.inUse < this.permits && this.waiters.length > 0) {
      this.inUse += 1;
      this.waiters.shift()?.(true);
    }
  }

  /** Resolves true when a slot is granted, false when the gate closes first. */
  acquire(): Promise<boolean> {
    if (this.closed) return Promise.resolve(false);
    if (this.inUse < this.permits && this.waiters.length === 0) {
      this.inUse += 1;
      return Promise.resolve(true);
    }
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  /** Takes up to `n` free slots without waiting (none while others wait); answers how many. */
  tryAcquire(n: number): number {
    if (this.closed || this.waiters.length > 0) return 0;
    const k = Math.max(0, Math.min(n, this.permits - this.inUse));
    this.inUse += k;
    return k;
  }

  release(): void {
    this.inUse = Math.max(0, this.inUse - 1);
    this.grant();
  }

  close(): void {
    this.closed = true;
    for (const w of this.waiters.splice(0)) w(false);
  }

  get used(): number {
    return this.inUse;
  }
}
