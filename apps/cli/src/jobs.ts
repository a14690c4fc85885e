import { readFileSync } from "node:fs";

/**
 * `switchyard submit | get | watch`: the job API from a terminal. The server and key come from
 * --url / --key or SWITCHYARD_URL / SWITCHYARD_KEY; answers print as JSON (or, with --text,
 * the answer's text), errors as the API's message with what to do next.
 */
export interface Target {
  url: string;
  key: string;
}

export class CliError extends Error {
  constructor(
    message: string,
    readonly exitCode = 1,
  ) {
    super(message);
  }
}

export function target(opts: { url?: string; key?: string }, env = process.env): Target {
  const url = (opts.url ?? env.SWITCHYARD_URL ?? "http://127.0.0.1:8080").replace(/\/+$/, "");
  const key = opts.key ?? env.SWITCHYARD_KEY;
  if (!key)
    throw new CliError("no API key: pass --key or set SWITCHYARD_KEY to your Switchyard tenant key", 2);
  return { url, key };
}

interface JobLike {
  id: string;
  status: string;
  result?: { output_text?: string };
  error?: { type?: string; message?: string };
}

async function call<T>(t: Target, method: string, path: string, body?: unknown): Promise<T> {
  let res: Response;
  try {
    res = await fetch(`${t.url}${path}`, {
      method,
      headers: { authorization: `Bearer ${t.key}`, ...(body ? { "content-type": "application/json" } : {}) },
      ...(body ? { body: JSON.stringify(body) } : {}),
    });
  } catch (err) {
    throw new CliError(
      `cannot reach ${t.url} (${(err as Error).message}); is the API running? set --url or SWITCHYARD_URL`,
    );
  }
  const text = await res.text();
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    parsed = undefined;
  }
  if (!res.ok) {
    const e = (parsed as { error?: { message?: string; type?: string } } | undefined)?.error;
    const retry = res.headers.get("retry-after");
    throw new CliError(
      `${res.status} ${e?.type ?? ""}: ${e?.message ?? text.slice(0, 300)}${retry ? ` (retry after ${retry} s)` : ""}`,
    );
  }
  return parsed as T;
}

export interface SubmitOptions {
  model: string;
  priority?: string;
  maxTokens?: string;
  system?: string;
  file?: string;
  wait?: boolean;
  text?: boolean;
}

/** Submits a prompt (or a whole request body from --file, "-" for stdin); with --wait, waits for the end. */
export async function submit(
  t: Target,
  prompt: string | undefined,
  o: SubmitOptions,
  out: (s: string) => void,
) {
  let body: Record<string, unknown>;
  if (o.file) {
    const raw = readFileSync(o.file === "-" ? 0 : o.file, "utf8");
    try {
      body = JSON.parse(raw) as Record<string, unknown>;
    } catch {
      throw new CliError(`${o.file} is not JSON: give a /v1/jobs request body`, 2);
    }
  } else {
    if (!prompt) throw new CliError("give a prompt, or --file with a request body", 2);
    body = {
      model: o.model,
      messages: [
        ...(o.system ? [{ role: "system", content: o.system }] : []),
        { role: "user", content: prompt },
      ],
    };
    if (o.priority) body.priority = o.priority;
    if (o.maxTokens) body.max_tokens = Number(o.maxTokens);
  }
  const job = await call<JobLike & { estimated_start_seconds?: number | null }>(t, "POST", "/v1/jobs", body);
  if (!o.wait) return out(JSON.stringify(job, null, 2));
  const done = await waitFor(t, job.id);
  printFinal(done, o.text ?? false, out);
  if (done.status !== "succeeded") throw new CliError(`job ${done.id} ended ${done.status}`, 1);
}

async function waitFor(t: Target, id: string): Promise<JobLike> {
  for (;;) {
    const job = await call<JobLike>(t, "GET", `/v1/jobs/${encodeURIComponent(id)}?wait=30`);
    if (["succeeded", "failed", "cancelled", "expired"].includes(job.status)) return job;
  }
}

function printFinal(job: JobLike, text: boolean, out: (s: string) => void) {
  if (text && job.status === "succeeded") out(job.result?.output_text ?? "");
  else out(JSON.stringify(job, null, 2));
}

export async function get(
  t: Target,
  id: string,
  o: { wait?: string; text?: boolean },
  out: (s: string) => void,
) {
  const wait = o.wait === undefined ? 0 : Number(o.wait);
  if (!Number.isFinite(wait) || wait < 0) throw new CliError("--wait takes seconds", 2);
  const job = await call<JobLike>(
    t,
    "GET",
    `/v1/jobs/${encodeURIComponent(id)}${wait ? `?wait=${wait}` : ""}`,
  );
  printFinal(job, o.text ?? false, out);
}

/**
 * Follows a job live: one line per status change (from GET /v1/jobs/:id/events), and for a
 * streamed job its text as it arrives; exits with the job's end (0 when it succeeded).
 */
export async function watch(t: Target, id: string, out: (s: string) => void, write: (s: string) => void) {
  const res = await fetch(`${t.url}/v1/jobs/${encodeURIComponent(id)}/events`, {
    headers: { authorization: `Bearer ${t.key}` },
  }).catch((err: Error) => {
    throw new CliError(`cannot reach ${t.url} (${err.message}); set --url or SWITCHYARD_URL`);
  });
  if (!res.ok || !res.body) {
    const text = await res.text();
    throw new CliError(`${res.status}: ${text.slice(0, 300)}`);
  }
  let last: JobLike | undefined;
  const started = Date.now();
  const decoder = new TextDecoder();
  let buffer = "";
  for await (const chunk of res.body) {
    buffer += decoder.decode(chunk as Uint8Array, { stream: true });
    let at: number;
    while ((at = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, at);
      buffer = buffer.slice(at + 2);
      const data = block
        .split("\n")
        .filter((l) => l.startsWith("data: "))
        .map((l) => l.slice(6))
        .join("\n");
      if (!data) continue;
      const job = JSON.parse(data) as JobLike;
      const secs = ((Date.now() - started) / 1000).toFixed(1).padStart(6);
      out(
        `${secs}s  ${job.id}  ${job.status}${job.error ? `  ${job.error.type}: ${job.error.message}` : ""}`,
      );
      last = job;
    }
  }
  if (last?.status === "succeeded" && last.result?.output_text !== undefined)
    write(`${last.result.output_text}\n`);
  if (!last || last.status !== "succeeded")
    throw new CliError(`job ${id} ended ${last?.status ?? "unknown"}`, 1);
}

interface BatchLike {
  id: string;
  status: string;
  request_counts?: { total: number; completed: number; failed: number };
  output_file_id?: string | null;
  error_file_id?: string | null;
  errors?: { data?: { line?: number; code: string; message: string }[] } | null;
}

const BATCH_DONE = new Set(["completed", "cancelled", "failed", "expired"]);

/** Uploads a JSONL file of requests (purpose batch) and creates a batch of it. */
export async function batchCreate(t: Target, path: string): Promise<BatchLike> {
  let bytes: Buffer;
  try {
    bytes = readFileSync(path);
  } catch (err) {
    throw new CliError(`cannot read ${path}: ${(err as Error).message}`, 2);
  }
  const form = new FormData();
  form.append("purpose", "batch");
  form.append(
    "file",
    new Blob([bytes], { type: "application/jsonl" }),
    path.split("/").pop() ?? "batch.jsonl",
  );
  let res: Response;
  try {
    res = await fetch(`${t.url}/v1/files`, {
      method: "POST",
      headers: { authorization: `Bearer ${t.key}` },
      body: form,
    });
  } catch (err) {
    throw new CliError(`cannot reach ${t.url} (${(err as Error).message}); set --url or SWITCHYARD_URL`);
  }
  const file = (await res.json()) as { id?: string; error?: { message?: string } };
  if (!res.ok || !file.id) throw new CliError(`${res.status}: ${file.error?.message ?? "upload refused"}`);
  return call<BatchLike>(t, "POST", "/v1/batches", {
    input_file_id: file.id,
    endpoint: "/v1/chat/completions",
    completion_window: "24h",
  });
}

/** Follows a batch with a progress bar (finished lines of the total) until it ends. */
export async function batchWatch(
  t: Target,
  id: string,
  progress: Progress,
  pollMs = 500,
): Promise<BatchLike> {
  let b = await call<BatchLike>(t, "GET", `/v1/batches/${encodeURIComponent(id)}`);
  progress.start(b.request_counts?.total ?? 0);
  for (;;) {
    const c = b.request_counts ?? { total: 0, completed: 0, failed: 0 };
    progress.update(c.completed + c.failed, { failed: c.failed, status: b.status });
    if (BATCH_DONE.has(b.status)) break;
    await new Promise((r) => setTimeout(r, pollMs));
    b = await call<BatchLike>(t, "GET", `/v1/batches/${encodeURIComponent(id)}`);
  }
  progress.stop();
  return b;
}

/** A batch's output (or, with errors, its error file), as the JSONL OpenAI's format gives. */
export async function batchResults(t: Target, id: string, errors: boolean): Promise<string> {
  const b = await call<BatchLike>(t, "GET", `/v1/batches/${encodeURIComponent(id)}`);
  const fileId = errors ? b.error_file_id : b.output_file_id;
  if (!fileId)
    throw new CliError(
      BATCH_DONE.has(b.status)
        ? `batch ${id} has no ${errors ? "error" : "output"} file`
        : `batch ${id} is ${b.status}; its files come when it ends (switchyard watch ${id})`,
    );
  const res = await fetch(`${t.url}/v1/files/${encodeURIComponent(fileId)}/content`, {
    headers: { authorization: `Bearer ${t.key}` },
  });
  if (!res.ok) throw new CliError(`${res.status}: ${(await res.text()).slice(0, 300)}`);
  return res.text();
}

/** What a progress view needs (cli-progress's SingleBar in the CLI, a recorder in tests). */
export interface Progress {
  start(total: number): void;
  update(done: number, payload: { failed: number; status: string }): void;
  stop(): void;
}
