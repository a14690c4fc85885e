import { createHash } from "node:crypto";
import { watch, watchFile, unwatchFile, type FSWatcher } from "node:fs";
import { basename, dirname } from "node:path";
import { readConfigFile, type SwitchyardConfig } from "./config";

/**
 * The running config of one process and its hot reload. `SIGHUP` or a change of the file reads
 * it again; a new version is parsed and validated first (an invalid file is refused with the
 * failing path and the running config stays), then every part of the process prepares what it
 * builds from the config, and only when all of them could, all switch at once. Work that had
 * started (a request, a job) keeps the version it started with.
 */

/** One loaded version: the config and where it came from. */
export interface ConfigVersion {
  readonly config: SwitchyardConfig;
  /** SHA-256 of the file's bytes, as `sha256sum` prints it: operators can compare it with their copy. */
  readonly hash: string;
  /** When this process loaded it, ms since epoch. */
  readonly loadedAt: number;
  readonly source: string;
  /** 1 for the config the process started with, +1 for each applied reload. */
  readonly version: number;
  /** Changed settings that only a restart applies (the running values were kept for them). */
  readonly restartRequired: readonly string[];
}

/**
 * What a reload came to: applied; unchanged (same bytes); invalid (not valid YAML or config,
 * refused); failed (valid, but a part of the process could not build from it, refused).
 */
export type ReloadResult = "applied" | "unchanged" | "invalid" | "failed";
export const RELOAD_RESULTS: readonly ReloadResult[] = ["applied", "unchanged", "invalid", "failed"];

export interface ReloadOutcome {
  result: ReloadResult;
  trigger: string;
  version: ConfigVersion;
  /** invalid/failed: why, naming the failing path; never a secret (config errors never echo values). */
  error?: string;
}

/**
 * A part of the process that builds from the config. It gets the next config and the running one
 * and returns what switches it over (or nothing to do); throwing refuses the whole reload.
 */
export type Preparer = (next: SwitchyardConfig, prev: SwitchyardConfig) => (() => void) | void;

export interface ConfigLog {
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
  error(obj: object, msg: string): void;
}

/**
 * Settings a running process cannot take over (the value it started with is kept, and
 * GET /admin/config lists them under restart_required): the key prefix names every Redis key,
 * and BullMQ takes its lock and stalled-check timings and the webhook agent its connect
 * timeout when they start.
 */
const RESTART_ONLY: readonly (readonly [
  string,
  (c: SwitchyardConfig) => unknown,
  (c: SwitchyardConfig, from: SwitchyardConfig) => void,
])[] = [
  ["queue.prefix", (c) => c.queue.prefix, (c, f) => (c.queue.prefix = f.queue.prefix)],
  [
    "worker.lock_duration_ms",
    (c) => c.worker.lock_duration_ms,
    (c, f) => (c.worker.lock_duration_ms = f.worker.lock_duration_ms),
  ],
  [
    "worker.stalled_interval_ms",
    (c) => c.worker.stalled_interval_ms,
    (c, f) => (c.worker.stalled_interval_ms = f.worker.stalled_interval_ms),
  ],
  [
    "webhooks.connect_timeout_ms",
    (c) => c.webhooks.connect_timeout_ms,
    (c, f) => (c.webhooks.connect_timeout_ms = f.webhooks.connect_timeout_ms),
  ],
];

const sha256 = (b: Buffer | string): string => createHash("sha256").update(b).digest("hex");

export class LiveConfig {
  private readonly preparers: Preparer[] = [];
  private readonly listeners: ((o: ReloadOutcome) => void)[] = [];
  private running: Promise<ReloadOutcome> | undefined;
  private again = false;
  private stopWatching: (() => void) | undefined;

  private constructor(
    private readonly path: string,
    private readonly env: NodeJS.ProcessEnv,
    private current_: ConfigVersion,
  ) {}

  /** Loads the file at start-up; an unreadable or invalid file throws (the process cannot start). */
  static open(path: string, env: NodeJS.ProcessEnv = process.env): LiveConfig {
    const { text, config } = readConfigFile(path, env);
    const version: ConfigVersion = {
      config,
      hash: sha256(text),
      loadedAt: Date.now(),
      source: path,
      version: 1,
      restartRequired: [],
    };
    return new LiveConfig(path, env, version);
  }

  /** A fixed config (tests, tools): reloads read `path` when given. */
  static of(config: SwitchyardConfig, source = "(inline)"): LiveConfig {
    const version: ConfigVersion = {
      config,
      hash: sha256(JSON.stringify(config)),
      loadedAt: Date.now(),
      source,
      version: 1,
      restartRequired: [],
    };
    return new LiveConfig(source, process.env, version);
  }

  get current(): ConfigVersion {
    return this.current_;
  }

  get config(): SwitchyardConfig {
    return this.current_.config;
  }

  /** Registers a part that builds from the config (see Preparer); parts switch in this order. */
  prepare(p: Preparer): void {
    this.preparers.push(p);
  }

  /** Called after every reload with its outcome (metrics, logs). */
  onReload(fn: (o: ReloadOutcome) => void): void {
    this.listeners.push(fn);
  }

  /**
   * Reads the file again and applies it. Reloads never overlap: one asked for while another
   * runs is done once after it (the file may have changed again meanwhile).
   */
  reload(trigger: string): Promise<ReloadOutcome> {
    if (this.running) {
      this.again = true;
      return this.running;
    }
    const run = async (): Promise<ReloadOutcome> => {
      let outcome = this.apply(trigger);
      while (this.again) {
        this.again = false;
        outcome = this.apply(trigger);
      }
      return outcome;
    };
    this.running = run().finally(() => (this.running = undefined));
    return this.running;
  }

  private apply(trigger: string): ReloadOutcome {
    const done = (result: ReloadResult, error?: string): ReloadOutcome => {
      const o: ReloadOutcome = { result, trigger, version: this.current_, ...(error ? { error } : {}) };
      for (const l of this.listeners) l(o);
      return o;
    };
    let text: string;
    let next: SwitchyardConfig;
    try {
      ({ text, config: next } = readConfigFile(this.path, this.env));
    } catch (err) {
      return done("invalid", err instanceof Error ? err.message : String(err));
    }
    const hash = sha256(text);
    if (hash === this.current_.hash) return done("unchanged");
    const prev = this.current_.config;
    const restartRequired: string[] = [];
    for (const [path, get, keep] of RESTART_ONLY)
      if (get(next) !== get(prev)) {
        restartRequired.push(path);
        keep(next, prev);
      }
    const commits: (() => void)[] = [];
    try {
      for (const p of this.preparers) {
        const commit = p(next, prev);
        if (commit) commits.push(commit);
      }
    } catch (err) {
      return done("failed", err instanceof Error ? err.message : String(err));
    }
    this.current_ = {
      config: next,
      hash,
      loadedAt: Date.now(),
      source: this.path,
      version: this.current_.version + 1,
      restartRequired,
    };
    for (const c of commits) c();
    return done("applied");
  }

  /**
   * Reloads on SIGHUP and when the file changes: fs.watch on its folder (editors that write a
   * new file and rename it, Kubernetes' ConfigMap symlink swap) and a once-a-second stat as a
   * fallback where watching is not supported. Events come in bursts: a reload runs 100 ms after
   * the last one. Returns the function that stops watching.
   */
  watch(log: ConfigLog): () => void {
    this.onReload((o) => {
      const fields = { trigger: o.trigger, hash: o.version.hash, version: o.version.version };
      if (o.result === "applied")
        log.info(
          { ...fields, restartRequired: o.version.restartRequired },
          o.version.restartRequired.length > 0
            ? "config reloaded; some changes need a restart to apply (see restartRequired)"
            : "config reloaded",
        );
      else if (o.result === "invalid" || o.result === "failed")
        log.error(
          { ...fields, error: o.error },
          "config reload refused; the running config stays. Fix the file and save it again (or send SIGHUP)",
        );
    });
    let timer: NodeJS.Timeout | undefined;
    const soon = (trigger: string) => {
      if (timer) clearTimeout(timer);
      timer = setTimeout(() => {
        timer = undefined;
        void this.reload(trigger);
      }, 100);
    };
    const onHup = () => void this.reload("sighup");
    process.on("SIGHUP", onHup);
    let watcher: FSWatcher | undefined;
    const name = basename(this.path);
    try {
      watcher = watch(dirname(this.path), (_event, file) => {
        // Kubernetes swaps a "..data" symlink; anything else in the folder is not ours.
        if (file === null || file === name || file.startsWith("..")) soon("file");
      });
      watcher.on("error", (err) => log.warn({ err: { message: err.message } }, "config file watch failed"));
    } catch (err) {
      log.warn({ err: { message: (err as Error).message } }, "cannot watch the config folder; polling it");
    }
    watchFile(this.path, { interval: 1_000, persistent: false }, (cur, prev) => {
      if (cur.mtimeMs !== prev.mtimeMs || cur.size !== prev.size || cur.ino !== prev.ino) soon("file");
    });
    this.stopWatching = () => {
      process.off("SIGHUP", onHup);
      watcher?.close();
      unwatchFile(this.path);
      if (timer) clearTimeout(timer);
    };
    return this.stopWatching;
  }

  close(): void {
    this.stopWatching?.();
  }
}
