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

  /** When each of this deployment's Lua function libraries was last loaded (lua-library.ts). */
  luaLibraries(): string {
    return `${this.prefix}:lua`;
  }

  idempotency(tenantId: string, key: string): string {
    return `${this.prefix}:idem:${tenantId}:${key}`;
  }

  /** A circuit breaker's shared state: per provider, or per provider and model. */
  breaker(provider: string, model?: string): string {
    return model === undefined ? `${this.prefix}:cb:${provider}` : `${this.prefix}:cb:${provider}:${model}`;
  }

  /** A provider key's health and pool membership (disabled reason, probe time, counters). */
  keyState(provider: string, keyId: string): string {
    return `${this.prefix}:kp:${provider}:${keyId}`;
  }

  /** A provider key's rolling usage windows: key-wide, or for one model on that key. */
  keyWindow(provider: string, keyId: string, model?: string): string {
    return model === undefined
      ? `${this.prefix}:kp:${provider}:${keyId}:w`
      : `${this.prefix}:kp:${provider}:${keyId}:w:${model}`;
  }

  /** A provider key's calls in flight (slots): key-wide, or for one model on that key. */
  keySlots(provider: string, keyId: string, model?: string): string {
    return model === undefined
      ? `${this.prefix}:kp:${provider}:${keyId}:s`
      : `${this.prefix}:kp:${provider}:${keyId}:s:${model}`;
  }

  /** When the next job waiting for a provider's model may come back (the appointment book). */
  poolBook(provider: string, model: string): string {
    return `${this.prefix}:kp:${provider}:book:${model}`;
  }

  /** A tier's or tenant's share of a provider's pool for one model (its own rolling window). */
  poolShare(provider: string, shareClass: string, model: string): string {
    return `${this.prefix}:kp:${provider}:share:${shareClass}:${model}`;
  }

  /** A tenant's webhook endpoint: url, events, secrets, status. */
  webhookEndpoint(endpointId: string): string {
    return `${this.prefix}:wh:ep:${endpointId}`;
  }

  /** The ids of a tenant's webhook endpoints. */
  tenantEndpoints(tenantId: string): string {
    return `${this.prefix}:wh:tenant:${tenantId}:eps`;
  }

  /** Ids of tenants that have at least one endpoint: terminal events of their jobs go to the outbox. */
  get tenantsWithEndpoints(): string {
    return `${this.prefix}:wh:tenants`;
  }

  /** A tenant's own signing secret, used for jobs that carry their own webhook.url. */
  tenantSigningSecret(tenantId: string): string {
    return `${this.prefix}:wh:tenant:${tenantId}:secret`;
  }

  /** Stream of terminal job events waiting to be turned into deliveries (written by transition.lua). */
  get webhookOutbox(): string {
    return `${this.prefix}:wh:outbox`;
  }

  /** One delivery of one event to one target: status, attempts, body. */
  webhookDelivery(deliveryId: string): string {
    return `${this.prefix}:wh:dlv:${deliveryId}`;
  }

  /** An endpoint's deliveries by creation time (or, for "job", a tenant's per-job URL deliveries). */
  endpointDeliveries(endpointId: string): string {
    return `${this.prefix}:wh:ep:${endpointId}:dlv`;
  }

  /** The deliveries made for one job's events. */
  jobDeliveries(jobId: string): string {
    return `${this.prefix}:wh:job:${jobId}:dlv`;
  }

  /**
   * Pub/sub, one channel per job: "<jobId> <status>" on every status change of that job (heard by
   * long-polls and SSE followers while they wait for it). Scripts get the prefix and add the id.
   */
  jobEvents(jobId: string): string {
    return `${this.jobEventsPrefix}${jobId}`;
  }

  get jobEventsPrefix(): string {
    return `${this.prefix}:events:job:`;
  }

  /** An uploaded file's facts (hash) and its bytes (`:data`, a string). */
  file(fileId: string): string {
    return `${this.prefix}:file:${fileId}`;
  }

  /** A tenant's files (zset by creation time). */
  tenantFiles(tenantId: string): string {
    return `${this.prefix}:files:${tenantId}`;
  }

  /** A batch: its facts and counters (hash); `:lines` its custom_id/job pairs, `:errors` its refused lines (lists). */
  batch(batchId: string): string {
    return `${this.prefix}:batch:${batchId}`;
  }

  /** A tenant's batches (zset by creation time). */
  tenantBatches(tenantId: string): string {
    return `${this.prefix}:batches:${tenantId}`;
  }

  /** A streamed job's pieces of text, then its end (a Redis stream). */
  jobStream(jobId: string): string {
    return `${this.prefix}:stream:${jobId}`;
  }

  /** Pub/sub, one channel per job: "<jobId> <kind>" when a streamed job's stream got an entry. */
  jobStreamEvents(jobId: string): string {
    return `${this.prefix}:events:stream:${jobId}`;
  }

  /** Pub/sub: a jobId whose running call must be aborted by whichever worker holds it. */
  get cancelChannel(): string {
    return `${this.prefix}:events:cancel`;
  }

  /** The fair queue's keys: its state, backlogged tiers, listed jobs' facts, jobs not yet due. */
  get fairQueue(): {
    prefix: string;
    state: string;
    tiers: string;
    meta: string;
    later: string;
    express: string;
  } {
    const fq = `${this.prefix}:fq`;
    return {
      prefix: fq,
      state: `${fq}:state`,
      tiers: `${fq}:tiers`,
      meta: `${fq}:meta`,
      later: `${fq}:later`,
      express: `${fq}:express`,
    };
  }

  /** A tier's backlogged tenants by pass (written by fair-queue.lua, named here for reads). */
  fairTier(tier: string): string {
    return `${this.prefix}:fq:tier:${tier}`;
  }

  /** A tenant's listed jobs by priority, then arrival (written by fair-queue.lua). */
  fairLane(tenantId: string): string {
    return `${this.prefix}:fq:lane:${tenantId}`;
  }

  /** A tenant's usage of one UTC day (yyyymmdd) or month (yyyymm): reserved and settled counters. */
  usage(tenantId: string, period: string): string {
    return `${this.prefix}:usage:${tenantId}:${period}`;
  }

  /** An answer in the cache (exact key hash); the prefix alone names every entry. */
  cacheEntry(hash = ""): string {
    return `${this.prefix}:cache:e:${hash}`;
  }

  /** A cached upstream 400 for an exact request. */
  cacheNegative(hash: string): string {
    return `${this.prefix}:cache:neg:${hash}`;
  }

  /** The job leading the single upstream call for a cache key, and the jobs waiting for it. */
  cacheFlight(hash: string): { leader: string; followers: string } {
    return { leader: `${this.prefix}:cache:fl:${hash}`, followers: `${this.prefix}:cache:fl:${hash}:w` };
  }

  /** Indexes of the cache's entries: all, by tenant, by route (for bounds and purges). */
  cacheIndex(by?: { tenant: string } | { route: string }): string {
    if (!by) return `${this.prefix}:cache:idx`;
    return "tenant" in by
      ? `${this.prefix}:cache:idx:t:${by.tenant}`
      : `${this.prefix}:cache:idx:r:${by.route}`;
  }

  /** A semantic scope's prompts (embeddings and guards) and their order, for bounds. */
  cacheSemantic(scope: string): { vectors: string; order: string } {
    return { vectors: `${this.prefix}:cache:sem:${scope}`, order: `${this.prefix}:cache:sem:${scope}:o` };
  }

  /** A request signature already accepted (a replay of it is refused while it could be fresh). */
  signatureSeen(tenantId: string, mac: string): string {
    return `${this.prefix}:sig:${tenantId}:${mac}`;
  }

  /** Fleet-wide cache counters. */
  get cacheStats(): string {
    return `${this.prefix}:cache:stats`;
  }
}
