import { isTerminal } from "@switchyard/core";
import type { JobEvents, JobStore, JobStreams, StreamEntry } from "@switchyard/queue";

/**
 * Follows a streamed job's Redis stream from `afterId` and hands every entry to `onEntry` in
 * order, woken by the stream's pub/sub messages (and by the job's status changes, for a job
 * that ends without a stream entry, e.g. cancelled while queued). Ends at the stream's end or
 * error entry, when the job ended without one, when `signal` aborts, or at `deadline`.
 */
export type FollowEnd = "end" | "error" | "ended_without_stream" | "aborted" | "timeout";

export interface FollowDeps {
  streams: JobStreams;
  streamEvents: JobEvents;
  statusEvents: JobEvents;
  store: JobStore;
}

export async function followStream(
  deps: FollowDeps,
  jobId: string,
  afterId: string,
  signal: AbortSignal,
  deadline: number,
  onEntry: (e: StreamEntry) => void | Promise<void>,
): Promise<FollowEnd> {
  let last = afterId;
  let wake: (() => void) | undefined;
  let dirty = true;
  const poke = () => {
    dirty = true;
    wake?.();
  };
  const stream = deps.streamEvents.listen(jobId, poke);
  const status = deps.statusEvents.listen(jobId, poke);
  // Once both channels are subscribed, read again: an entry or change may have come between.
  Promise.all([stream.ready, status.ready]).then(poke, poke);
  signal.addEventListener("abort", poke);
  try {
    for (;;) {
      if (signal.aborted) return "aborted";
      if (dirty) {
        dirty = false;
        const entries = await deps.streams.read(jobId, last);
        for (const e of entries) {
          last = e.id;
          await onEntry(e);
          if (e.kind === "end" || e.kind === "error") return e.kind;
        }
        if (entries.length === 0) {
          const rec = await deps.store.get(jobId);
          // Ended with nothing more to read: the worker never streamed it (or its end is gone).
          if (!rec || (isTerminal(rec.view.status) && (await deps.streams.read(jobId, last)).length === 0))
            return "ended_without_stream";
        }
        if (entries.length > 0) continue;
      }
      const left = deadline - Date.now();
      if (left <= 0) return "timeout";
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, Math.min(left, 5_000));
        wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      wake = undefined;
      dirty = true;
    }
  } finally {
    stream.stop();
    status.stop();
    signal.removeEventListener("abort", poke);
  }
}
