import { execFile } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { promisify } from "node:util";
import { PAID_KEY, REPO_ROOT, Stack, testConfig } from "@switchyard/testing";

/** The `switchyard` CLI's job commands against a running stack, as a user would type them. */
const run = promisify(execFile);
const CLI = resolve(REPO_ROOT, "apps/cli/dist/main.js");

describe("switchyard CLI", () => {
  let stack: Stack;
  beforeAll(async () => {
    // Upstream calls may take 15 s here: the watched job runs long enough for a second CLI
    // process to start and connect while it runs, even on a loaded machine.
    stack = await Stack.start({
      workers: 1,
      config: (mockUrl, prefix) => {
        const cfg = testConfig(mockUrl, prefix);
        for (const p of cfg.providers as Record<string, unknown>[]) p.timeout_ms = 15_000;
        return cfg;
      },
    });
  });
  afterAll(async () => {
    await stack?.stop();
  });
  const cli = (args: string[], env: Record<string, string> = {}) =>
    run(process.execPath, [CLI, ...args], {
      env: { PATH: process.env.PATH ?? "", SWITCHYARD_URL: stack.apiUrl, SWITCHYARD_KEY: PAID_KEY, ...env },
    }).then(
      (r) => ({ code: 0, stdout: r.stdout, stderr: r.stderr }),
      (e: { code: number; stdout: string; stderr: string }) => ({
        code: e.code,
        stdout: e.stdout,
        stderr: e.stderr,
      }),
    );

  it("submits, waits and prints the answer; gets the job as JSON", async () => {
    const done = await cli(["submit", "--wait", "--text", "hello from the cli"]);
    expect(done).toMatchObject({ code: 0, stdout: "Echo: hello from the cli\n" });
    const queued = await cli(["submit", "-m", "fast", "--priority", "high", "another one"]);
    const job = JSON.parse(queued.stdout) as {
      id: string;
      status: string;
      estimated_start_seconds: number | null;
    };
    expect(job.status).toBe("queued");
    const got = await cli(["get", job.id, "--wait", "10"]);
    expect(JSON.parse(got.stdout)).toMatchObject({ id: job.id, status: "succeeded", priority: "high" });
  });

  it("watches a job live until it ends, then prints its answer", async () => {
    const queued = await cli(["submit", "[[mock:delay=4000]] watch me"]);
    const { id } = JSON.parse(queued.stdout) as { id: string };
    const watched = await cli(["watch", id]);
    expect(watched.code).toBe(0);
    const lines = watched.stdout.trim().split("\n");
    expect(lines.some((l) => l.includes(`${id}  running`))).toBe(true);
    expect(lines.some((l) => l.includes(`${id}  succeeded`))).toBe(true);
    expect(lines.at(-1)).toBe("Echo: watch me");
  });

  it("runs a batch from a JSONL file with a progress view, then prints its results", async () => {
    const dir = mkdtempSync(join(tmpdir(), "switchyard-cli-"));
    const file = join(dir, "requests.jsonl");
    const lines = Array.from({ length: 50 }, (_, i) =>
      JSON.stringify({
        custom_id: `c-${i}`,
        method: "POST",
        url: "/v1/chat/completions",
        body: { model: "gpt-4o-mini", messages: [{ role: "user", content: `cli batch ${i}` }] },
      }),
    );
    lines[7] = "not json";
    writeFileSync(file, lines.join("\n"));
    const created = await cli(["batch", "create", file]);
    expect(created.code).toBe(0);
    expect(created.stderr).toMatch(/line 8: invalid_json/);
    const id = /(batch_[0-9a-f]+) completed/.exec(created.stdout)?.[1] ?? "";
    expect(created.stdout).toContain('{"total":50,"completed":49,"failed":1}');
    const results = await cli(["batch", "results", id]);
    expect(results.stdout.trim().split("\n")).toHaveLength(49);
    const errors = await cli(["batch", "results", id, "--errors"]);
    expect(errors.stdout.trim().split("\n")).toHaveLength(1);
    const watched = await cli(["watch", id]);
    expect(watched.stdout).toContain(`${id} completed`);
    rmSync(dir, { recursive: true, force: true });
  });

  it("says what to do next when something is wrong", async () => {
    const noKey = await cli(["get", "job_x"], { SWITCHYARD_KEY: "" });
    expect(noKey.code).toBe(2);
    expect(noKey.stderr).toMatch(/set SWITCHYARD_KEY/);
    const badKey = await cli(["submit", "hi"], { SWITCHYARD_KEY: "sk-nobody-1234" });
    expect(badKey.code).toBe(1);
    expect(badKey.stderr).toMatch(/401/);
    const down = await cli(["get", "job_x"], { SWITCHYARD_URL: "http://127.0.0.1:9" });
    expect(down.stderr).toMatch(/cannot reach .*SWITCHYARD_URL/);
    const failed = await cli(["submit", "--wait", "[[mock:status=400]] nope"]);
    expect(failed.code).toBe(1);
    expect(failed.stderr).toMatch(/ended failed/);
  });
});

describe("switchyard demo", () => {
  it("runs the service end to end on its embedded defaults and keeps the processes' logs", async () => {
    // The README's first command, with fewer jobs: its own redis-server, the mock, the API and
    // a worker on config/demo.yaml (REDIS_URL unset, so nothing else on the machine is used).
    const r = await run(process.execPath, [CLI, "demo", "--once", "--jobs", "6"], {
      env: { PATH: process.env.PATH ?? "", TMPDIR: tmpdir() },
      timeout: 50_000,
    });
    expect(r.stdout).toMatch(/summary: 6 succeeded, 0 failed/);
    const dir = /the processes' logs of this run: (\S+)/.exec(r.stdout)?.[1] ?? "";
    expect(dir).not.toBe("");
    try {
      expect(readFileSync(join(dir, "api.log"), "utf8")).toMatch(/"url":"\/v1\/jobs"[^\n]*request completed/);
      expect(readFileSync(join(dir, "worker.log"), "utf8")).toMatch(/worker ready/);
      expect(readFileSync(join(dir, "mock.log"), "utf8")).toMatch(/mock provider listening/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
