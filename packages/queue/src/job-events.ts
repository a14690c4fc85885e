import type { Redis } from "ioredis";

/**
 * Status changes of jobs, heard over one Redis pub/sub subscription per process.
 * Long-polls register a waiter for a job id and are woken by the message; nobody polls Redis.
 */
export type JobEventListener = (jobId: string, status: string) => void;

export class JobEvents {
  private readonly waiters = new Map<string, Set<JobEventListener>>();
  private readonly all = new Set<JobEventListener>();
  private ready: Promise<unknown>;

  constructor(
    private readonly subscriber: Redis,
    readonly channel: string,
  ) {
    this.ready = subscriber.subscribe(channel);
    // whenReady() callers see a failure; left alone it must not end the process (the "ready"
    // handler below subscribes again on the next connection).
    this.ready.catch(() => undefined);
    // Subscribe again on every (re)connect. ioredis resubscribes by itself, but we saw a
    // connection come up unsubscribed (long-polls then slept their full wait); a repeated
    // SUBSCRIBE to the same channel is harmless.
    subscriber.on("ready", () => {
      subscriber.subscribe(channel).catch(() => undefined);
    });
    subscriber.on("message", (ch: string, message: string) => {
      if (ch !== channel) return;
      const space = message.indexOf(" ");
      if (space <= 0) return;
      const jobId = message.slice(0, space);
      const status = message.slice(space + 1);
      for (const l of this.all) l(jobId, status);
      const set = this.waiters.get(jobId);
      if (set) for (const l of [...set]) l(jobId, status);
    });
  }

  whenReady(): Promise<unknown> {
    return this.ready;
  }

  /** Listens for one job's changes; returns the function that stops listening. */
  listen(jobId: string, listener: JobEventListener): () => void {
    let set = this.waiters.get(jobId);
    if (!set) {
      set = new Set();
      this.waiters.set(jobId, set);
    }
    set.add(listener);
    return () => {
      const s = this.waiters.get(jobId);
      if (!s) return;
      s.delete(listener);
      if (s.size === 0) this.waiters.delete(jobId);
    };
  }

  listenAll(listener: JobEventListener): () => void {
    this.all.add(listener);
    return () => this.all.delete(listener);
  }

  get waiterCount(): number {
    let n = 0;
    for (const s of this.waiters.values()) n += s.size;
    return n;
  }
}
