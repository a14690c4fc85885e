import { createParser } from "eventsource-parser";
import { Agent, errors as undiciErrors, request } from "undici";
import { ProviderError } from "./errors";

/**
 * JSON over HTTP for adapters: a keep-alive pool per provider, a connect timeout, a total
 * timeout merged with the caller's cancel signal, and a cap on the response size.
 */
export interface HttpClientOptions {
  provider: string;
  connectTimeoutMs: number;
  timeoutMs: number;
  maxResponseBytes: number;
  connections?: number;
}

export interface JsonResponse {
  status: number;
  headers: (name: string) => string | undefined;
  body: unknown;
  rawText: string;
}

/**
 * The call's own signal: aborted by the caller's signal or, after `ms`, with a TimeoutError (then
 * `timedOut`). One timer and one listener, released by done(): AbortSignal.timeout plus
 * AbortSignal.any per call cost more (a timer that outlives the call, and any()'s bookkeeping).
 */
function callTimeout(caller: AbortSignal, ms: number) {
  const ctrl = new AbortController();
  const onAbort = () => ctrl.abort(caller.reason);
  if (caller.aborted) ctrl.abort(caller.reason);
  else caller.addEventListener("abort", onAbort, { once: true });
  const timer = setTimeout(() => ctrl.abort(new DOMException("the call timed out", "TimeoutError")), ms);
  return {
    signal: ctrl.signal,
    done: () => {
      clearTimeout(timer);
      caller.removeEventListener("abort", onAbort);
    },
  };
}

export class HttpClient {
  private readonly agent: Agent;

  constructor(private readonly opts: HttpClientOptions) {
    this.agent = new Agent({
      connect: { timeout: opts.connectTimeoutMs },
      connections: opts.connections ?? 512,
      keepAliveTimeout: 30_000,
      // The total timeout below covers the whole call; these only stop a silent socket early.
      headersTimeout: opts.timeoutMs,
      bodyTimeout: opts.timeoutMs,
    });
  }

  postJson(
    url: string,
    headers: Record<string, string>,
    body: unknown,
    signal: AbortSignal,
  ): Promise<JsonResponse> {
    return this.send("POST", url, headers, body, signal);
  }

  getJson(url: string, headers: Record<string, string>, signal: AbortSignal): Promise<JsonResponse> {
    return this.send("GET", url, headers, undefined, signal);
  }

  /**
   * POSTs and reads a server-sent event stream: a 2xx answer's events go to `onEvent` as they
   * arrive (an error it throws ends the call); any other answer is read whole, as postJson does.
   */
  async postSse(
    url: string,
    headers: Record<string, string>,
    body: unknown,
    signal: AbortSignal,
    onEvent: (event: string | undefined, data: string) => void,
  ): Promise<JsonResponse> {
    const timeout = callTimeout(signal, this.opts.timeoutMs);
    let status: number | undefined;
    try {
      const res = await request(url, {
        method: "POST",
        dispatcher: this.agent,
        headers: { accept: "text/event-stream", "content-type": "application/json", ...headers },
        body: JSON.stringify(body),
        signal: timeout.signal,
      });
      status = res.statusCode;
      const h = res.headers;
      const get = (name: string): string | undefined => {
        const v = h[name.toLowerCase()];
        return Array.isArray(v) ? v[0] : v;
      };
      if (res.statusCode < 200 || res.statusCode >= 300) {
        const rawText = (await res.body.text()).slice(0, this.opts.maxResponseBytes);
        let parsed: unknown;
        try {
          parsed = rawText ? JSON.parse(rawText) : undefined;
        } catch {
          parsed = undefined;
        }
        return { status: res.statusCode, headers: get, body: parsed, rawText };
      }
      let failure: unknown;
      const parser = createParser({
        onEvent: (e) => {
          if (failure === undefined) {
            try {
              onEvent(e.event, e.data);
            } catch (err) {
              failure = err;
            }
          }
        },
      });
      let size = 0;
      for await (const chunk of res.body) {
        const buf = chunk as Buffer;
        size = this.within(size + buf.length, res);
        parser.feed(buf.toString("utf8"));
        if (failure !== undefined) {
          res.body.destroy();
          throw failure;
        }
      }
      return { status: res.statusCode, headers: get, body: undefined, rawText: "" };
    } catch (err) {
      throw this.classifyTransportError(err, signal, timeout.signal, status);
    } finally {
      timeout.done();
    }
  }

  private async send(
    method: "GET" | "POST",
    url: string,
    headers: Record<string, string>,
    body: unknown,
    signal: AbortSignal,
  ): Promise<JsonResponse> {
    const timeout = callTimeout(signal, this.opts.timeoutMs);
    let status: number | undefined;
    try {
      const res = await request(url, {
        method,
        dispatcher: this.agent,
        headers: {
          accept: "application/json",
          ...(body === undefined ? {} : { "content-type": "application/json" }),
          ...headers,
        },
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
        signal: timeout.signal,
      });
      status = res.statusCode;
      const chunks: Buffer[] = [];
      let size = 0;
      for await (const chunk of res.body) {
        const buf = chunk as Buffer;
        size = this.within(size + buf.length, res);
        chunks.push(buf);
      }
      const rawText = Buffer.concat(chunks).toString("utf8");
      let parsed: unknown = undefined;
      if (rawText.length > 0) {
        try {
          parsed = JSON.parse(rawText);
        } catch {
          parsed = undefined;
        }
      }
      const h = res.headers;
      const get = (name: string): string | undefined => {
        const v = h[name.toLowerCase()];
        return Array.isArray(v) ? v[0] : v;
      };
      return { status: res.statusCode, headers: get, body: parsed, rawText };
    } catch (err) {
      throw this.classifyTransportError(err, signal, timeout.signal, status);
    } finally {
      timeout.done();
    }
  }

  /** The bytes read so far, or a malformed-answer error (the body dropped) past maxResponseBytes. */
  private within(size: number, res: { statusCode: number; body: { destroy(): unknown } }): number {
    if (size <= this.opts.maxResponseBytes) return size;
    res.body.destroy();
    throw new ProviderError(
      "malformed",
      `response larger than ${this.opts.maxResponseBytes} bytes`,
      this.opts.provider,
      {
        status: res.statusCode,
      },
    );
  }

  /** `status` is set when the answer's head arrived and the failure came while reading its body. */
  private classifyTransportError(
    err: unknown,
    caller: AbortSignal,
    timeout: AbortSignal,
    status: number | undefined,
  ): ProviderError {
    const p = this.opts.provider;
    if (err instanceof ProviderError) return err;
    if (caller.aborted) return new ProviderError("cancelled", "the call was cancelled", p);
    if (timeout.aborted)
      return new ProviderError("timeout", `no complete answer within ${this.opts.timeoutMs} ms`, p);
    if (err instanceof undiciErrors.ConnectTimeoutError) {
      return new ProviderError("timeout", `connect timed out after ${this.opts.connectTimeoutMs} ms`, p);
    }
    if (err instanceof undiciErrors.HeadersTimeoutError || err instanceof undiciErrors.BodyTimeoutError) {
      return new ProviderError("timeout", "upstream stopped answering", p);
    }
    const code = (err as NodeJS.ErrnoException).code;
    const message = err instanceof Error ? err.message : String(err);
    if (status !== undefined) {
      return new ProviderError(
        "connection",
        `the upstream closed the connection before the body was complete (${code ?? message})`,
        p,
        { status },
      );
    }
    return new ProviderError("connection", `connection failed${code ? ` (${code})` : ""}: ${message}`, p);
  }

  async close(): Promise<void> {
    await this.agent.close();
  }
}
