import { routeLinks, type ProviderConfig, type SwitchyardConfig } from "@switchyard/core";
import type { KeyPool } from "@switchyard/limiter";
import type { Logger } from "@switchyard/observability";
import type { FairQueue, Keys, Redis } from "@switchyard/queue";

/** What the key pool's pace depends on: the keys and their limits, the shares, the margin. */
const limitsOf = (p: ProviderConfig): string =>
  JSON.stringify([
    p.keys.map(({ secret: _secret, ...limits }) => limits),
    p.limiter.shares,
    p.limiter.window_margin_ms,
  ]);

/** Providers whose keys or limits differ between two configs (added ones included). */
export function providersWithNewLimits(prev: SwitchyardConfig, next: SwitchyardConfig): ProviderConfig[] {
  const before = new Map(prev.providers.map((p) => [p.id, limitsOf(p)]));
  return next.providers.filter((p) => before.get(p.id) !== limitsOf(p));
}

/** Every upstream model the config's routes call on a provider. */
function modelsOn(config: SwitchyardConfig, providerId: string): string[] {
  const models = new Set<string>();
  for (const alias of Object.keys(config.models))
    for (const link of routeLinks(config, alias) ?? [])
      if (link.provider === providerId) models.add(link.model);
  return [...models];
}

/**
 * After a reload that changed a provider's keys or limits, jobs waiting for its capacity hold
 * appointments made at the old pace (a raised rpm would otherwise drain a backlog at the old,
 * slower rate): the appointment books are cleared and every job in the provider's waiting rooms
 * is freed to ask the key pool again. Every worker reloads; one of them (the first to claim the
 * config's hash) does it for the fleet.
 */
export async function followNewLimits(
  deps: { redis: Redis; keys: Keys; pool: KeyPool; fair: FairQueue; log: Logger; wakeWorkers: () => void },
  prev: SwitchyardConfig,
  next: SwitchyardConfig,
  hash: string,
): Promise<void> {
  const changed = providersWithNewLimits(prev, next);
  if (changed.length === 0) return;
  const claim = await deps.redis.set(`${deps.keys.prefix}:reload:${hash}`, "1", "PX", 600_000, "NX");
  if (claim !== "OK") return;
  let freed = 0;
  for (const p of changed) {
    const models = [...new Set([...modelsOn(prev, p.id), ...modelsOn(next, p.id)])];
    await deps.pool.reopenBooks(p.id, models);
    for (const m of models) freed += await deps.fair.wake(`${p.id}/${m}`);
  }
  deps.log.info(
    { providers: changed.map((p) => p.id), freed },
    "provider limits changed: waiting jobs ask the key pool again",
  );
  if (freed > 0) deps.wakeWorkers();
}
