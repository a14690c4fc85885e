import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { z } from "zod";
import { freePort } from "./ports";

/**
 * A real Prometheus for tests (Debian's `prometheus` package: scripts/test.sh installs it with
 * apt-get when it is missing, as it does redis-server). `findPrometheus` says where the binaries
 * are, or undefined when they are not installed.
 */
export interface PrometheusBinaries {
  prometheus: string;
  promtool: string;
}

export function findPrometheus(): PrometheusBinaries | undefined {
  const which = (name: string) => {
    const r = spawnSync("sh", ["-c", `command -v ${name}`], { encoding: "utf8" });
    return r.status === 0 ? r.stdout.trim() : undefined;
  };
  const prometheus = which("prometheus");
  const promtool = which("promtool");
  return prometheus && promtool ? { prometheus, promtool } : undefined;
}

const vectorSchema = z.object({
  status: z.literal("success"),
  data: z.object({
    resultType: z.string(),
    result: z.array(z.object({ metric: z.record(z.string(), z.string()) })),
  }),
});

export interface PrometheusHandle {
  url: string;
  /** An instant query: the series it returns (their labels). Throws on a query error. */
  query(expr: string): Promise<Record<string, string>[]>;
  /** GET a JSON API path (e.g. /api/v1/rules). */
  get(path: string): Promise<unknown>;
  output(): string;
  stop(): Promise<void>;
}

/** Starts Prometheus with the given configuration (its rule_files paths absolute) on a free port. */
export async function startPrometheus(binary: string, configYaml: string): Promise<PrometheusHandle> {
  const dir = mkdtempSync(join(tmpdir(), "switchyard-prometheus-"));
  const config = join(dir, "prometheus.yml");
  writeFileSync(config, configYaml);
  const port = await freePort();
  const child: ChildProcess = spawn(
    binary,
    [
      `--config.file=${config}`,
      `--storage.tsdb.path=${join(dir, "data")}`,
      `--web.listen-address=127.0.0.1:${port}`,
      "--log.level=warn",
    ],
    { stdio: ["ignore", "pipe", "pipe"] },
  );
  let out = "";
  child.stdout?.on("data", (d: Buffer) => (out += d.toString()));
  child.stderr?.on("data", (d: Buffer) => (out += d.toString()));
  const url = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 30_000;
  for (;;) {
    if (child.exitCode !== null)
      throw new Error(`prometheus exited (${child.exitCode}): ${out.slice(-2000)}`);
    const ready = await fetch(`${url}/-/ready`).then(
      (r) => r.ok,
      () => false,
    );
    if (ready) break;
    if (Date.now() > deadline) throw new Error(`prometheus not ready within 30 s: ${out.slice(-2000)}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  const get = async (path: string): Promise<unknown> => {
    const res = await fetch(`${url}${path}`);
    const body: unknown = await res.json();
    if (!res.ok) throw new Error(`prometheus ${path}: ${res.status} ${JSON.stringify(body).slice(0, 500)}`);
    return body;
  };
  return {
    url,
    get,
    query: async (expr) => {
      const body = vectorSchema.parse(await get(`/api/v1/query?query=${encodeURIComponent(expr)}`));
      return body.data.result.map((r) => r.metric);
    },
    output: () => out,
    stop: async () => {
      if (child.exitCode === null) {
        const done = new Promise((r) => child.once("exit", r));
        child.kill("SIGTERM");
        await done;
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/**
 * An alert expression as a query that returns every series it compares, whether the alert
 * would fire or not: each comparison (outside label matchers and strings) becomes a `bool`
 * comparison, which keeps the series and answers 0 or 1.
 */
export function comparedSeries(expr: string): string {
  let out = "";
  let braces = 0;
  let quote: string | undefined;
  for (let i = 0; i < expr.length; i++) {
    const c = expr.charAt(i);
    out += c;
    if (quote) {
      if (c === "\\") {
        out += expr.charAt(++i);
      } else if (c === quote) quote = undefined;
      continue;
    }
    if (c === '"' || c === "'" || c === "`") quote = c;
    else if (c === "{") braces++;
    else if (c === "}") braces--;
    else if (braces === 0 && (c === ">" || c === "<" || c === "=" || c === "!")) {
      const next = expr.charAt(i + 1);
      const two = c + next;
      const isComparison =
        [">=", "<=", "==", "!="].includes(two) || ((c === ">" || c === "<") && next !== "=");
      if (!isComparison) continue;
      if (two.length === 2 && next === "=") {
        out += next;
        i++;
      }
      if (!/^\s*bool\b/.test(expr.slice(i + 1))) out += " bool";
    }
  }
  return out;
}
