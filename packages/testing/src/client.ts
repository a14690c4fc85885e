/** A small HTTP client for tests: JSON in, status + headers + JSON out. */
export interface HttpAnswer<T = Record<string, unknown>> {
  status: number;
  headers: Headers;
  body: T;
}

export async function http<T = Record<string, unknown>>(
  method: string,
  url: string,
  opts: { key?: string; json?: unknown; rawBody?: string; headers?: Record<string, string> } = {},
): Promise<HttpAnswer<T>> {
  const headers: Record<string, string> = { ...opts.headers };
  if (opts.key) headers.authorization = `Bearer ${opts.key}`;
  let body: string | undefined;
  if (opts.json !== undefined) {
    headers["content-type"] = "application/json";
    body = JSON.stringify(opts.json);
  } else if (opts.rawBody !== undefined) {
    headers["content-type"] ??= "application/json";
    body = opts.rawBody;
  }
  const res = await fetch(url, { method, headers, ...(body !== undefined ? { body } : {}) });
  const text = await res.text();
  let parsed: unknown;
  try {
    parsed = text ? JSON.parse(text) : undefined;
  } catch {
    parsed = text;
  }
  return { status: res.status, headers: res.headers, body: parsed as T };
}

/** Re-reads `read` until `done` says yes, for states that have no event to await. Bounded. */
export async function eventually<T>(
  read: () => Promise<T>,
  done: (v: T) => boolean,
  timeoutMs = 20_000,
  what = "condition",
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await read();
    if (done(v)) return v;
    if (Date.now() > deadline)
      throw new Error(
        `timed out after ${timeoutMs} ms waiting for ${what}; last value: ${JSON.stringify(v)}`,
      );
    await new Promise((r) => setTimeout(r, 25));
  }
}

/**
 * Runs a BullMQ Worker (made with autorun: false) until its queue has `jobs` completed and
 * nothing left active or waiting. Typed by shape: this package does not depend on BullMQ.
 */
export async function runToCompletion(
  worker: { run(): Promise<unknown> },
  queue: { getJobCounts(...types: ("completed" | "active" | "wait")[]): Promise<Record<string, number>> },
  jobs: number,
): Promise<void> {
  void worker.run();
  await eventually(
    () => queue.getJobCounts("completed", "active", "wait"),
    (c) => c.completed === jobs && c.active === 0 && c.wait === 0,
    10_000,
    "all jobs completed",
  );
}
