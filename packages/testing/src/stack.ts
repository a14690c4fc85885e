import { createHash, randomBytes } from "node:crypto";
import { mkdtempSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { stringify } from "yaml";
import { configSchema, type SwitchyardConfig } from "@switchyard/core";
import { startApp, type AppProcess } from "./apps";

/** The Redis every integration test shares: REDIS_URL when given, else the one global setup started. */
export function testRedisUrl(): string {
  const url = process.env.SWITCHYARD_TEST_REDIS_URL ?? process.env.REDIS_URL;
  if (!url)
    throw new Error(
      "no test Redis: run tests through jest (its global setup starts redis-server) or set REDIS_URL",
    );
  return url;
}

/** A key prefix no other test uses, so tests never see each other's keys. */
export const uniquePrefix = (): string => `{t${randomBytes(5).toString("hex")}}`;

export const PAID_KEY = "sk-test-paid-0001";
export const FREE_KEY = "sk-test-free-0001";
export const OTHER_KEY = "sk-test-other-001";

type DeepPartial<T> = { [K in keyof T]?: T[K] extends object ? DeepPartial<T[K]> : T[K] };
export type ConfigDoc = Record<string, unknown>;

/** A config for tests: three tenants, one OpenAI provider at the mock, short retries. */
export function testConfig(
  mockUrl: string,
  prefix: string,
  overrides: DeepPartial<Record<string, Record<string, unknown>>> = {},
): ConfigDoc {
  const base: ConfigDoc = {
    queue: {
      prefix,
      attempts: 4,
      backoff_base_ms: 50,
      backoff_max_ms: 500,
      retention_hours: 1,
      ...overrides.queue,
    },
    worker: {
      concurrency: 64,
      lock_duration_ms: 2000,
      stalled_interval_ms: 1000,
      shutdown_grace_ms: 5000,
      ...overrides.worker,
    },
    server: { max_body_bytes: 65536, max_wait_seconds: 30, ...overrides.server },
    // Breakers are off here so failure tests stay independent; routing tests turn them on.
    providers: [
      {
        id: "openai",
        type: "openai",
        base_url: `${mockUrl}/v1`,
        timeout_ms: 3000,
        connect_timeout_ms: 1000,
        keys: [{ id: "k1", secret: "sk-upstream-1" }],
        breaker: { enabled: false },
      },
      {
        id: "anthropic",
        type: "anthropic",
        base_url: mockUrl,
        timeout_ms: 3000,
        connect_timeout_ms: 1000,
        keys: [{ id: "a1", secret: "sk-ant-upstream-1" }],
        breaker: { enabled: false },
      },
      {
        id: "gemini",
        type: "gemini",
        base_url: mockUrl,
        timeout_ms: 3000,
        connect_timeout_ms: 1000,
        keys: [{ id: "g1", secret: "gm-upstream-1" }],
        breaker: { enabled: false },
      },
    ],
    models: {
      "gpt-4o-mini": { provider: "openai" },
      fast: { provider: "openai", model: "gpt-4o-mini" },
      "claude-sonnet-4-6": { provider: "anthropic" },
      "gemini-2.5-flash": { provider: "gemini" },
      smart: {
        chain: [
          { provider: "openai", model: "gpt-4o" },
          { provider: "anthropic", model: "claude-sonnet-4-6" },
          { provider: "gemini", model: "gemini-2.5-flash" },
        ],
      },
    },
    tenants: [
      { id: "paid-co", tier: "paid", api_keys: [PAID_KEY] },
      { id: "free-co", tier: "free", api_keys: [FREE_KEY] },
      { id: "other-co", tier: "paid", api_keys: [OTHER_KEY], dedicated_queue: true },
    ],
  };
  return base;
}

/**
 * The smallest valid config (one provider, one model, one tenant) with `extra` sections merged
 * in, parsed: for unit and integration tests that need a SwitchyardConfig but no stack.
 */
export function minimalConfig(extra: Record<string, unknown> = {}): SwitchyardConfig {
  return configSchema.parse({
    providers: [{ id: "openai", type: "openai", keys: [{ id: "k", secret: "s" }] }],
    models: { m: { provider: "openai" } },
    tenants: [{ id: "t", tier: "paid", api_keys: ["sk-test-12345"] }],
    ...extra,
  });
}

export interface StackOptions {
  workers?: number;
  mockEnv?: Record<string, string>;
  config?: (mockUrl: string, prefix: string) => ConfigDoc;
  adminToken?: string;
  /** Extra environment for the API process and for every worker process. */
  apiEnv?: Record<string, string>;
  workerEnv?: Record<string, string>;
  /** A Redis of the test's own (e.g. one it kills); default: the shared test Redis. */
  redisUrl?: string;
}

/**
 * Mock provider, API and N workers as real processes on one test Redis with a fresh prefix.
 * Workers can be added or killed during a test.
 */
export class Stack {
  readonly apiUrl: string;
  readonly mockUrl: string;
  readonly workers: AppProcess[] = [];
  /** API processes started after the first (a fleet of several). */
  readonly moreApis: AppProcess[] = [];
  /** How much each process had printed when the config was last rewritten. */
  private readonly outputAtWrite = new Map<AppProcess, number>();
  private constructor(
    readonly redisUrl: string,
    readonly prefix: string,
    readonly configPath: string,
    private readonly dir: string,
    readonly mock: AppProcess,
    readonly api: AppProcess,
    apiPort: number,
    mockPort: number,
    private readonly workerEnv: Record<string, string> = {},
  ) {
    this.apiUrl = `http://127.0.0.1:${apiPort}`;
    this.mockUrl = `http://127.0.0.1:${mockPort}`;
  }

  static async start(opts: StackOptions = {}): Promise<Stack> {
    const redisUrl = opts.redisUrl ?? testRedisUrl();
    const prefix = uniquePrefix();
    const dir = mkdtempSync(join(tmpdir(), "switchyard-test-"));
    const configPath = join(dir, "config.yaml");
    // Every server listens on a port the OS picks at bind time and says which in its log: a
    // port picked free beforehand could be taken by a parallel test before the server binds it.
    const mock = startApp("mock-provider", { PORT: "0", ...opts.mockEnv }, "mock");
    const mockPort = await listeningPort(mock, /"port":(\d+)[^\n]*mock provider listening/);
    const mockUrl = `http://127.0.0.1:${mockPort}`;
    writeFileSync(configPath, stringify((opts.config ?? testConfig)(mockUrl, prefix)));
    const api = startApp(
      "api",
      {
        PORT: "0",
        HOST: "127.0.0.1",
        REDIS_URL: redisUrl,
        SWITCHYARD_CONFIG: configPath,
        ...(opts.adminToken ? { SWITCHYARD_ADMIN_TOKEN: opts.adminToken } : {}),
        ...opts.apiEnv,
      },
      "api",
    );
    const apiPort = await listeningPort(api, /"port":(\d+)[^\n]*api listening/);
    const stack = new Stack(redisUrl, prefix, configPath, dir, mock, api, apiPort, mockPort, opts.workerEnv);
    for (let i = 0; i < (opts.workers ?? 1); i++) await stack.addWorker();
    return stack;
  }

  async addWorker(env: Record<string, string> = {}): Promise<AppProcess> {
    const w = startApp(
      "worker",
      { REDIS_URL: this.redisUrl, SWITCHYARD_CONFIG: this.configPath, ...this.workerEnv, ...env },
      `worker${this.workers.length + 1}`,
    );
    this.workers.push(w);
    await w.waitForOutput(/worker ready/);
    return w;
  }

  /** Another API process on the same Redis and config; returns its base URL. */
  async addApi(env: Record<string, string> = {}): Promise<string> {
    const api = startApp(
      "api",
      { PORT: "0", HOST: "127.0.0.1", REDIS_URL: this.redisUrl, SWITCHYARD_CONFIG: this.configPath, ...env },
      `api${this.moreApis.length + 2}`,
    );
    this.moreApis.push(api);
    return `http://127.0.0.1:${await listeningPort(api, /"port":(\d+)[^\n]*api listening/)}`;
  }

  async stop(): Promise<void> {
    await Promise.all([
      ...this.workers.map((w) => w.stop("SIGTERM")),
      ...this.moreApis.map((a) => a.stop("SIGTERM")),
      this.api.stop("SIGTERM"),
      this.mock.stop("SIGTERM"),
    ]);
    rmSync(this.dir, { recursive: true, force: true });
  }

  /**
   * Replaces the config file the processes run on (they reload it on their own) and returns its
   * hash, as GET /admin/config and the processes' "config reloaded" lines show it. The file is
   * written to a new name and renamed over the old one, as editors and Kubernetes do.
   */
  writeConfig(doc: ConfigDoc | string): string {
    const text = typeof doc === "string" ? doc : stringify(doc);
    for (const p of this.processes()) this.outputAtWrite.set(p, p.output().length);
    const tmp = `${this.configPath}.new`;
    writeFileSync(tmp, text);
    renameSync(tmp, this.configPath);
    return createHash("sha256").update(text).digest("hex");
  }

  /**
   * Waits until every API and worker process logged, since the last writeConfig, that it runs the
   * config with `hash`.
   */
  async waitForConfig(hash: string, timeoutMs = 20_000): Promise<void> {
    const line = new RegExp(`"hash":"${hash}"[^\\n]*"msg":"config reloaded`);
    await Promise.all(
      this.processes().map((p) => p.waitForOutput(line, timeoutMs, this.outputAtWrite.get(p) ?? 0)),
    );
  }

  private processes(): AppProcess[] {
    return [this.api, ...this.moreApis, ...this.workers];
  }

  /** Output of every process, for a failing test's message. */
  logs(): string {
    return [this.api, this.mock, ...this.workers]
      .map((p) => `----- ${p.name}\n${p.output().slice(-3000)}`)
      .join("\n");
  }
}

/** The port a server reports in its "listening" log line. */
async function listeningPort(app: AppProcess, line: RegExp): Promise<number> {
  const m = line.exec(await app.waitForOutput(line));
  const port = Number(m?.[1]);
  if (!Number.isInteger(port) || port <= 0) throw new Error(`${app.name}: no port in its listening line`);
  return port;
}
