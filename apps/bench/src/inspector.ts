import { WebSocket } from "undici";
import { z } from "zod";
import type { AppProcess } from "@switchyard/testing";

/**
 * A client of a process's V8 inspector (the process runs with --inspect=127.0.0.1:0): the soak
 * asks it for a full garbage collection before reading the process's RSS, so that what it fits is
 * the memory the process keeps, not where V8's collection cycle happened to be at the sample.
 */
export interface Inspector {
  /** Runs a full (mark-compact) collection; resolves when it is over. */
  collectGarbage(): Promise<void>;
  /** V8's used heap in MiB (process.memoryUsage().heapUsed), read in the process. */
  heapUsedMiB(): Promise<number>;
  close(): void;
}

const Reply = z.object({
  id: z.number(),
  error: z.object({ message: z.string() }).optional(),
  result: z.unknown().optional(),
});
const EvalResult = z.object({ result: z.object({ value: z.number() }) });

export async function connectInspector(app: AppProcess, timeoutMs = 10_000): Promise<Inspector> {
  const line = await app.waitForOutput(/Debugger listening on (ws:\/\/\S+)/, timeoutMs);
  const url = /ws:\/\/\S+/.exec(line)?.[0];
  if (!url) throw new Error(`${app.name}: no inspector address in "${line}"`);
  const ws = new WebSocket(url);
  await new Promise<void>((resolve, reject) => {
    ws.addEventListener("open", () => resolve(), { once: true });
    ws.addEventListener(
      "error",
      () => reject(new Error(`${app.name}: cannot reach its inspector at ${url}`)),
      {
        once: true,
      },
    );
  });
  const pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
  ws.addEventListener("message", (ev) => {
    if (typeof ev.data !== "string") return;
    let json: unknown;
    try {
      json = JSON.parse(ev.data);
    } catch {
      return; // not a protocol message
    }
    const parsed = Reply.safeParse(json);
    if (!parsed.success) return; // an event, not a reply
    const p = pending.get(parsed.data.id);
    if (!p) return;
    pending.delete(parsed.data.id);
    if (parsed.data.error) p.reject(new Error(`${app.name}: inspector: ${parsed.data.error.message}`));
    else p.resolve(parsed.data.result);
  });
  ws.addEventListener("close", () => {
    for (const p of pending.values()) p.reject(new Error(`${app.name}: inspector connection closed`));
    pending.clear();
  });
  let next = 1;
  const call = (method: string, params: Record<string, unknown> = {}) =>
    new Promise<unknown>((resolve, reject) => {
      const id = next++;
      pending.set(id, { resolve, reject });
      ws.send(JSON.stringify({ id, method, params }));
    });
  return {
    collectGarbage: async () => {
      await call("HeapProfiler.collectGarbage");
    },
    heapUsedMiB: async () => {
      const r = EvalResult.parse(
        await call("Runtime.evaluate", {
          expression: "process.memoryUsage().heapUsed",
          returnByValue: true,
        }),
      );
      return r.result.value / 2 ** 20;
    },
    close: () => ws.close(),
  };
}
