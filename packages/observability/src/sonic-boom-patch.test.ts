import fs, { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pino from "pino";

/**
 * patches/sonic-boom@4.2.1.patch (pnpm-workspace.yaml's patchedDependencies): pino's destination
 * keeps the byte length of the chunk it is filling instead of measuring the whole chunk again at
 * every line (which flattened and scanned up to 16 KB per access-log line), and a flush with
 * nothing buffered writes nothing (the periodic flush wrote an empty string every period). An
 * install that lost the patch, or a sonic-boom that no longer takes it, fails the first and the
 * last tests; what reaches the file must stay exactly what was written, in order, split at
 * maxWrite as before.
 */
describe("pino's destination (sonic-boom), as patched", () => {
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), "switchyard-sonic-"));
  });
  afterEach(() => {
    jest.restoreAllMocks();
    rmSync(dir, { recursive: true, force: true });
  });

  const lines = (n: number) =>
    Array.from(
      { length: n },
      (_, i) => `{"msg":"line ${i}","text":"na\u00efve \u2713 ${"x".repeat(i % 7)}"}\n`,
    );

  it("measures each line once, not the growing chunk again", () => {
    const file = join(dir, "a.log");
    const dest = pino.destination({
      dest: file,
      sync: true,
      minLength: 1 << 20,
      maxWrite: 1 << 22,
      mkdir: true,
    });
    const written = lines(200);
    const byteLength = jest.spyOn(Buffer, "byteLength");
    for (const l of written) dest.write(l);
    // One call per line (its own length); without the patch, two (the chunk's length as well).
    expect(byteLength.mock.calls.length).toBeLessThanOrEqual(written.length + 2);
    byteLength.mockRestore();
    dest.flushSync();
    dest.end();
    expect(readFileSync(file, "utf8")).toBe(written.join(""));
  });

  it("still splits chunks at maxWrite bytes and writes every line in order", async () => {
    const file = join(dir, "b.log");
    // Multi-byte characters: the split is by bytes, as before the patch.
    const dest = pino.destination({ dest: file, sync: false, minLength: 0, maxWrite: 256, mkdir: true });
    await new Promise<void>((resolve) => dest.once("ready", () => resolve()));
    const written = lines(500);
    // The size of every chunk sonic-boom hands to fs.write (text: the destination writes strings).
    const chunks: number[] = [];
    const realWrite = fs.write as (...args: unknown[]) => void;
    jest.spyOn(fs, "write").mockImplementation(((...args: unknown[]) => {
      if (typeof args[1] === "string") chunks.push(Buffer.byteLength(args[1]));
      realWrite(...args);
    }) as typeof fs.write);
    for (const l of written) dest.write(l);
    await new Promise<void>((resolve, reject) => {
      dest.once("close", () => resolve());
      dest.once("error", reject);
      dest.end();
    });
    expect(readFileSync(file, "utf8")).toBe(written.join(""));
    expect(chunks.length).toBeGreaterThan(1);
    expect(Math.max(...chunks)).toBeLessThanOrEqual(256);
    expect(chunks.reduce((a, b) => a + b, 0)).toBe(Buffer.byteLength(written.join("")));
  });

  it("writes nothing when a flush finds nothing buffered, and still answers a flush's callback", async () => {
    const file = join(dir, "c.log");
    const dest = pino.destination({ dest: file, sync: false, minLength: 4096, mkdir: true });
    await new Promise<void>((resolve) => dest.once("ready", () => resolve()));
    const writes = jest.spyOn(fs, "write");
    dest.flush();
    expect(writes).not.toHaveBeenCalled();
    // With a callback, as before: it is called once the (empty) write is done.
    await new Promise<void>((resolve, reject) => dest.flush((err) => (err ? reject(err) : resolve())));
    // Something buffered is written by the next flush.
    dest.write("held\n");
    expect(readFileSync(file, "utf8")).toBe("");
    const before = writes.mock.calls.length;
    dest.flush();
    expect(writes.mock.calls.length).toBe(before + 1);
    await new Promise<void>((resolve, reject) => {
      dest.once("close", () => resolve());
      dest.once("error", reject);
      dest.end();
    });
    expect(readFileSync(file, "utf8")).toBe("held\n");
  });
});
