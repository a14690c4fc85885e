import { redactSecrets } from "@switchyard/core";
import { HttpClient, type JsonResponse } from "./http";
import { kindForStatus, ProviderError, type ProviderErrorKind } from "./errors";
import type { RateLimitInfo } from "./rate-limits";
import { retryHintMs } from "./retry-hints";
import type { CallContext, ChatProvider, ChatResult, ProviderRequest, StreamReader } from "./types";

/** What every adapter is built from: where the provider is and how long to wait for it. */
export interface AdapterOptions {
  id: string;
  baseUrl: string;
  timeoutMs: number;
  connectTimeoutMs: number;
  maxResponseBytes: number;
  /** Extra headers sent on every call (e.g. anthropic-beta, OpenRouter's HTTP-Referer). */
  headers?: Record<string, string>;
  /** Keep-alive connections to the provider at most: one per call this process may have in flight. */
  connections?: number;
}

/** An upstream error body, reduced to what classification needs. */
export interface UpstreamError {
  message: string;
  code?: string;
  /** The provider said so in the body, overriding the status-based kind (e.g. Gemini's bad key is a 400). */
  kind?: ProviderErrorKind;
  /** A retry delay carried in the body (Gemini's RetryInfo). */
  retryDelayMs?: number;
}

/**
 * The shared part of every adapter: one keep-alive pool, JSON in and out, and the turning of
 * a non-2xx answer into a classified ProviderError. Each provider supplies its URL, headers,
 * body mapping, result mapping and error-body reader.
 */
export abstract class HttpAdapter implements ChatProvider {
  readonly id: string;
  abstract readonly type: string;
  protected readonly baseUrl: string;
  private readonly http: HttpClient;
  private readonly extraHeaders: Record<string, string>;

  constructor(opts: AdapterOptions) {
    this.id = opts.id;
    this.baseUrl = opts.baseUrl.replace(/\/+$/, "");
    this.extraHeaders = opts.headers ?? {};
    this.http = new HttpClient({
      provider: opts.id,
      timeoutMs: opts.timeoutMs,
      connectTimeoutMs: opts.connectTimeoutMs,
      maxResponseBytes: opts.maxResponseBytes,
      connections: opts.connections,
    });
  }

  protected abstract url(req: ProviderRequest): string;
  protected abstract authHeaders(apiKey: string): Record<string, string>;
  abstract buildBody(req: ProviderRequest): Record<string, unknown>;
  /** Maps a 2xx body to a result, or returns undefined when it is not the shape promised. */
  protected abstract toResult(body: unknown, req: ProviderRequest): Omit<ChatResult, "provider"> | undefined;
  protected abstract readError(body: unknown): UpstreamError | undefined;
  protected abstract rateLimits(res: JsonResponse): RateLimitInfo | undefined;

  /** The streaming call's URL (Gemini's differs) and body (the format's stream flag added). */
  protected streamUrl(req: ProviderRequest): string {
    return this.url(req);
  }
  protected streamBody(req: ProviderRequest): Record<string, unknown> {
    return { ...this.buildBody(req), stream: true };
  }
  protected abstract streamReader(req: ProviderRequest, onDelta: (text: string) => void): StreamReader;

  async chat(req: ProviderRequest, ctx: CallContext): Promise<ChatResult> {
    if (ctx.onDelta) return this.chatStream(req, ctx, ctx.onDelta);
    const body = { ...this.buildBody(req), ...req.extraBody };
    const res = await this.http.postJson(
      this.url(req),
      { ...this.extraHeaders, ...this.authHeaders(ctx.apiKey) },
      body,
      ctx.signal,
    );
    const rateLimit = this.rateLimits(res);
    if (res.status < 200 || res.status >= 300) throw this.failure(res, rateLimit, ctx.apiKey);
    const result = res.body === undefined ? undefined : this.toResult(res.body, req);
    if (!result) {
      throw new ProviderError(
        "malformed",
        `upstream answered ${res.status} with a body that is not a ${this.type} response`,
        this.id,
        { status: res.status },
      );
    }
    return { ...result, provider: this.id, ...(rateLimit ? { rateLimit } : {}) };
  }

  private async chatStream(
    req: ProviderRequest,
    ctx: CallContext,
    onDelta: (text: string) => void,
  ): Promise<ChatResult> {
    const reader = this.streamReader(req, onDelta);
    const res = await this.http.postSse(
      this.streamUrl(req),
      { ...this.extraHeaders, ...this.authHeaders(ctx.apiKey) },
      { ...this.streamBody(req), ...req.extraBody },
      ctx.signal,
      (event, data) => reader.event(event, data),
    );
    const rateLimit = this.rateLimits(res);
    if (res.status < 200 || res.status >= 300) throw this.failure(res, rateLimit, ctx.apiKey);
    const result = reader.result();
    if (!result)
      throw new ProviderError(
        "malformed",
        `the ${this.type} stream ended before the answer was complete`,
        this.id,
        {
          status: res.status,
        },
      );
    return { ...result, provider: this.id, ...(rateLimit ? { rateLimit } : {}) };
  }

  /**
   * Checks that a key works without spending tokens: lists the provider's models. Throws the
   * classified ProviderError when the provider refuses (auth for a key still bad).
   */
  async probe(ctx: CallContext): Promise<void> {
    const res = await this.http.getJson(
      this.probeUrl(),
      { ...this.extraHeaders, ...this.authHeaders(ctx.apiKey) },
      ctx.signal,
    );
    if (res.status < 200 || res.status >= 300) throw this.failure(res, undefined, ctx.apiKey);
  }

  protected abstract probeUrl(): string;

  private failure(res: JsonResponse, rateLimit: RateLimitInfo | undefined, apiKey: string): ProviderError {
    const upstream = this.readError(res.body);
    const kind = upstream?.kind ?? kindForStatus(res.status);
    // Auth failures must not echo anything the upstream may have said about our key.
    const message =
      kind === "auth"
        ? `upstream rejected the API key (${res.status}); check the key in the provider config`
        : redactSecrets(upstream?.message ?? (res.rawText.slice(0, 300) || `(empty ${res.status} answer)`), [
            apiKey,
          ]);
    const retryAfterMs = retryHintMs(res.headers, {
      ...(upstream?.retryDelayMs !== undefined ? { bodyDelayMs: upstream.retryDelayMs } : {}),
      ...(kind === "rate_limit" && rateLimit ? { rateLimit } : {}),
    });
    return new ProviderError(kind, message, this.id, {
      status: res.status,
      ...(retryAfterMs !== undefined ? { retryAfterMs } : {}),
      ...(rateLimit ? { rateLimit } : {}),
      ...(upstream?.code ? { code: upstream.code } : {}),
    });
  }

  close(): Promise<void> {
    return this.http.close();
  }
}
