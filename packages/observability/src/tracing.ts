import {
  context,
  INVALID_SPAN_CONTEXT,
  propagation,
  ROOT_CONTEXT,
  SpanKind,
  SpanStatusCode,
  trace,
  type Attributes,
  type Context,
  type Span,
  type SpanContext,
  type Tracer,
} from "@opentelemetry/api";
import { ATTR_SERVICE_NAME, ATTR_SERVICE_VERSION } from "@opentelemetry/semantic-conventions";
import type { Telemetry } from "bullmq";

export { context, propagation, ROOT_CONTEXT, SpanKind, SpanStatusCode, trace };
export type { Attributes, Context, Span, Tracer };

/**
 * Traces with the official OpenTelemetry SDK, exported over OTLP/HTTP when
 * OTEL_EXPORTER_OTLP_ENDPOINT (or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT) is set and off otherwise.
 * Off means no SDK at all (not even loaded: it costs ~180 ms of start-up): the API's tracer is the
 * no-op one, BullMQ gets no telemetry (its trace() calls its callback straight away) and our own
 * span code is skipped behind `enabled`.
 * The exporter and the SDK read the standard OTEL_* variables themselves (headers, timeouts,
 * OTEL_TRACES_SAMPLER, OTEL_BSP_*, OTEL_RESOURCE_ATTRIBUTES).
 */
export interface Tracing {
  readonly enabled: boolean;
  readonly tracer: Tracer;
  /** BullMQ's telemetry option (Queue, Worker): undefined when tracing is off. */
  readonly bullmq: Telemetry | undefined;
  /** Flushes what is buffered (call on shutdown). */
  shutdown(): Promise<void>;
}

export const TRACER_NAME = "switchyard";
const VERSION = "0.1.0";

export const tracingOff: Tracing = {
  enabled: false,
  tracer: trace.getTracer(TRACER_NAME),
  bullmq: undefined,
  shutdown: () => Promise.resolve(),
};

export function tracingWanted(env: NodeJS.ProcessEnv = process.env): boolean {
  if (env.OTEL_SDK_DISABLED === "true" || env.OTEL_TRACES_EXPORTER === "none") return false;
  return Boolean(env.OTEL_EXPORTER_OTLP_ENDPOINT || env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT);
}

/** Starts tracing for one app (service.name switchyard-<app> unless OTEL_SERVICE_NAME says). */
export async function startTracing(app: string, env: NodeJS.ProcessEnv = process.env): Promise<Tracing> {
  if (!tracingWanted(env)) return tracingOff;
  const [
    { OTLPTraceExporter },
    { defaultResource, resourceFromAttributes },
    { BatchSpanProcessor },
    sdk,
    otel,
  ] = await Promise.all([
    import("@opentelemetry/exporter-trace-otlp-http"),
    import("@opentelemetry/resources"),
    import("@opentelemetry/sdk-trace-base"),
    import("@opentelemetry/sdk-trace-node"),
    import("bullmq-otel"),
  ]);
  const provider = new sdk.NodeTracerProvider({
    resource: defaultResource().merge(
      resourceFromAttributes({
        [ATTR_SERVICE_NAME]: env.OTEL_SERVICE_NAME ?? `switchyard-${app}`,
        [ATTR_SERVICE_VERSION]: VERSION,
      }),
    ),
    spanProcessors: [new BatchSpanProcessor(new OTLPTraceExporter())],
  });
  // The global provider, the AsyncLocalStorage context manager and the W3C trace-context and
  // baggage propagators: context follows async calls, and traceparent is read and written.
  provider.register();
  const bullmq = new otel.BullMQOtel({ tracerName: "bullmq", version: VERSION });
  return {
    enabled: true,
    tracer: trace.getTracer(TRACER_NAME, VERSION),
    bullmq: quiet(bullmq, (ctx) => new otel.BullMQOTelSpan(trace.wrapSpanContext(ctx))),
    shutdown: () => provider.shutdown(),
  };
}

/**
 * BullMQ's own housekeeping (the stalled-jobs check every few seconds, timers, pauses, closes)
 * would each be a trace of its own, thousands an hour with nothing to do with any job: those
 * operations get a span that records nothing. A job's add, process, completion, failure and
 * retry stay.
 */
const HOUSEKEEPING = new Set([
  "startStalledCheckTimer",
  "moveStalledJobsToWait",
  "getNextJob",
  "close",
  "pause",
  "resume",
  "removeDebounceKey",
  "removeDeduplicationKey",
]);

function quiet(
  telemetry: Telemetry,
  silent: (ctx: SpanContext) => ReturnType<Telemetry["tracer"]["startSpan"]>,
): Telemetry {
  const tracer = telemetry.tracer;
  return {
    ...(telemetry.meter ? { meter: telemetry.meter } : {}),
    contextManager: telemetry.contextManager,
    tracer: {
      startSpan: (name, options, ctx) => {
        const operation = name.split(" ", 1)[0] ?? name;
        return HOUSEKEEPING.has(operation)
          ? silent(INVALID_SPAN_CONTEXT)
          : tracer.startSpan(name, options, ctx);
      },
    },
  };
}

/**
 * Runs `fn` in a span that ends when it settles (an error marks it failed). With tracing off it
 * just runs `fn` with undefined.
 */
export async function inSpan<T>(
  tracing: Tracing,
  name: string,
  options: { kind?: SpanKind; attributes?: Attributes },
  fn: (span: Span | undefined) => Promise<T>,
): Promise<T> {
  if (!tracing.enabled) return fn(undefined);
  return tracing.tracer.startActiveSpan(name, options, async (span) => {
    try {
      return await fn(span);
    } catch (err) {
      span.setStatus({
        code: SpanStatusCode.ERROR,
        message: err instanceof Error ? err.message : String(err),
      });
      throw err;
    } finally {
      span.end();
    }
  });
}

/** The active span's W3C traceparent, to carry a trace across a queue by hand; undefined when off. */
export function activeTraceparent(): string | undefined {
  const carrier: Record<string, string> = {};
  propagation.inject(context.active(), carrier);
  return carrier.traceparent;
}

/** Runs `fn` in the context a stored traceparent names (or as is, when there is none). */
export function withTraceparent<T>(traceparent: string | undefined, fn: () => T): T {
  if (!traceparent) return fn();
  return context.with(propagation.extract(ROOT_CONTEXT, { traceparent }), fn);
}
