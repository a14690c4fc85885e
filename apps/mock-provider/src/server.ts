import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import { setTimeout as sleep } from "node:timers/promises";
import { FaultCounter, parseFault, type Fault } from "./faults";
import { openaiCompletion, openaiError, parseOpenAIRequest } from "./openai";
import { Stats } from "./stats";

export interface MockResponse {
  status: number;
  body: unknown;
  headers?: Record<string, string>;
}

export interface MockOptions {
  /** Added to every answer, in ms. */
  latencyMs: number;
  /** Share of requests (0..1) answered 500 at random. */
  errorRate: number;
  maxBodyBytes: number;
}

const MAX_FAULT_DELAY_MS = 600_000;

/** The fake upstream: one server, every wire format at its real path, fault injection, stats. */
export class MockProvider {
  readonly stats = new Stats();
  readonly server: Server;
  private readonly faults = new FaultCounter();

  constructor(private readonly opts: MockOptions) {
    this.server = createServer((req, res) => {
      this.handle(req, res).catch(() => {
        if (!res.headersSent)
          send(res, {
            status: 500,
            body: { error: { message: "mock internal error", type: "server_error" } },
          });
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
    if (req.method === "GET" && url.pathname === "/healthz")
      return send(res, { status: 200, body: { ok: true } });
    if (req.method === "GET" && url.pathname === "/_stats")
      return send(res, { status: 200, body: this.stats.toJSON() });
    if (req.method === "POST" && url.pathname === "/_stats/reset") {
      this.stats.reset();
      return send(res, { status: 200, body: { ok: true } });
    }
    if (req.method === "POST" && url.pathname === "/v1/chat/completions") return this.openai(req, res);
    send(
      res,
      openaiError(
        404,
        `Unknown request URL: ${req.method} ${url.pathname}.`,
        "invalid_request_error",
        null,
        "unknown_url",
      ),
    );
  }

  private async openai(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const auth = req.headers.authorization ?? "";
    const apiKey = auth.startsWith("Bearer ") ? auth.slice(7).trim() : "";
    if (!apiKey || apiKey.includes("invalid")) {
      return send(
        res,
        openaiError(
          401,
          "Incorrect API key provided. You can find your API key at your provider's dashboard.",
          "invalid_request_error",
          null,
          "invalid_api_key",
        ),
      );
    }
    const raw = await readBody(req, this.opts.maxBodyBytes);
    if (raw === undefined) return send(res, openaiError(413, "Request too large.", "invalid_request_error"));
    let body: unknown;
    try {
      body = JSON.parse(raw);
    } catch {
      return send(
        res,
        openaiError(400, "We could not parse the JSON body of your request.", "invalid_request_error"),
      );
    }
    this.stats.begin(apiKey);
    let status = 500;
    let tokens: [number, number] = [0, 0];
    try {
      const parsed = parseOpenAIRequest(body);
      if ("status" in parsed) {
        status = parsed.status;
        return send(res, parsed);
      }
      const fault = parseFault(parsed.messages.map((m) => m.text).join("\n"));
      const active = fault && this.faults.shouldFire(fault) ? fault : undefined;
      if (this.opts.latencyMs > 0) await sleep(this.opts.latencyMs);
      if (active) {
        const handled = await this.applyFault(active, req, res);
        if (handled !== undefined) {
          status = handled;
          return;
        }
      }
      if (this.opts.errorRate > 0 && Math.random() < this.opts.errorRate) {
        status = 500;
        return send(
          res,
          openaiError(
            500,
            "The server had an error while processing your request. Sorry about that!",
            "server_error",
          ),
        );
      }
      const done = openaiCompletion(parsed);
      status = 200;
      tokens = [done.inputTokens, done.outputTokens];
      send(res, done.response);
    } finally {
      this.stats.end(apiKey, status, tokens[0], tokens[1]);
    }
  }

  /** Returns the status it answered with, or undefined when the request should go on normally. */
  private async applyFault(f: Fault, req: IncomingMessage, res: ServerResponse): Promise<number | undefined> {
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
      res.end('{"id": "chatcmpl-broken", "choices": [');
      return 200;
    }
    if (f.status && f.status >= 400) {
      const headers: Record<string, string> = {};
      if (f.retryAfter !== undefined) headers["retry-after"] = String(f.retryAfter);
      const type =
        f.status === 429 ? "rate_limit_exceeded" : f.status >= 500 ? "server_error" : "invalid_request_error";
      const message =
        f.status === 429
          ? "Rate limit reached for requests."
          : f.status >= 500
            ? "The server had an error while processing your request. Sorry about that!"
            : "Injected client error.";
      send(res, { ...openaiError(f.status, message, type), headers });
      return f.status;
    }
    return undefined;
  }
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
