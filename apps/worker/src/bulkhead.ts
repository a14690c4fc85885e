import type { ProviderConfig } from "@switchyard/core";

/**
 * A per-provider cap on calls in flight in this process, so a slow provider cannot take every
 * worker slot. Up to `maxWaiting` callers wait in line (FIFO); past that, enter() answers
 * "full" at once and the caller hands its job back to the queue to free the slot.
 */
export type Release = () => void;

export class Bulkhead {
  private active = 0;
  private readonly waiting: { resolve: (r: Release | "full") => void; signal?: AbortSignal }[] = [];

  constructor(
    private maxConcurrent: number,
    private maxWaiting: number,
  ) {}

  /** New limits (a config reload): calls in flight go on; a larger cap lets waiting calls in. */
  resize(maxConcurrent: number, maxWaiting: number): void {
    this.maxConcurrent = maxConcurrent;
    this.maxWaiting = maxWaiting;
    this.admit();
  }

  private admit(): void {
    while (this.active < this.maxConcurrent && this.waiting.length > 0) {
      this.active += 1;
      this.waiting.shift()?.resolve(this.releaser());
    }
  }

  get inUse(): number {
    return this.active;
  }

  get queued(): number {
    return this.waiting.length;
  }

  /** A release function once a place is free, or "full" when the line is full or the wait is aborted. */
  enter(signal?: AbortSignal): Promise<Release | "full"> {
    if (this.active < this.maxConcurrent) {
      this.active += 1;
      return Promise.resolve(this.releaser());
    }
    if (this.waiting.length >= this.maxWaiting || signal?.aborted) return Promise.resolve("full");
    return new Promise((resolve) => {
      const entry = { resolve, ...(signal ? { signal } : {}) };
      this.waiting.push(entry);
      signal?.addEventListener(
        "abort",
        () => {
          const i = this.waiting.indexOf(entry);
          if (i >= 0) {
            this.waiting.splice(i, 1);
            resolve("full");
          }
        },
        { once: true },
      );
    });
  }

  private releaser(): Release {
    let done = false;
    return () => {
      if (done) return;
      done = true;
      this.active -= 1;
      this.admit();
    };
  }
}

/** One bulkhead per provider that configures one; providers without a bulkhead are not limited. */
export class Bulkheads {
  private readonly byProvider = new Map<string, Bulkhead>();

  constructor(providers: Pick<ProviderConfig, "id" | "bulkhead">[]) {
    this.configure(providers);
  }

  /**
   * Takes a (reloaded) config: a provider's bulkhead keeps its calls in flight and its line under
   * new limits; a provider that no longer has one is no longer limited.
   */
  configure(providers: Pick<ProviderConfig, "id" | "bulkhead">[]): void {
    const ids = new Set<string>();
    for (const p of providers) {
      if (!p.bulkhead) continue;
      ids.add(p.id);
      const { max_concurrent, max_waiting } = p.bulkhead;
      const known = this.byProvider.get(p.id);
      if (known) known.resize(max_concurrent, max_waiting);
      else this.byProvider.set(p.id, new Bulkhead(max_concurrent, max_waiting));
    }
    for (const id of [...this.byProvider.keys()]) if (!ids.has(id)) this.byProvider.delete(id);
  }

  get(provider: string): Bulkhead | undefined {
    return this.byProvider.get(provider);
  }

  entries(): [string, Bulkhead][] {
    return [...this.byProvider.entries()];
  }
}
