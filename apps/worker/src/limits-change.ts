import { routeLinks, type ProviderConfig, type SwitchyardConfig } from "@switchyard/core";
import type { KeyPool } from "@switchyard/limiter";
import type { Logger } from "@switchyard/observability";
import type { FairQueue } from "@switchyard/queue";

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
 * is freed to ask the key pool again. Each worker does it once its last job on the old config has
 * ended (a job still running on it could otherwise take an old appointment after the wake-up);
 * a job freed twice just asks the pool twice.
 */
export async function followNewLimits(
  deps: { pool: KeyPool; fair: FairQueue; log: Logger; wakeWorkers: () => void },
  prev: SwitchyardConfig,
  next: SwitchyardConfig,
): Promise<void> {
  const changed = providersWithNewLimits(prev, next);
  if (changed.length === 0) return;
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
