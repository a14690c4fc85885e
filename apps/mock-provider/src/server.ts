import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import { setTimeout as sleep } from "node:timers/promises";
import { complete, promptTokens } from "./completion";
import { streamEvents, type SseEvent } from "./streaming";
import { embed } from "./embeddings";
import { FaultCounter, parseFault, parseStandingFault, type Fault, type StandingFault } from "./faults";
import { anthropicFormat } from "./formats/anthropic";
import { geminiFormat } from "./formats/gemini";
import { openaiFormat } from "./formats/openai";
import { isParsed, type MockResponse, type ParsedRequest, type WireFormat } from "./formats/types";
import { SlidingWindows, type KeyLimits } from "./limits";
import { Stats } from "./stats";

export type { MockResponse } from "./formats/types";

export interface MockOptions {
  /** Added to every answer, in ms. */
  latencyMs: number;
  /** Share of requests (0..1) answered 500 at random. */
  errorRate: number;
  /** Streamed answers wait this long between their content events (a fault marker may say otherwise). */
  chunkDelayMs?: number;
  maxBodyBytes: number;
  /** Per-key rpm/tpm (MOCK_LIMITS); keys not listed get large defaults. */
  limits?: Map<string, KeyLimits>;
}

const MAX_FAULT_DELAY_MS = 600_000;
const FORMATS: readonly WireFormat[] = [openaiFormat, anthropicFormat, geminiFormat];

/**
 * The fake upstream: one server, every wire format at its real path, per-key rate-limit
 * headers, fault injection (prompt markers or standing faults set over HTTP), and stats.
 *   GET  /_stats                 per-key and per-format counts
 *   POST /_stats/reset           clears counts, windows, fault counters and standing faults
 *   POST /_control/faults        {format?, model?, fault: "status=500,times=3,id=x"}
 *   DELETE /_control/faults      clears standing faults
 *   POST /_control/keys          {key, revoked: true|false}: a revoked key gets each format's 401
 *   GET  /v1/models, /v1beta/models   model lists (what Switchyard probes a disabled key with)
 */
export class MockProvider {
  readonly stats = new Stats();
  readonly server: Server;
  private readonly faults = new FaultCounter();
  private readonly windows: SlidingWindows;
  private standing: StandingFault[] = [];
  private readonly revoked = new Set<string>();

  constructor(private readonly opts: MockOptions) {
    this.windows = new SlidingWindows(opts.limits);
    this.server = createServer((req, res) => {
      this.handle(req, res).catch(() => {
        if (!res.headersSent) send(res, openaiFormat.error(500, "mock internal error"));
      });
    });
    this.server.keepAliveTimeout = 60_000;
  }

  listen(port: number, host = "127.0.0.1"): Promise<number> {
    return new Promise((resolve, reject) => {
      this.server.once("error", reject);
      this.server.listen(port, host, () => {
        const addr = this.server.address();
        resolve(typeof addr === "object" && addr ? addr.port : port);
      });
    });
  }

  close(): Promise<void> {
    this.server.closeAllConnections();
    return new Promise((resolve) => this.server.close(() => resolve()));
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? "/", "http://mock");
    const method = req.method ?? "GET";
    for (const format of FORMATS) {
      const m = format.match(method, url.pathname);
      if (m) return this.serve(format, m.pathModel, req, res, url, m.stream === true);
    }
    if (method === "GET" && url.pathname === "/healthz")
      return send(res, { status: 200, body: { ok: true } });
    if (method === "GET" && url.pathname === "/_stats")
      return send(res, { status: 200, body: this.stats.toJSON((k) => this.windows.peaks(k)) });
    if (method === "GET" && (url.pathname === "/v1/models" || url.pathname === "/v1beta/models"))
      return this.listModels(req, res, url);
    if (url.pathname === "/_control/keys") return this.controlKeys(method, req, res);
    if (method === "POST" && url.pathname === "/v1/embeddings") return this.embeddings(req, res, url);
    if (method === "POST" && url.pathname === "/_stats/reset") {
      this.stats.reset();
      this.windows.reset();
      this.faults.reset();
      this.standing = [];
      this.revoked.clear();
      return send(res, { status: 200, body: { ok: true } });
    }
    if (url.pathname === "/_control/faults") return this.control(method, req, res);
    send(res, openaiFormat.error(404, `Unknown request URL: ${method} ${url.pathname}.`));
  }

  private async control(method: string, req: IncomingMessage, res: ServerResponse): Promise<void> {
    if (method === "DELETE") {
      this.standing = [];
      return send(res, { status: 200, body: { ok: true } });
    }
    if (method === "GET") return send(res, { status: 200, body: { faults: this.standing } });
    if (method !== "POST") return send(res, { status: 405, body: { error: "use GET, POST or DELETE" } });
    const raw = await readBody(req, 64 * 1024);
    let body: unknown;
    try {
      body = JSON.parse(raw ?? "");
    } catch {
      return send(res, { status: 400, body: { error: "body must be JSON" } });
    }
    const parsed = parseStandingFault(body);
    if (typeof parsed === "string") return send(res, { status: 400, body: { error: parsed } });
    this.standing.push(parsed);
    send(res, { status: 200, body: { ok: true, faults: this.standing.length } });
  }

  private keyWorks(apiKey: string): boolean {
    return apiKey !== "" && !apiKey.includes("invalid") && !this.revoked.has(apiKey);
  }

  /** OpenAI's embeddings endpoint, deterministic (see embeddings.ts); counted per key like chat calls. */
  private async embeddings(req: IncomingMessage, res: ServerResponse, url: URL): Promise<void> {
    const key = openaiFormat.apiKey(req, url);
    if (!this.keyWorks(key)) return send(res, openaiFormat.invalidKey());
    let body: unknown;
    try {
      body = JSON.parse((await readBody(req, this.opts.maxBodyBytes)) ?? "");
    } catch {
      return send(res, openaiFormat.error(400, "We could not parse the JSON body of your request."));
    }
    const b = body && typeof body === "object" ? (body as Record<string, unknown>) : {};
    const inputs = typeof b.input === "string" ? [b.input] : Array.isArray(b.input) ? b.input : undefined;
    if (!inputs || inputs.length === 0 || !inputs.every((x): x is string => typeof x === "string"))
      return send(res, openaiFormat.error(400, "'input' must be a string or an array of strings"));
    this.stats.begin(key, "embeddings");
    const tokens = inputs.reduce((n, s) => n + Math.ceil(s.length / 4), 0);
    this.stats.end(key, 200, tokens, 0);
    send(res, {
      status: 200,
      body: {
        object: "list",
        model: typeof b.model === "string" ? b.model : "mock-embedding",
        data: inputs.map((text, index) => ({ object: "embedding", index, embedding: embed(text) })),
        usage: { prompt_tokens: tokens, total_tokens: tokens },
      },
    });
  }

  /** The model list every provider serves; the mock's only checks the key. */
  private listModels(req: IncomingMessage, res: ServerResponse, url: URL): void {
    const gemini = url.pathname.startsWith("/v1beta");
    const anthropic = !gemini && req.headers["anthropic-version"] !== undefined;
    const format = gemini ? geminiFormat : anthropic ? anthropicFormat : openaiFormat;
    const key = format.apiKey(req, url);
    if (!this.keyWorks(key)) return send(res, format.invalidKey());
    const ids = ["gpt-4o-mini", "claude-sonnet-4-6", "gemini-2.5-flash"];
    const body = gemini
      ? { models: ids.map((id) => ({ name: `models/${id}` })) }
      : anthropic
        ? { data: ids.map((id) => ({ type: "model", id })), has_more: false }
        : { object: "list", data: ids.map((id) => ({ object: "model", id, owned_by: "mock" })) };
    send(res, { status: 200, body });
  }

  private async controlKeys(method: string, req: IncomingMessage, res: ServerResponse): Promise<void> {
    if (method !== "POST") return send(res, { status: 405, body: { error: "use POST {key, revoked}" } });
    let body: unknown;
    try {
      body = JSON.parse((await readBody(req, 64 * 1024)) ?? "");
    } catch {
      return send(res, { status: 400, body: { error: "body must be JSON" } });
    }
    const b = body && typeof body === "object" ? (body as Record<string, unknown>) : {};
    if (typeof b.key !== "string" || typeof b.revoked !== "boolean")
      return send(res, { status: 400, body: { error: "expected {key: string, revoked: boolean}" } });
    if (b.revoked) this.revoked.add(b.key);
    else this.revoked.delete(b.key);
    send(res, { status: 200, body: { ok: true, revoked: this.revoked.size } });
  }

  private standingFault(format: WireFormat, model: string): Fault | undefined {
    return this.standing.find(
      (s) =>
        (s.format === undefined || s.format === format.name) && (s.model === undefined || s.model === model),
    )?.fault;
  }

  private async serve(
    format: WireFormat,
    pathModel: string,
    req: IncomingMessage,
    res: ServerResponse,
    url: URL,
    streamPath = false,
  ): Promise<void> {
    const pre = format.precheck?.(req);
    if (pre) return send(res, pre);
    const apiKey = format.apiKey(req, url);
    if (!this.keyWorks(apiKey)) return send(res, format.invalidKey());
    const raw = await readBody(req, this.opts.maxBodyBytes);
    if (raw === undefined) return send(res, format.error(413, "Request too large."));
    let body: unknown;
    try {
      body = JSON.parse(raw);
    } catch {
      return send(res, format.error(400, "We could not parse the JSON body of your request."));
    }
    this.stats.begin(apiKey, format.name);
    let status = 500;
    let tokens: [number, number] = [0, 0];
    try {
      const parsed = format.parse(body, pathModel, streamPath);
      if (!isParsed(parsed)) {
        status = parsed.status;
        return send(res, parsed);
      }
      // Admission, as providers do it: the request counts against the key's rolling window at
      // arrival, with its prompt and the completion it will get; past the limits it is a 429.
      const planned =
        promptTokens(parsed.messages) + complete(parsed.messages, parsed.maxTokens).outputTokens;
      const admission = this.windows.admit(apiKey, planned);
      if (!admission.ok) {
        status = 429;
        const seconds = Math.max(1, Math.ceil(admission.retryAfterMs / 1000));
        return send(res, format.rateLimited(seconds, "all", this.windows.state(apiKey)));
      }
      const marker = parseFault(parsed.messages.map((m) => m.text).join("\n"));
      const fault = marker ?? this.standingFault(format, parsed.model);
      const active = fault && this.faults.shouldFire(fault) ? fault : undefined;
      if (this.opts.latencyMs > 0) await sleep(this.opts.latencyMs);
      if (active) {
        const handled = await this.applyFault(format, apiKey, parsed, active, req, res);
        if (handled !== undefined) {
          status = handled;
          return;
        }
      }
      if (this.opts.errorRate > 0 && Math.random() < this.opts.errorRate) {
        status = 500;
        return send(res, format.error(500));
      }
      const r = this.answer(format, apiKey, parsed, active?.cachedTokens);
      status = 200;
      tokens = [r.inputTokens, r.outputTokens];
      if (!parsed.stream) return send(res, r.response);
      const includeUsage = (body as { stream_options?: { include_usage?: unknown } }).stream_options
        ?.include_usage;
      const events = streamEvents(
        format.name,
        { ...parsed, includeUsage: includeUsage === true },
        r.completion,
      );
      const completed = await writeSse(
        res,
        events,
        active?.chunkDelayMs ?? this.opts.chunkDelayMs ?? 0,
        active?.failAfter,
      );
      if (!completed) status = 599;
    } finally {
      this.stats.end(apiKey, status, tokens[0], tokens[1]);
    }
  }

  private answer(format: WireFormat, apiKey: string, req: ParsedRequest, cached?: number) {
    const inputTokens = promptTokens(req.messages);
    const out = complete(req.messages, req.maxTokens);
    const cachedTokens = Math.min(Math.max(0, Math.floor(cached ?? 0)), inputTokens);
    const response = format.success(
      req,
      {
        text: out.text,
        finished: out.finishReason,
        inputTokens,
        outputTokens: out.outputTokens,
        ...(cachedTokens > 0 ? { cachedTokens } : {}),
      },
      this.windows.state(apiKey),
    );
    const completion = {
      text: out.text,
      finished: out.finishReason,
      inputTokens,
      outputTokens: out.outputTokens,
      ...(cachedTokens > 0 ? { cachedTokens } : {}),
    };
    return { response, inputTokens, outputTokens: out.outputTokens, completion };
  }

  /** Returns the status it answered with, or undefined when the request should go on normally. */
  private async applyFault(
    format: WireFormat,
    apiKey: string,
    parsed: ParsedRequest,
    f: Fault,
    req: IncomingMessage,
    res: ServerResponse,
  ): Promise<number | undefined> {
    if (f.delayMs) await sleep(Math.min(f.delayMs, MAX_FAULT_DELAY_MS));
    if (f.hang) {
      await new Promise<void>((resolve) => req.socket.once("close", () => resolve()));
      return 0;
    }
    if (f.reset) {
      req.socket.destroy();
      return 0;
    }
    if (f.malformed) {
      res.writeHead(200, { "content-type": "application/json" });
      res.end('{"id": "broken", "choices": [');
      return 200;
    }
    if (f.truncated) {
      const text = JSON.stringify(this.answer(format, apiKey, parsed).response.body);
      res.writeHead(200, { "content-type": "application/json", "content-length": Buffer.byteLength(text) });
      await new Promise<void>((resolve) =>
        res.write(text.slice(0, Math.floor(text.length / 2)), () => resolve()),
      );
      req.socket.destroy();
      return 200;
    }
    if (f.status === 429) {
      send(res, format.rateLimited(f.retryAfter ?? 1, f.hint ?? "all", this.windows.state(apiKey)));
      return 429;
    }
    if (f.status && f.status >= 400) {
      send(
        res,
        format.error(
          f.status,
          f.echoKey ? `Invalid request made with key ${apiKey}; check your key` : undefined,
        ),
      );
      return f.status;
    }
    return undefined;
  }
}

/**
 * Writes server-sent events, `delayMs` apart; with `failAfter`, destroys the connection after
 * that many content events (a mid-stream fault). Resolves false when the stream was cut.
 */
async function writeSse(
  res: ServerResponse,
  events: SseEvent[],
  delayMs: number,
  failAfter: number | undefined,
): Promise<boolean> {
  res.writeHead(200, {
    "content-type": "text/event-stream",
    "cache-control": "no-cache",
    connection: "keep-alive",
  });
  let sent = 0;
  for (const e of events) {
    if (res.destroyed) return false;
    if (e.content) {
      if (failAfter !== undefined && sent >= failAfter) {
        // Let what was written reach the client, then cut the connection mid-stream.
        await new Promise<void>((resolve) => res.write("", () => resolve()));
        await sleep(20);
        res.destroy();
        return false;
      }
      if (delayMs > 0 && sent > 0) await sleep(delayMs);
      sent += 1;
    }
    res.write(`${e.event ? `event: ${e.event}\n` : ""}data: ${e.data}\n\n`);
  }
  res.end();
  return true;
}

function send(res: ServerResponse, r: MockResponse): void {
  if (res.headersSent || res.destroyed) return;
  const text = JSON.stringify(r.body);
  res.writeHead(r.status, {
    "content-type": "application/json",
    "content-length": Buffer.byteLength(text),
    ...r.headers,
  });
  res.end(text);
}

function readBody(req: IncomingMessage, limit: number): Promise<string | undefined> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let over = false;
    req.on("data", (c: Buffer) => {
      size += c.length;
      if (size > limit) over = true;
      else chunks.push(c);
    });
    req.on("end", () => resolve(over ? undefined : Buffer.concat(chunks).toString("utf8")));
    req.on("error", reject);
  });
}
