/**
 * The one place that names Switchyard's Redis keys. Every key starts with the configured
 * prefix (default "{sy}", a Cluster hash tag), so every multi-key script stays in one slot.
 */
export class Keys {
  constructor(readonly prefix: string) {}

  /** The public view of a job: status, times, result, error. */
  job(jobId: string): string {
    return `${this.prefix}:job:${jobId}`;
  }

  idempotency(tenantId: string, key: string): string {
    return `${this.prefix}:idem:${tenantId}:${key}`;
  }

  /** A circuit breaker's shared state: per provider, or per provider and model. */
  breaker(provider: string, model?: string): string {
    return model === undefined ? `${this.prefix}:cb:${provider}` : `${this.prefix}:cb:${provider}:${model}`;
  }

  /** Pub/sub: "jobId status" on every status change (long-poll, SSE). */
  get jobEventsChannel(): string {
    return `${this.prefix}:events:job`;
  }

  /** Pub/sub: a jobId whose running call must be aborted by whichever worker holds it. */
  get cancelChannel(): string {
    return `${this.prefix}:events:cancel`;
  }
}
