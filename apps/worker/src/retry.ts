/**
 * Thrown by the runner to have BullMQ retry the job after exactly `delayMs` (the runner
 * computes it: backoff on the same link, the upstream's retry hint, or a circuit's reopen
 * time). The worker's backoff strategy reads it; nothing else decides retry timing.
 */
export class RetryLater extends Error {
  constructor(
    message: string,
    readonly delayMs: number,
  ) {
    super(message);
    this.name = "RetryLater";
  }
}
