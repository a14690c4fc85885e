import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pino from "pino";
import { LOG_DESTINATION, logDestination } from "./logger";

/**
 * Log lines are written in chunks (LOG_DESTINATION): they wait until 4 KiB have gathered or the
 * periodic flush comes, and what is left is written when the process exits. These tests hold the
 * parts of that which lose lines if they break.
 */
describe("the log destination", () => {
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), "switchyard-log-"));
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  const ready = (d: ReturnType<typeof logDestination>) =>
    new Promise<void>((resolve) => d.once("ready", () => resolve()));
  const read = (file: string) => {
    try {
      return readFileSync(file, "utf8");
    } catch {
      return "";
    }
  };

  it("holds a short line back, then writes it without being asked (the periodic flush)", async () => {
    const file = join(dir, "a.log");
    const dest = logDestination(file);
    await ready(dest);
    const log = pino({ base: null }, dest);
    log.info("held back");
    // Below minLength nothing is written in the same turn: no system call per line.
    expect(read(file)).toBe("");
    const deadline = Date.now() + 10_000;
    while (!read(file).includes("held back") && Date.now() < deadline)
      await new Promise((r) => setTimeout(r, 20));
    expect(read(file)).toContain('"msg":"held back"');
    dest.end();
  });

  it("writes every line, in order, once a chunk fills", async () => {
    const file = join(dir, "b.log");
    const dest = logDestination(file);
    await ready(dest);
    const log = pino({ base: null, timestamp: false }, dest);
    for (let i = 0; i < 2_000; i++) log.info({ i }, "line");
    await new Promise<void>((resolve, reject) => {
      dest.once("close", () => resolve());
      dest.once("error", reject);
      dest.end();
    });
    const got = read(file)
      .trim()
      .split("\n")
      .map((l) => (JSON.parse(l) as { i: number }).i);
    expect(got).toEqual(Array.from({ length: 2_000 }, (_, i) => i));
  });

  // A process that logs and exits at once (a fatal start-up error, a crash) must not lose its
  // last lines to the buffering: pino writes them synchronously on exit.
  it.each([
    ["process.exit", "log.fatal('last words'); process.exit(1);"],
    ["an uncaught exception", "log.fatal('last words'); setImmediate(() => { throw new Error('boom'); });"],
  ])("writes what is buffered when the process ends by %s", (_what, end) => {
    const script = `
      const pino = require(${JSON.stringify(require.resolve("pino"))});
      const log = pino({ base: null }, pino.destination({ dest: 1, ...${JSON.stringify(LOG_DESTINATION)} }));
      log.info('first');
      ${end}`;
    const child = spawnSync(process.execPath, ["-e", script], { encoding: "utf8", timeout: 20_000 });
    expect(child.status).toBe(1);
    const lines = child.stdout.trim().split("\n");
    expect(lines.map((l) => (JSON.parse(l) as { msg: string }).msg)).toEqual(["first", "last words"]);
  });
});
