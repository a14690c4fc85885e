import { Router, type NextFunction, type Request, type RequestHandler, type Response } from "express";
import type { z } from "zod";
import {
  ApiError,
  badRequest,
  isTerminal,
  notFound,
  ownEntry,
  PRIORITIES,
  type Priority,
  type SwitchyardConfig,
  JOB_STATUSES,
  type JobStatus,
  type TenantConfig,
} from "@switchyard/core";
import type { Counter } from "@switchyard/observability";
import { anthropicDialect, anthropicRequestSchema, anthropicToJob } from "../compat/anthropic";
import { jobFailure, type Dialect, type JobRequestFields } from "../compat/common";
import { geminiDialect, geminiRequestSchema, geminiToJob } from "../compat/gemini";
import { openaiDialect, openaiModels, openaiRequestSchema, openaiToJob } from "../compat/openai";
import type { BatchService } from "../batch-service";
import { toApiError } from "../errors";
import { followStream, type FollowDeps } from "../stream-follow";
import { cacheDirectives, parseCreateJob, type JobService } from "../job-service";
import { jsonBody, multipartBody, rawBodyOf } from "../signing";
import { abortSignalOf, startSse } from "../sse";
import { requestIdOf } from "../access-log";
import { parseBody } from "../validate";

/**
 * The drop-in endpoints: OpenAI's POST /v1/chat/completions and GET /v1/models, Anthropic's
 * POST /v1/messages, Gemini's POST /v1beta/models/{model}:generateContent. Each request becomes
 * an ordinary job of the tenant (auth, routes, admission, quota, fair order, limiter, retries,
 * fallback, idempotency, cache) and the request waits for it, up to
 * server.sync_timeout_seconds. Every answer carries switchyard-job-id; errors come in the
 * caller's provider's shape.
 */
export interface CompatDeps {
  service: JobService;
  batches: BatchService;
  /** What streamed answers are read from. */
  follow: FollowDeps;
  config: SwitchyardConfig;
  /** Auth that also takes x-api-key, x-goog-api-key and ?key=, then the tenant's ingress limit. */
  tenantGate: RequestHandler[];
  signatures: RequestHandler;
  enqueued: Counter<"tier">;
  maxBodyBytes: number;
}

const JOB_ID_HEADER = "switchyard-job-id";

export function compatRouter(deps: CompatDeps): Router {
  const { service, config } = deps;
  const router = Router();
  const json = jsonBody(config);
  const syncMs = config.server.sync_timeout_seconds * 1000;

  const submitFor = (
    req: Request,
    res: Response,
    tenant: TenantConfig,
    fields: JobRequestFields,
    stream: boolean,
  ) => {
    if (!ownEntry(config.models, fields.model))
      throw new ApiError(
        404,
        "model_not_found",
        `the model '${fields.model}' does not exist; GET /v1/models lists them`,
        [{ path: "model", message: "unknown model" }],
      );
    const body = parseCreateJob({ ...fields, ...jobHeaders(req) }, config);
    return service.submit(tenant, body, requestIdOf(res), {
      idempotencyKey: req.get("idempotency-key"),
      cache: cacheDirectives(req.get("cache-control")),
      sync: true,
      stream,
    });
  };
  const timedOut = (jobId: string) =>
    new ApiError(
      504,
      "timeout",
      `the job did not finish within server.sync_timeout_seconds (${config.server.sync_timeout_seconds} s); it goes on: poll GET /v1/jobs/${jobId}`,
    );
  /** The caller went away: nobody will read the answer, so stop spending on it. */
  const abandon = async (tenant: TenantConfig, jobId: string) => {
    const view = await service.get(tenant, jobId).catch(() => undefined);
    if (view && !isTerminal(view.status))
      await service.cancel(tenant, jobId, new AbortController().signal).catch(() => undefined);
  };

  const run = async (req: Request, res: Response, dialect: Dialect, fields: JobRequestFields) => {
    const tenant = res.locals.tenant as TenantConfig;
    const { job, replayed } = await submitFor(req, res, tenant, fields, false);
    res.set(JOB_ID_HEADER, job.id);
    if (!replayed) deps.enqueued.inc({ tier: tenant.tier });
    const gone = abortSignalOf(req, res);
    const view = await service.waitForTerminal(tenant, job.id, syncMs, gone);
    if (gone.aborted && !res.writableFinished) return abandon(tenant, job.id);
    if (!isTerminal(view.status)) throw timedOut(job.id);
    if (view.status !== "succeeded") throw jobFailure(view);
    res.json(dialect.answer(view, fields.model));
  };

  /**
   * A streamed call: the job is submitted with stream on and its answer goes out as the
   * format's server-sent events as the worker relays it. Nothing is sent before the first
   * piece, so a job that fails before it (after its retries and fallbacks) gets the format's
   * ordinary error and status; after it, a failure is the format's error event.
   */
  const runStream = async (
    req: Request,
    res: Response,
    dialect: Dialect,
    fields: JobRequestFields,
    includeUsage: boolean,
  ) => {
    const tenant = res.locals.tenant as TenantConfig;
    const { job, replayed } = await submitFor(req, res, tenant, fields, true);
    res.set(JOB_ID_HEADER, job.id);
    if (!replayed) deps.enqueued.inc({ tier: tenant.tier });
    const gone = abortSignalOf(req, res);
    const writer = dialect.streamWriter(
      { send: (data, event) => res.write(`${event ? `event: ${event}\n` : ""}data: ${data}\n\n`) },
      { jobId: job.id, model: fields.model, created: Math.floor(job.created_at), includeUsage },
    );
    let started = false;
    const begin = () => {
      if (started) return;
      started = true;
      startSse(res);
      writer.start();
    };
    const ended = await followStream(deps.follow, job.id, "0", gone, Date.now() + syncMs, (e) => {
      if (e.kind === "error") {
        const failure = jobFailure({
          status: statusOf(e.data.status),
          error: { type: e.data.type, message: e.data.message },
        });
        if (!started) throw failure;
        return writer.error(failure);
      }
      begin();
      if (e.kind === "delta") writer.delta(e.text);
      else writer.end(e.data);
    });
    if (ended === "aborted") return abandon(tenant, job.id);
    if (ended === "timeout" || ended === "ended_without_stream") {
      const failure = ended === "timeout" ? timedOut(job.id) : jobFailure(await service.get(tenant, job.id));
      if (!started) throw failure;
      writer.error(failure);
    }
    res.end();
  };

  const post = <S extends z.ZodType>(
    path: string | RegExp,
    dialect: Dialect,
    schema: S,
    toJob: (
      req: Request,
      body: z.infer<S>,
    ) => { fields: JobRequestFields; stream: boolean; includeUsage?: boolean },
  ) =>
    router.post(path, ...deps.tenantGate, json, deps.signatures, async (req, res) => {
      const { fields, stream, includeUsage } = toJob(req, parseBody(schema, req.body));
      if (stream) await runStream(req, res, dialect, fields, includeUsage ?? false);
      else await run(req, res, dialect, fields);
    });

  post("/v1/chat/completions", openaiDialect, openaiRequestSchema, (_req, b) => ({
    fields: openaiToJob(b),
    stream: b.stream === true,
    includeUsage: b.stream_options?.include_usage === true,
  }));
  post("/v1/messages", anthropicDialect, anthropicRequestSchema, (_req, b) => ({
    fields: anthropicToJob(b),
    stream: b.stream === true,
  }));
  post(GEMINI_GENERATE, geminiDialect, geminiRequestSchema, (req, b) => ({
    fields: geminiToJob(geminiModel(req), b),
    stream: false,
  }));
  post(GEMINI_STREAM, geminiDialect, geminiRequestSchema, (req, b) => ({
    fields: geminiToJob(geminiModel(req), b),
    stream: true,
  }));

  // OpenAI's Files and Batch APIs (for batches of chat completions).
  const batches = deps.batches;
  const tenantOf = (res: Response) => res.locals.tenant as TenantConfig;
  const gate = [...deps.tenantGate, deps.signatures];
  const upload = multipartBody(config.batch.max_file_bytes + 64 * 1024);
  router.post("/v1/files", ...deps.tenantGate, upload, deps.signatures, async (req, res) => {
    res.json(await batches.upload(tenantOf(res), req, rawBodyOf(req)));
  });
  router.get("/v1/files/:id", ...gate, async (req, res) => {
    res.json(await batches.file(tenantOf(res), String(req.params.id)));
  });
  router.get("/v1/files/:id/content", ...gate, async (req, res) => {
    res.type("application/jsonl").send(await batches.content(tenantOf(res), String(req.params.id)));
  });
  router.delete("/v1/files/:id", ...gate, async (req, res) => {
    res.json(await batches.remove(tenantOf(res), String(req.params.id)));
  });
  router.post("/v1/batches", ...deps.tenantGate, json, deps.signatures, async (req, res) => {
    res.json(await batches.create(tenantOf(res), req.body, requestIdOf(res)));
  });
  router.get("/v1/batches", ...gate, async (req, res) => {
    res.json(await batches.list(tenantOf(res), req.query));
  });
  router.get("/v1/batches/:id", ...gate, async (req, res) => {
    res.json(await batches.view(tenantOf(res), String(req.params.id)));
  });
  router.post("/v1/batches/:id/cancel", ...gate, async (req, res) => {
    res.json(await batches.cancel(tenantOf(res), String(req.params.id)));
  });

  const created = Math.floor(Date.now() / 1000);
  router.get("/v1/models", ...deps.tenantGate, (_req, res) => {
    res.json(openaiModels(Object.keys(config.models).sort(), created));
  });
  router.get("/v1/models/:id", ...deps.tenantGate, (req, res) => {
    const id = String(req.params.id);
    if (!ownEntry(config.models, id)) throw notFound(`the model '${id.slice(0, 200)}' does not exist`);
    res.json(openaiModels([id], created).data[0]);
  });

  // Errors in the caller's provider's shape, by the path it called.
  router.use((err: unknown, req: Request, res: Response, next: NextFunction) => {
    const dialect = dialectOf(req.path);
    if (!dialect) return next(err);
    const e = toApiError(err, deps.maxBodyBytes);
    if (res.headersSent) return void res.end();
    if (e.headers) res.set(e.headers);
    res.status(e.status).json(dialect.errorBody(e));
  });
  return router;
}

const GEMINI_GENERATE = /^\/v1beta\/models\/([^/]+):generateContent$/;
const GEMINI_STREAM = /^\/v1beta\/models\/([^/]+):streamGenerateContent$/;

function geminiModel(req: Request): string {
  const m = GEMINI_GENERATE.exec(req.path) ?? GEMINI_STREAM.exec(req.path);
  return decodeURIComponent(m?.[1] ?? "");
}

function dialectOf(path: string): Dialect | undefined {
  if (
    path === "/v1/chat/completions" ||
    path.startsWith("/v1/models") ||
    path.startsWith("/v1/files") ||
    path.startsWith("/v1/batches")
  )
    return openaiDialect;
  if (path === "/v1/messages") return anthropicDialect;
  if (path.startsWith("/v1beta/models/")) return geminiDialect;
  return undefined;
}

/** Optional switchyard-priority and switchyard-ttl-seconds request headers, checked. */
function jobHeaders(req: Request): { priority?: Priority; ttl_seconds?: number } {
  const out: { priority?: Priority; ttl_seconds?: number } = {};
  const p = req.get("switchyard-priority");
  if (p !== undefined) {
    if (!(PRIORITIES as readonly string[]).includes(p))
      throw badRequest("switchyard-priority must be high, normal or low", [
        { path: "header.switchyard-priority", message: "invalid" },
      ]);
    out.priority = p as Priority;
  }
  const t = req.get("switchyard-ttl-seconds");
  if (t !== undefined) {
    if (!/^\d{1,8}$/.test(t))
      throw badRequest("switchyard-ttl-seconds must be a whole number of seconds", [
        { path: "header.switchyard-ttl-seconds", message: "invalid" },
      ]);
    out.ttl_seconds = Number(t);
  }
  return out;
}

/** The key as Anthropic's and Gemini's SDKs send it. */
export function providerKeyOf(req: Request): string | undefined {
  const key = req.get("x-api-key") ?? req.get("x-goog-api-key") ?? req.query.key;
  return typeof key === "string" && key.length > 0 ? key : undefined;
}

/** A status named in a stream's error entry (written by our worker; anything else is a failure). */
function statusOf(s: string): JobStatus {
  return (JOB_STATUSES as readonly string[]).includes(s) ? (s as JobStatus) : "failed";
}
