import { createHash } from "node:crypto";
import { mkdtempSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { LiveConfig, type ReloadOutcome } from "./live-config";

const base = (tenant: string, extra = "") => `
providers:
  - { id: openai, type: openai, keys: [{ id: k1, secret: sk-live-config-test, rpm: 60 }] }
models:
  m: { provider: openai }
tenants:
  - { id: ${tenant}, tier: paid, api_keys: [sk-tenant-key-0001] }
${extra}`;

const sha = (s: string) => createHash("sha256").update(s).digest("hex");
const silent = { info: () => {}, warn: () => {}, error: () => {} };

describe("LiveConfig", () => {
  let dir: string;
  let path: string;
  const write = (text: string) => {
    writeFileSync(`${path}.tmp`, text);
    renameSync(`${path}.tmp`, path);
  };
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), "live-config-"));
    path = join(dir, "config.yaml");
    write(base("first"));
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it("opens the file as version 1 with the hash of its bytes", () => {
    const live = LiveConfig.open(path);
    expect(live.current.version).toBe(1);
    expect(live.current.hash).toBe(sha(base("first")));
    expect(live.current.source).toBe(path);
    expect(live.config.tenants[0]?.id).toBe("first");
  });

  it("applies a valid change: every part prepares first, then all switch, in order", async () => {
    const live = LiveConfig.open(path);
    const calls: string[] = [];
    live.prepare((next, prev) => {
      calls.push(`prepare a ${prev.tenants[0]?.id}->${next.tenants[0]?.id}`);
      return () => calls.push("commit a");
    });
    live.prepare(() => {
      calls.push("prepare b");
      return () => calls.push(`commit b sees version ${live.current.version}`);
    });
    write(base("second"));
    const o = await live.reload("test");
    expect(o.result).toBe("applied");
    expect(calls).toEqual(["prepare a first->second", "prepare b", "commit a", "commit b sees version 2"]);
    expect(live.config.tenants[0]?.id).toBe("second");
    expect(live.current.hash).toBe(sha(base("second")));
  });

  it("says unchanged for the same bytes and prepares nothing", async () => {
    const live = LiveConfig.open(path);
    const prepared = jest.fn();
    live.prepare(prepared);
    expect((await live.reload("test")).result).toBe("unchanged");
    expect(prepared).not.toHaveBeenCalled();
    expect(live.current.version).toBe(1);
  });

  it("refuses an invalid file with the failing path and keeps the running config", async () => {
    const live = LiveConfig.open(path);
    const prepared = jest.fn();
    live.prepare(prepared);
    write(base("second", "queue: { attempts: many }"));
    const o = await live.reload("test");
    expect(o.result).toBe("invalid");
    expect(o.error).toMatch(/queue\.attempts/);
    expect(prepared).not.toHaveBeenCalled();
    expect(live.config.tenants[0]?.id).toBe("first");
    write("tenants: [unclosed");
    expect(await live.reload("test")).toMatchObject({
      result: "invalid",
      error: expect.stringMatching(/YAML/),
    });
  });

  it("refuses the whole reload when one part cannot build from it: nothing switches", async () => {
    const live = LiveConfig.open(path);
    const committed = jest.fn();
    live.prepare(() => committed);
    live.prepare(() => {
      throw new Error("cannot build the new routes");
    });
    write(base("second"));
    const o = await live.reload("test");
    expect(o).toMatchObject({ result: "failed", error: "cannot build the new routes" });
    expect(committed).not.toHaveBeenCalled();
    expect(live.config.tenants[0]?.id).toBe("first");
    expect(live.current.version).toBe(1);
  });

  it("keeps restart-only settings at their running values and says so", async () => {
    const live = LiveConfig.open(path);
    write(base("second", "queue: { prefix: '{other}' }\nworker: { concurrency: 8 }"));
    const o = await live.reload("test");
    expect(o.result).toBe("applied");
    expect(live.current.restartRequired).toEqual(["queue.prefix"]);
    expect(live.config.queue.prefix).toBe("{sy}");
    expect(live.config.worker.concurrency).toBe(8);
  });

  it("reloads on SIGHUP and when the file is replaced", async () => {
    const live = LiveConfig.open(path);
    const outcomes: ReloadOutcome[] = [];
    const next = () =>
      new Promise<ReloadOutcome>((resolve) => {
        const n = outcomes.length;
        const timer = setInterval(() => {
          const o = outcomes[n];
          if (o) {
            clearInterval(timer);
            resolve(o);
          }
        }, 10);
      });
    live.onReload((o) => outcomes.push(o));
    const stop = live.watch(silent);
    try {
      // SIGHUP reloads on demand (the file is as it was: unchanged).
      const hup = next();
      process.emit("SIGHUP", "SIGHUP");
      expect(await hup).toMatchObject({ trigger: "sighup", result: "unchanged" });
      const changed = next();
      write(base("third"));
      expect(await changed).toMatchObject({ trigger: "file", result: "applied" });
      expect(live.config.tenants[0]?.id).toBe("third");
    } finally {
      stop();
    }
  });
});
