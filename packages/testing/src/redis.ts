import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Redis } from "ioredis";
import { freePort } from "./ports";

/** Deletes every key under each prefix (a test's own keys on a shared test server). Typed by shape. */
export async function deleteKeysUnder(
  redis: { keys(pattern: string): Promise<string[]>; del(...keys: string[]): Promise<number> },
  prefixes: readonly string[],
): Promise<void> {
  for (const p of prefixes) {
    const found = await redis.keys(`${p}*`);
    if (found.length) await redis.del(...found);
  }
}

export interface RedisHandle {
  url: string;
  port: number;
  /** The process started (the wrapper's, when there is one). */
  pid: number | undefined;
  /** SIGTERM, then removes the data folder. */
  stop(): Promise<void>;
  /** SIGKILL, as a crash or an OOM kill would end it; the data folder stays for a restart. */
  kill(): Promise<void>;
  /** SIGSTOP / SIGCONT: a server that holds its connections open but answers nothing. */
  pause(): void;
  resume(): void;
}

export interface RedisOptions {
  /** A given port (e.g. to restart a killed server where its clients reconnect). */
  port?: number;
  /** A data folder to reuse (a restart finds what the append-only file kept). */
  dir?: string;
  /** Append-only file with fsync on every write, as production runs it: nothing acknowledged is lost. */
  persist?: boolean;
  /** A memory limit (e.g. "256mb"), as production sets one; none by default. */
  maxmemory?: string;
  /** A command that runs redis-server with the arguments after it, e.g. valgrind and its flags. */
  wrapper?: string[];
}

/**
 * Starts a throwaway redis-server on a free port, configured as production should be
 * (noeviction), persisting nothing unless asked. Fails with a message saying how to get redis-server.
 */
export async function startRedis(opts: RedisOptions = {}): Promise<RedisHandle> {
  const port = opts.port ?? (await freePort());
  const dir = opts.dir ?? mkdtempSync(join(tmpdir(), "switchyard-redis-"));
  const args = [
    "--port",
    String(port),
    "--bind",
    "127.0.0.1",
    "--save",
    "",
    "--appendonly",
    opts.persist ? "yes" : "no",
    "--appendfsync",
    "always",
    "--maxmemory-policy",
    "noeviction",
    "--dir",
    dir,
    ...(opts.maxmemory ? ["--maxmemory", opts.maxmemory] : []),
  ];
  let child: ChildProcess;
  try {
    const [command, ...before] = opts.wrapper ?? [];
    child = command
      ? spawn(command, [...before, "redis-server", ...args], { stdio: ["ignore", "pipe", "pipe"] })
      : spawn("redis-server", args, { stdio: ["ignore", "pipe", "pipe"] });
  } catch (err) {
    throw new Error(
      `cannot start redis-server (${(err as Error).message}); install it (apt-get install redis-server) or set REDIS_URL`,
      { cause: err },
    );
  }
  let output = "";
  child.stdout?.on("data", (d: Buffer) => (output += d.toString()));
  child.stderr?.on("data", (d: Buffer) => (output += d.toString()));
  const exited = new Promise<never>((_, reject) => {
    child.once("error", (err) =>
      reject(
        new Error(
          `redis-server did not start: ${err.message}; install it (apt-get install redis-server) or set REDIS_URL`,
        ),
      ),
    );
    child.once("exit", (code) =>
      reject(new Error(`redis-server exited with ${code}: ${output.slice(-500)}`)),
    );
  });
  const url = `redis://127.0.0.1:${port}`;
  await Promise.race([waitForPing(url), exited]);
  const end = async (signal: NodeJS.Signals) => {
    if (child.exitCode === null && child.signalCode === null) {
      const done = new Promise((r) => child.once("exit", r));
      child.kill(signal);
      await done;
    }
  };
  return {
    url,
    port,
    pid: child.pid,
    stop: async () => {
      await end("SIGTERM");
      rmSync(dir, { recursive: true, force: true });
    },
    kill: () => end("SIGKILL"),
    pause: () => void child.kill("SIGSTOP"),
    resume: () => void child.kill("SIGCONT"),
  };
}

async function waitForPing(url: string): Promise<void> {
  const deadline = Date.now() + 15_000;
  for (;;) {
    const client = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
    client.on("error", () => {}); // refused connections while the server starts are expected
    try {
      await client.connect();
      await client.ping();
      return;
    } catch {
      if (Date.now() > deadline) throw new Error(`redis at ${url} did not answer PING within 15 s`);
      await new Promise((r) => setTimeout(r, 50));
    } finally {
      client.disconnect();
    }
  }
}
