import { randomBytes } from "node:crypto";
import type { Request } from "express";
import busboy from "busboy";
import { z } from "zod";
import {
  ApiError,
  badRequest,
  isTerminal,
  notFound,
  type JobView,
  type SwitchyardConfig,
  type TenantConfig,
} from "@switchyard/core";
import type { JobStore, Keys, Redis } from "@switchyard/queue";
import { jobFailure } from "./compat/common";
import { openaiDialect, openaiRequestSchema, openaiToJob } from "./compat/openai";
import { parseCreateJob, type JobService } from "./job-service";

/**
 * OpenAI's Batch API: files uploaded with purpose "batch" (JSONL, one request a line), batches
 * whose every valid line becomes a low-priority job of the tenant (so a batch never delays its
 * tenant's interactive work, let alone other tenants'), OpenAI's batch object with its statuses
 * and request_counts, and output and error files in OpenAI's line format, keyed by custom_id.
 * The lines' ends are counted in the batch by the job's final transition (transition.lua).
 */
const FILE_ID = /^file-[0-9a-f]{24}$/;
const OUTPUT_ID = /^file-(out|err)_(batch_[0-9a-f]{24})$/;
const BATCH_ID = /^batch_[0-9a-f]{24}$/;
const COMPLETION_WINDOW_S = 24 * 3600;
const EXPAND_CONCURRENCY = 32;

const fileHashSchema = z.object({
  tenant: z.string(),
  purpose: z.string(),
  filename: z.string(),
  bytes: z.coerce.number(),
  created_at: z.coerce.number(),
});
const batchHashSchema = z.object({
  tenant: z.string(),
  status: z.enum(["validating", "in_progress", "cancelling"]),
  input_file_id: z.string(),
  endpoint: z.string(),
  created_at: z.coerce.number(),
  total: z.coerce.number().default(0),
  completed: z.coerce.number().default(0),
  failed: z.coerce.number().default(0),
  refused: z.coerce.number().default(0),
  in_progress_at: z.coerce.number().optional(),
  cancelling_at: z.coerce.number().optional(),
  metadata: z.string().optional(),
});
type BatchHash = z.infer<typeof batchHashSchema>;

const lineSchema = z
  .object({
    custom_id: z.string().min(1).max(512),
    method: z.literal("POST"),
    url: z.literal("/v1/chat/completions", { message: "only /v1/chat/completions lines are supported" }),
    body: openaiRequestSchema,
  })
  .strict();

const createSchema = z
  .object({
    input_file_id: z.string(),
    endpoint: z.literal("/v1/chat/completions", { message: "only /v1/chat/completions is supported" }),
    completion_window: z.literal("24h", { message: "only 24h is supported" }),
    metadata: z.record(z.string().max(64), z.string().max(512)).nullish(),
  })
  .strict();

interface LineError {
  line: number;
  custom_id: string | null;
  code: string;
  message: string;
}

const newId = () => randomBytes(12).toString("hex");
const seconds = (ms: number) => Math.floor(ms / 1000);

export class BatchService {
  constructor(
    private readonly config: SwitchyardConfig,
    private readonly redis: Redis,
    private readonly keys: Keys,
    private readonly jobs: JobService,
    private readonly store: JobStore,
  ) {}

  private get ttlMs(): number {
    return Math.round(this.config.batch.retention_hours * 3_600_000);
  }

  /** POST /v1/files (multipart: purpose, file), read whole by multipartBody first. */
  async upload(tenant: TenantConfig, req: Request, raw: Buffer | undefined) {
    const type = req.get("content-type") ?? "";
    if (!type.toLowerCase().startsWith("multipart/form-data") || !raw)
      throw badRequest("upload a file as multipart/form-data with fields purpose and file");
    const max = this.config.batch.max_file_bytes;
    const { purpose, filename, data } = await new Promise<{
      purpose?: string;
      filename?: string;
      data?: Buffer;
    }>((resolve, reject) => {
      const out: { purpose?: string; filename?: string; data?: Buffer } = {};
      let bb: busboy.Busboy;
      try {
        bb = busboy({ headers: req.headers, limits: { fileSize: max, files: 1, fields: 10 } });
      } catch {
        return reject(badRequest("malformed multipart/form-data body"));
      }
      bb.on("field", (name, value) => {
        if (name === "purpose") out.purpose = value;
      });
      bb.on("file", (_name, stream, info) => {
        const chunks: Buffer[] = [];
        out.filename = info.filename;
        stream.on("data", (c: Buffer) => chunks.push(c));
        stream.on("limit", () =>
          reject(
            new ApiError(
              413,
              "request_too_large",
              `files are limited to ${max} bytes (batch.max_file_bytes)`,
            ),
          ),
        );
        stream.on("end", () => {
          out.data = Buffer.concat(chunks);
        });
      });
      bb.on("error", () => reject(badRequest("malformed multipart/form-data body")));
      bb.on("close", () => resolve(out));
      bb.end(raw);
    });
    if (purpose !== "batch")
      throw badRequest("purpose must be batch (the only purpose Switchyard stores files for)", [
        { path: "purpose", message: "must be batch" },
      ]);
    if (!data)
      throw badRequest("no file in the upload: send it as the form field 'file'", [
        { path: "file", message: "missing" },
      ]);
    const now = Date.now();
    const list = this.keys.tenantFiles(tenant.id);
    await this.redis.zremrangebyscore(list, "-inf", now - this.ttlMs);
    if ((await this.redis.zcard(list)) >= this.config.batch.max_files_per_tenant)
      throw new ApiError(
        429,
        "rate_limit_error",
        `the tenant holds ${this.config.batch.max_files_per_tenant} files already (batch.max_files_per_tenant); delete some with DELETE /v1/files/:id`,
      );
    const id = `file-${newId()}`;
    const key = this.keys.file(id);
    await this.redis
      .multi()
      .hset(key, {
        tenant: tenant.id,
        purpose,
        filename: (filename ?? "upload.jsonl").slice(0, 255),
        bytes: data.length,
        created_at: now,
      })
      .pexpire(key, this.ttlMs)
      .set(`${key}:data`, data, "PX", this.ttlMs)
      .zadd(list, now, id)
      .pexpire(list, this.ttlMs)
      .exec();
    return this.fileObject(id, {
      purpose,
      filename: filename ?? "upload.jsonl",
      bytes: data.length,
      created_at: now,
    });
  }

  private fileObject(
    id: string,
    f: { purpose: string; filename: string; bytes: number; created_at: number },
  ) {
    return {
      id,
      object: "file",
      bytes: f.bytes,
      created_at: seconds(f.created_at),
      expires_at: seconds(f.created_at + this.ttlMs),
      filename: f.filename,
      purpose: f.purpose,
      status: "processed",
    };
  }

  private async fileHash(tenant: TenantConfig, id: string) {
    if (!FILE_ID.test(id)) return undefined;
    const h = await this.redis.hgetall(this.keys.file(id));
    const f = fileHashSchema.safeParse(h);
    return f.success && f.data.tenant === tenant.id ? f.data : undefined;
  }

  async file(tenant: TenantConfig, id: string) {
    const f = await this.fileHash(tenant, id);
    if (f) return this.fileObject(id, f);
    const out = OUTPUT_ID.exec(id);
    const b = out?.[2] ? await this.batchHash(tenant, out[2]) : undefined;
    if (!out || !b) throw notFound(`no file ${id.slice(0, 80)}`);
    return this.fileObject(id, {
      purpose: "batch_output",
      filename: `${out[2]}_${out[1] === "out" ? "output" : "error"}.jsonl`,
      bytes: 0,
      created_at: b.created_at,
    });
  }

  async remove(tenant: TenantConfig, id: string) {
    if (!(await this.fileHash(tenant, id))) throw notFound(`no file ${id.slice(0, 80)}`);
    const key = this.keys.file(id);
    await this.redis.multi().del(key, `${key}:data`).zrem(this.keys.tenantFiles(tenant.id), id).exec();
    return { id, object: "file", deleted: true };
  }

  /** A file's bytes: an uploaded file as it was, or a batch's output or error file, built now. */
  async content(tenant: TenantConfig, id: string): Promise<string> {
    if (await this.fileHash(tenant, id)) return (await this.redis.get(`${this.keys.file(id)}:data`)) ?? "";
    const out = OUTPUT_ID.exec(id);
    const batchId = out?.[2];
    if (!out || !batchId || !(await this.batchHash(tenant, batchId)))
      throw notFound(`no file ${id.slice(0, 80)}`);
    return out[1] === "out" ? this.output(batchId, true) : this.output(batchId, false);
  }

  /** POST /v1/batches: checks every line, queues the valid ones as low-priority jobs, answers the batch. */
  async create(tenant: TenantConfig, body: unknown, traceId: string) {
    const req = createSchema.safeParse(body);
    if (!req.success) {
      const issue = req.error.issues[0];
      const path = issue?.path.join(".") || "(body)";
      throw badRequest(`invalid request: ${path}: ${issue?.message ?? "invalid"}`, [
        { path, message: issue?.message ?? "invalid" },
      ]);
    }
    const input = await this.fileHash(tenant, req.data.input_file_id);
    if (!input || input.purpose !== "batch")
      throw notFound(`no file ${req.data.input_file_id.slice(0, 80)} with purpose batch`);
    const text = (await this.redis.get(`${this.keys.file(req.data.input_file_id)}:data`)) ?? "";
    const lines = text.split("\n").filter((l) => l.trim().length > 0);
    if (lines.length === 0)
      throw badRequest("the input file has no request lines", [{ path: "input_file_id", message: "empty" }]);
    if (lines.length > this.config.batch.max_lines)
      throw badRequest(
        `a batch takes at most ${this.config.batch.max_lines} lines (batch.max_lines); this file has ${lines.length}`,
        [{ path: "input_file_id", message: "too many lines" }],
      );
    const id = `batch_${newId()}`;
    const key = this.keys.batch(id);
    const now = Date.now();
    await this.redis
      .multi()
      .hset(key, {
        tenant: tenant.id,
        status: "validating",
        input_file_id: req.data.input_file_id,
        endpoint: req.data.endpoint,
        created_at: now,
        total: lines.length,
        ...(req.data.metadata ? { metadata: JSON.stringify(req.data.metadata) } : {}),
      })
      .pexpire(key, this.ttlMs)
      .zadd(this.keys.tenantBatches(tenant.id), now, id)
      .pexpire(this.keys.tenantBatches(tenant.id), this.ttlMs)
      .exec();

    const seen = new Set<string>();
    const errors: LineError[] = [];
    let next = 0;
    const expandOne = async (index: number) => {
      const raw = lines[index] ?? "";
      let parsedJson: unknown;
      try {
        parsedJson = JSON.parse(raw);
      } catch {
        return errors.push({
          line: index + 1,
          custom_id: null,
          code: "invalid_json",
          message: "the line is not JSON",
        });
      }
      const line = lineSchema.safeParse(parsedJson);
      const customId =
        parsedJson &&
        typeof parsedJson === "object" &&
        typeof (parsedJson as { custom_id?: unknown }).custom_id === "string"
          ? (parsedJson as { custom_id: string }).custom_id
          : null;
      if (!line.success) {
        const issue = line.error.issues[0];
        return errors.push({
          line: index + 1,
          custom_id: customId,
          code: "invalid_request",
          message: `${issue?.path.join(".") || "(line)"}: ${issue?.message ?? "invalid"}`,
        });
      }
      if (line.data.body.stream)
        return errors.push({
          line: index + 1,
          custom_id: customId,
          code: "invalid_request",
          message: "body.stream: batch lines cannot stream",
        });
      if (seen.has(line.data.custom_id))
        return errors.push({
          line: index + 1,
          custom_id: customId,
          code: "duplicate_custom_id",
          message: "custom_id is used by an earlier line",
        });
      seen.add(line.data.custom_id);
      try {
        const fields = openaiToJob(line.data.body);
        const job = parseCreateJob(
          {
            ...fields,
            priority: "low",
            ttl_seconds: COMPLETION_WINDOW_S,
            metadata: { batch_id: id, custom_id: line.data.custom_id.slice(0, 512) },
          },
          this.config,
        );
        const { job: view } = await this.jobs.submit(tenant, job, `${traceId}:${index + 1}`, {
          sync: true,
          batchKey: key,
        });
        await this.redis
          .pipeline()
          .rpush(`${key}:lines`, `${line.data.custom_id}\u0000${view.id}`)
          .pexpire(`${key}:lines`, this.ttlMs)
          .exec();
      } catch (err) {
        const e = err instanceof ApiError ? err : new ApiError(500, "internal_error", (err as Error).message);
        errors.push({ line: index + 1, custom_id: customId, code: e.type, message: e.message });
      }
    };
    await Promise.all(
      Array.from({ length: EXPAND_CONCURRENCY }, async () => {
        while (next < lines.length) await expandOne(next++);
      }),
    );
    errors.sort((a, b) => a.line - b.line);
    const pipe = this.redis.multi();
    if (errors.length > 0) pipe.rpush(`${key}:errors`, ...errors.map((e) => JSON.stringify(e)));
    pipe
      .hset(key, { status: "in_progress", in_progress_at: Date.now() })
      .hincrby(key, "refused", errors.length)
      .pexpire(`${key}:lines`, this.ttlMs)
      .pexpire(`${key}:errors`, this.ttlMs);
    await pipe.exec();
    return this.view(tenant, id);
  }

  private async batchHash(tenant: TenantConfig, id: string): Promise<BatchHash | undefined> {
    if (!BATCH_ID.test(id)) return undefined;
    const b = batchHashSchema.safeParse(await this.redis.hgetall(this.keys.batch(id)));
    return b.success && b.data.tenant === tenant.id ? b.data : undefined;
  }

  /** The batch as OpenAI's batch object. */
  async view(tenant: TenantConfig, id: string) {
    const b = await this.batchHash(tenant, id);
    if (!b) throw notFound(`no batch ${id.slice(0, 80)}`);
    const failed = b.failed + b.refused;
    const ended = b.completed + failed >= b.total;
    const now = Date.now();
    const status = batchStatus(b, ended, now);
    const errors = (await this.redis.lrange(`${this.keys.batch(id)}:errors`, 0, 99)).map(
      (e) => JSON.parse(e) as LineError,
    );
    const done = status === "completed" || status === "cancelled" || status === "expired";
    return {
      id,
      object: "batch",
      endpoint: b.endpoint,
      errors:
        errors.length > 0
          ? {
              object: "list",
              data: errors.map((e) => ({
                code: e.code,
                message: e.message,
                param: e.custom_id,
                line: e.line,
              })),
            }
          : null,
      input_file_id: b.input_file_id,
      completion_window: "24h",
      status,
      output_file_id: done && b.completed > 0 ? `file-out_${id}` : null,
      error_file_id: done && failed > 0 ? `file-err_${id}` : null,
      created_at: seconds(b.created_at),
      in_progress_at: b.in_progress_at ? seconds(b.in_progress_at) : null,
      expires_at: seconds(b.created_at) + COMPLETION_WINDOW_S,
      finalizing_at: null,
      completed_at: status === "completed" ? seconds(now) : null,
      failed_at: status === "failed" ? seconds(now) : null,
      expired_at: status === "expired" ? seconds(b.created_at) + COMPLETION_WINDOW_S : null,
      cancelling_at: b.cancelling_at ? seconds(b.cancelling_at) : null,
      cancelled_at: status === "cancelled" ? seconds(now) : null,
      request_counts: { total: b.total, completed: b.completed, failed },
      metadata: b.metadata ? (JSON.parse(b.metadata) as Record<string, string>) : null,
    };
  }

  /** GET /v1/batches: newest first, paged by `after` (a batch id) and `limit` (1-100). */
  async list(tenant: TenantConfig, query: Record<string, unknown>) {
    const limit = query.limit === undefined ? 20 : Number(query.limit);
    if (!Number.isInteger(limit) || limit < 1 || limit > 100)
      throw badRequest("limit must be 1 to 100", [{ path: "query.limit", message: "invalid" }]);
    const ids = await this.redis.zrevrange(this.keys.tenantBatches(tenant.id), 0, -1);
    const start = typeof query.after === "string" ? ids.indexOf(query.after) + 1 : 0;
    const page = ids.slice(start, start + limit);
    const data = [];
    for (const id of page) data.push(await this.view(tenant, id).catch(() => undefined));
    const live = data.filter((d) => d !== undefined);
    return {
      object: "list",
      data: live,
      first_id: live[0]?.id ?? null,
      last_id: live.at(-1)?.id ?? null,
      has_more: start + limit < ids.length,
    };
  }

  /** POST /v1/batches/:id/cancel: queued lines end cancelled now, running ones are asked to stop. */
  async cancel(tenant: TenantConfig, id: string) {
    const b = await this.batchHash(tenant, id);
    if (!b) throw notFound(`no batch ${id.slice(0, 80)}`);
    if (b.status === "in_progress") {
      await this.redis.hset(this.keys.batch(id), { status: "cancelling", cancelling_at: Date.now() });
      const pairs = await this.redis.lrange(`${this.keys.batch(id)}:lines`, 0, -1);
      let next = 0;
      await Promise.all(
        Array.from({ length: EXPAND_CONCURRENCY }, async () => {
          while (next < pairs.length) {
            const jobId = (pairs[next++] ?? "").split("\u0000")[1];
            if (jobId) await this.jobs.cancelSoon(jobId).catch(() => undefined);
          }
        }),
      );
    }
    return this.view(tenant, id);
  }

  /** The output (succeeded lines) or error (failed and refused lines) file, in OpenAI's line format. */
  private async output(batchId: string, succeeded: boolean): Promise<string> {
    const key = this.keys.batch(batchId);
    const pairs = await this.redis.lrange(`${key}:lines`, 0, -1);
    const out: string[] = [];
    for (let i = 0; i < pairs.length; i += 500) {
      const chunk = pairs.slice(i, i + 500).map((p) => p.split("\u0000") as [string, string]);
      const records = await Promise.all(chunk.map(([, jobId]) => this.store.get(jobId)));
      chunk.forEach(([customId, jobId], j) => {
        const view: JobView | undefined = records[j]?.view;
        if (!view || !isTerminal(view.status)) return;
        if ((view.status === "succeeded") !== succeeded) return;
        const body = succeeded ? openaiDialect.answer(view, view.model) : undefined;
        const failure = succeeded ? undefined : jobFailure(view);
        out.push(
          JSON.stringify({
            id: `batch_req_${jobId}`,
            custom_id: customId,
            response: {
              status_code: failure?.status ?? 200,
              request_id: jobId,
              body: failure ? openaiDialect.errorBody(failure) : body,
            },
            error: null,
          }),
        );
      });
    }
    if (!succeeded)
      for (const raw of await this.redis.lrange(`${key}:errors`, 0, -1)) {
        const e = JSON.parse(raw) as LineError;
        out.push(
          JSON.stringify({
            id: `batch_req_line_${e.line}`,
            custom_id: e.custom_id,
            response: null,
            error: { code: e.code, message: `line ${e.line}: ${e.message}` },
          }),
        );
      }
    return out.length > 0 ? `${out.join("\n")}\n` : "";
  }
}

/** A batch still expanding this long after its creation was cut off (its API process stopped). */
const EXPANSION_LIMIT_MS = 10 * 60_000;

/**
 * OpenAI's batch status from the stored state and the counters: failed when no line could be
 * queued (or the expansion was cut off), expired when the 24 h window passed before every line
 * ended, completed or cancelled once every line has ended.
 */
function batchStatus(b: BatchHash, ended: boolean, now: number): string {
  if (b.status === "validating") return now - b.created_at > EXPANSION_LIMIT_MS ? "failed" : "validating";
  if (b.refused >= b.total) return "failed";
  if (b.status === "cancelling") return ended ? "cancelled" : "cancelling";
  if (ended) return "completed";
  return now > b.created_at + COMPLETION_WINDOW_S * 1000 ? "expired" : "in_progress";
}
