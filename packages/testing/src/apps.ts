import { spawn, type ChildProcess } from "node:child_process";
import { existsSync } from "node:fs";
import { resolve } from "node:path";

export const REPO_ROOT = resolve(__dirname, "../../..");

export type AppName = "api" | "worker" | "mock-provider";

export interface AppProcess {
  name: string;
  child: ChildProcess;
  /** Everything the process printed so far (for assertions and failure messages). */
  output(): string;
  /** Resolves when a line of output (printed after the first `from` characters) matches. */
  waitForOutput(pattern: RegExp, timeoutMs?: number, from?: number): Promise<string>;
  stop(signal?: NodeJS.Signals, timeoutMs?: number): Promise<number | null>;
  kill(): Promise<void>;
}

/**
 * What the API and a worker are started with (docker-compose.yml sets the same): a young
 * generation of up to 64 MB per semi-space instead of V8's 16. A job's state lives as long as its
 * upstream call; with the default size, scavenges come often enough that calls of a second
 * survive them and are promoted, and the old generation fills with them (mark-compacts of 15-35
 * ms at 300-400 jobs/s per two workers). With 64 MB they mostly die young: 4x fewer scavenges and
 * no mark-compacts in the README's runs, for up to ~100 MB more RSS under load. The API's
 * requests in flight are copied at every scavenge the same way: its share of time in GC under
 * ingest went from 7-8% to 4-5% (CPU profiles, alternated).
 */
export const APP_NODE_OPTIONS = "--max-semi-space-size=64";

/**
 * Starts a built app (<root>/apps/<name>/dist/main.js) as a real process. `root` is this checkout
 * unless given (the bench's before-after runs an older build of the repository).
 */
export function startApp(
  name: AppName,
  env: Record<string, string>,
  label: string = name,
  nodeArgs: string[] = [],
  root: string = REPO_ROOT,
): AppProcess {
  const main = resolve(root, "apps", name, "dist/main.js");
  if (!existsSync(main)) throw new Error(`${main} is missing: build first (pnpm build)`);
  const child = spawn(process.execPath, ["--enable-source-maps", ...nodeArgs, main], {
    env: {
      PATH: process.env.PATH ?? "",
      LOG_LEVEL: "info",
      ...(name === "worker" || name === "api" ? { NODE_OPTIONS: APP_NODE_OPTIONS } : {}),
      ...env,
    },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let out = "";
  const listeners = new Set<() => void>();
  const onData = (d: Buffer) => {
    out += d.toString();
    if (out.length > 2_000_000) out = out.slice(-1_000_000);
    for (const l of [...listeners]) l();
  };
  child.stdout?.on("data", onData);
  child.stderr?.on("data", onData);
  let stopping = false;
  const exit = new Promise<number | null>((r) =>
    child.once("exit", (code, signal) => {
      // A process that dies on its own is the first thing to know when tests then fail.
      if (!stopping)
        process.stderr.write(
          `\n${label} exited on its own (code ${code}, signal ${signal}); its last output:\n${out.slice(-4000)}\n`,
        );
      r(code);
    }),
  );

  const waitForOutput = (pattern: RegExp, timeoutMs = 20_000, from = 0): Promise<string> =>
    new Promise((resolvePromise, reject) => {
      const check = () => {
        const m = pattern.exec(from > 0 ? out.slice(Math.min(from, out.length)) : out);
        if (m) {
          cleanup();
          resolvePromise(m[0]);
        }
      };
      const timer = setTimeout(() => {
        cleanup();
        reject(
          new Error(
            `${label}: no output matching ${pattern} within ${timeoutMs} ms. Output:\n${out.slice(-4000)}`,
          ),
        );
      }, timeoutMs);
      const onExit = (code: number | null) => {
        cleanup();
        reject(
          new Error(`${label} exited (${code}) before printing ${pattern}. Output:\n${out.slice(-4000)}`),
        );
      };
      const cleanup = () => {
        clearTimeout(timer);
        listeners.delete(check);
        child.off("exit", onExit);
      };
      listeners.add(check);
      child.once("exit", onExit);
      check();
    });

  return {
    name: label,
    child,
    output: () => out,
    waitForOutput,
    stop: async (signal = "SIGTERM", timeoutMs = 20_000) => {
      if (child.exitCode !== null || child.signalCode !== null) return child.exitCode;
      stopping = true;
      child.kill(signal);
      const timer = setTimeout(() => child.kill("SIGKILL"), timeoutMs);
      const code = await exit;
      clearTimeout(timer);
      return code;
    },
    kill: async () => {
      if (child.exitCode !== null || child.signalCode !== null) return;
      stopping = true;
      child.kill("SIGKILL");
      await exit;
    },
  };
}
