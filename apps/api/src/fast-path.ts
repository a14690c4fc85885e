import type { IncomingMessage, ServerResponse } from "node:http";
import { createBrotliDecompress, createGunzip, createInflate } from "node:zlib";
import type { Readable } from "node:stream";
import proxyaddr from "proxy-addr";
import {
  ApiError,
  badRequest,
  SIGNATURE_HEADER,
  type SwitchyardConfig,
  type TenantConfig,
} from "@switchyard/core";
import { context, type Counter, type Logger, type Tracing } from "@switchyard/observability";
import type { Keys, Redis } from "@switchyard/queue";
import { logRequest, requestId } from "./access-log";
import { authenticate } from "./auth";
import { bodyErrors, logFailure, toApiError } from "./errors";
import type { HttpMetrics } from "./http-metrics";
import { startServerSpan } from "./http-trace";
import { takeIngress, type Ingress } from "./ingress-limit";
import { cacheDirectives, parseCreateJob, type JobService } from "./job-service";
import { checkJobId } from "./routes/jobs";
import { checkSignature } from "./signing";
import { abortSignalOf } from "./sse";
import type { TenantDirectory } from "./tenants";
import type { WebhookService } from "./webhook-service";

/**
 * The two requests every client makes for every job, POST /v1/jobs and GET /v1/jobs/:id, served
 * on Node's own request and response objects instead of through Express: the same steps in the
 * same order (request id, ingress limit per address, auth, ingress limit per tenant, body,
 * signature, the job service, metrics, trace, access log) and the same answers, at a fraction of
 * the cost (Express's routing and body parsing were ~30% of the API's CPU per submission).
 * Every other route goes to the Express app.
 */
export interface FastPathDeps {
  config: SwitchyardConfig;
  log: Logger;
  directory: TenantDirectory;
  ingress: { ip: Ingress | undefined; tenant: Ingress | undefined };
  redis: Redis;
  keys: Keys;
  service: JobService;
  webhooks: WebhookService;
  enqueued: Counter<"tier">;
  http: HttpMetrics;
  tracing: Tracing;
}

/** Handles the request when it is one of the fast routes (and returns true), else returns false. */
export type FastPath = (req: IncomingMessage, res: ServerResponse) => boolean;

type Answer = { status: number; body: unknown; headers?: Record<string, string> };
type Handler = (req: IncomingMessage, res: ServerResponse, ctx: RequestContext) => Promise<Answer>;

interface RequestContext {
  id: string;
  tenant?: TenantConfig;
  query: URLSearchParams;
}

const JSON_TYPE = /^application\/json\s*(;|$)/i;
const CHARSET = /;\s*charset\s*=\s*"?([^";\s]+)/i;

export function createFastPath(deps: FastPathDeps): FastPath {
  const { config } = deps;
  const trusted = config.server.trusted_proxies;
  const trust = trusted.length > 0 ? proxyaddr.compile(trusted) : () => false;
  const maxBody = config.server.max_body_bytes;

  const submit: Handler = async (req, res, ctx) => {
    const tenant = ctx.tenant as TenantConfig;
    const body = parseCreateJob(await readJson(req, maxBody, ctx, deps), config);
    if (body.webhook) await deps.webhooks.checkJobWebhook(tenant, body.webhook.url);
    const idem = req.headers["idempotency-key"];
    const cc = req.headers["cache-control"];
    const { job, replayed } = await deps.service.submit(tenant, body, ctx.id, {
      idempotencyKey: typeof idem === "string" ? idem : undefined,
      cache: cacheDirectives(typeof cc === "string" ? cc : undefined),
    });
    if (!replayed) deps.enqueued.inc({ tier: tenant.tier });
    const headers: Record<string, string> = { location: `/v1/jobs/${job.id}` };
    if (replayed) headers["idempotent-replayed"] = "true";
    return { status: replayed ? 200 : 202, body: job, headers };
  };

  const get: Handler = async (req, res, ctx) => {
    const tenant = ctx.tenant as TenantConfig;
    await signed(req, ctx, Buffer.alloc(0), deps);
    const id = decodeSegment(pathOf(req.url ?? "").slice("/v1/jobs/".length));
    checkJobId(id);
    let waitMs = 0;
    const raw = ctx.query.get("wait");
    if (raw !== null) {
      const n = Number(raw);
      if (!/^\d+(\.\d+)?$/.test(raw) || n > config.server.max_wait_seconds)
        throw badRequest(`wait must be a number of seconds from 0 to ${config.server.max_wait_seconds}`, [
          { path: "query.wait", message: "invalid" },
        ]);
      waitMs = Math.round(n * 1000);
    }
    return {
      status: 200,
      body: await deps.service.waitForTerminal(tenant, id, waitMs, abortSignalOf(req, res)),
    };
  };

  const run = async (req: IncomingMessage, res: ServerResponse, route: string, handler: Handler) => {
    const start = performance.now();
    const url = req.url ?? "/";
    const q = url.indexOf("?");
    const ctx: RequestContext = {
      id: requestId(req.headers["x-request-id"]),
      query: new URLSearchParams(q < 0 ? "" : url.slice(q + 1)),
    };
    res.setHeader("x-request-id", ctx.id);
    const span = deps.tracing.enabled
      ? startServerSpan(deps.tracing, req.method ?? "GET", q < 0 ? url : url.slice(0, q), req.headers)
      : undefined;
    const work = async (): Promise<Answer> => {
      if (deps.ingress.ip) await limit(deps.ingress.ip, proxyaddr(req, trust), res);
      const tenant = authenticate(deps.directory, header(req, "authorization"));
      if (tenant instanceof ApiError) throw tenant;
      ctx.tenant = tenant;
      if (deps.ingress.tenant) await limit(deps.ingress.tenant, tenant.id, res);
      return handler(req, res, ctx);
    };
    let answer: Answer;
    try {
      answer = await (span ? context.with(span.context, work) : work());
    } catch (err) {
      const e = toApiError(err, maxBody);
      logFailure(deps.log, err, e, { reqId: ctx.id });
      answer = { status: e.status, body: e.toBody(), ...(e.headers ? { headers: e.headers } : {}) };
    }
    if (!res.headersSent && !res.destroyed) {
      const text = JSON.stringify(answer.body);
      res.statusCode = answer.status;
      for (const [k, v] of Object.entries(answer.headers ?? {})) res.setHeader(k, v);
      res.setHeader("content-type", "application/json; charset=utf-8");
      res.setHeader("content-length", Buffer.byteLength(text));
      res.end(text);
    }
    const ms = performance.now() - start;
    deps.http.record(req.method ?? "GET", route, res.statusCode, ms / 1000);
    span?.end(route, res.statusCode, ctx.tenant?.id);
    logRequest(deps.log, {
      id: ctx.id,
      method: req.method ?? "GET",
      url,
      status: res.statusCode,
      ms,
      tenant: ctx.tenant?.id,
    });
  };

  return (req, res) => {
    const path = pathOf(req.url ?? "");
    if (req.method === "POST" && path === "/v1/jobs") {
      void run(req, res, "/v1/jobs", submit);
      return true;
    }
    const m = req.method;
    if (
      (m === "GET" || m === "HEAD") &&
      path.startsWith("/v1/jobs/") &&
      path.length > 9 &&
      path.indexOf("/", 9) < 0
    ) {
      void run(req, res, "/v1/jobs/:id", get);
      return true;
    }
    return false;
  };
}

/** The URL's path without its query, and without one trailing slash (Express is not strict either). */
function pathOf(url: string): string {
  const q = url.indexOf("?");
  const path = q < 0 ? url : url.slice(0, q);
  return path.length > 1 && path.endsWith("/") ? path.slice(0, -1) : path;
}

const header = (req: IncomingMessage, name: string): string | undefined => {
  const v = req.headers[name];
  return Array.isArray(v) ? v[0] : v;
};

async function limit(ingress: Ingress, key: string, res: ServerResponse): Promise<void> {
  const refused = await takeIngress(ingress, key, (name, value) => res.setHeader(name, value));
  if (refused) throw refused;
}

async function signed(req: IncomingMessage, ctx: RequestContext, raw: Buffer, deps: FastPathDeps) {
  const refused = await checkSignature(
    deps.redis,
    deps.keys,
    ctx.tenant as TenantConfig,
    header(req, SIGNATURE_HEADER),
    raw,
  );
  if (refused) throw refused;
}

function decodeSegment(s: string): string {
  try {
    return decodeURIComponent(s);
  } catch {
    throw bodyErrors.badPath();
  }
}

/**
 * The JSON body (as express.json reads it: only for Content-Type application/json, UTF-8, gzip,
 * deflate or br inflated, at most `max` bytes once inflated), its signature checked on the raw
 * bytes; undefined when the request is not JSON (the job's parser then says what to send).
 */
async function readJson(
  req: IncomingMessage,
  max: number,
  ctx: RequestContext,
  deps: FastPathDeps,
): Promise<unknown> {
  const type = header(req, "content-type") ?? "";
  const length = Number(header(req, "content-length") ?? NaN);
  if (Number.isFinite(length) && length > max) throw bodyErrors.tooLarge(max);
  const raw = JSON_TYPE.test(type) ? await readAll(req, max) : undefined;
  await signed(req, ctx, raw ?? Buffer.alloc(0), deps);
  if (raw === undefined) return undefined;
  const charset = CHARSET.exec(type)?.[1]?.toLowerCase();
  if (charset !== undefined && charset !== "utf-8" && charset !== "utf8") throw bodyErrors.notUtf8();
  const text = raw.toString("utf8");
  const first = /\S/.exec(text)?.[0];
  if (first === undefined) return {};
  if (first !== "{" && first !== "[") throw bodyErrors.notJson();
  try {
    return JSON.parse(text) as unknown;
  } catch {
    throw bodyErrors.notJson();
  }
}

function readAll(req: IncomingMessage, max: number): Promise<Buffer> {
  const encoding = (header(req, "content-encoding") ?? "identity").toLowerCase();
  let source: Readable = req;
  if (encoding === "gzip") source = req.pipe(createGunzip());
  else if (encoding === "deflate") source = req.pipe(createInflate());
  else if (encoding === "br") source = req.pipe(createBrotliDecompress());
  else if (encoding !== "identity")
    return Promise.reject(
      new ApiError(415, "invalid_request_error", `unsupported content encoding "${encoding}"`),
    );
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    source.on("data", (c: Buffer) => {
      size += c.length;
      if (size > max) {
        source.destroy();
        reject(bodyErrors.tooLarge(max));
        return;
      }
      chunks.push(c);
    });
    source.on("end", () => resolve(chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks)));
    source.on("error", () => reject(bodyErrors.incomplete()));
    req.on("aborted", () => reject(bodyErrors.incomplete()));
  });
}
