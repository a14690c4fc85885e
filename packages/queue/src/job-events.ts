import type { Redis } from "ioredis";

/**
 * Changes of jobs (status changes, or a streamed job's new stream entries), heard over Redis
 * pub/sub on one channel per job. A process subscribes to a job's channel only while something
 * in it waits for that job (a long-poll, an SSE follower) and unsubscribes when the last one
 * leaves; nobody polls Redis. A change nobody waits for is published to a channel with no
 * subscribers, which costs Redis a lookup and no process anything: with one channel for all
 * jobs, every API process used to receive and parse every job's changes (two messages per job
 * per API replica, whether anyone waited or not).
 *
 * Messages read "<jobId> <status or kind>".
 */
export type JobEventListener = (jobId: string, status: string) => void;

/** A listener's registration: `ready` settles once the job's channel is subscribed. */
export interface JobEventsSubscription {
  stop(): void;
  /**
   * Settles once Redis has confirmed the subscription (rejects if it failed). A caller reads the
   * job's current state after this, so that no change falls between its read and the
   * subscription. While Redis is unreachable it stays pending: callers bound their own waits.
   */
  ready: Promise<void>;
}

interface Channel {
  jobId: string;
  listeners: Set<JobEventListener>;
  ready: Promise<void>;
}

export class JobEvents {
  private readonly channels = new Map<string, Channel>();

  /** `channelOf(jobId)`: the job's channel (Keys.jobEvents or Keys.jobStreamEvents). */
  constructor(
    private readonly subscriber: Redis,
    private readonly channelOf: (jobId: string) => string,
  ) {
    // Subscribe again on every (re)connect. ioredis resubscribes by itself, but we saw a
    // connection come up unsubscribed (long-polls then slept their full wait); a repeated
    // SUBSCRIBE to the same channel is harmless.
    subscriber.on("ready", () => {
      const names = [...this.channels.keys()];
      if (names.length > 0) subscriber.subscribe(...names).catch(() => undefined);
    });
    // Several JobEvents may share one subscriber connection: each hears only its own channels.
    subscriber.on("message", (name: string, message: string) => {
      const ch = this.channels.get(name);
      if (!ch) return;
      const space = message.indexOf(" ");
      if (space <= 0 || message.slice(0, space) !== ch.jobId) return;
      const status = message.slice(space + 1);
      for (const l of [...ch.listeners]) l(ch.jobId, status);
    });
  }

  /** Listens for one job's changes until `stop()`. */
  listen(jobId: string, listener: JobEventListener): JobEventsSubscription {
    const name = this.channelOf(jobId);
    let ch = this.channels.get(name);
    if (!ch) {
      const ready = this.subscriber.subscribe(name).then(() => undefined);
      // Left alone (the caller may stop before it settles), a failure must not end the process;
      // the "ready" handler subscribes again on the next connection.
      ready.catch(() => undefined);
      ch = { jobId, listeners: new Set(), ready };
      this.channels.set(name, ch);
    }
    const mine = ch;
    mine.listeners.add(listener);
    let stopped = false;
    return {
      ready: mine.ready,
      stop: () => {
        if (stopped) return;
        stopped = true;
        mine.listeners.delete(listener);
        if (mine.listeners.size > 0 || this.channels.get(name) !== mine) return;
        this.channels.delete(name);
        // In order on the connection: a later listen's SUBSCRIBE to the same channel follows it.
        this.subscriber.unsubscribe(name).catch(() => undefined);
      },
    };
  }

  /** Jobs with a subscription in this process (each one channel on the subscriber connection). */
  get subscribedJobs(): number {
    return this.channels.size;
  }
}
