import { z } from "zod";
import type { Received } from "./receiver";

/**
 * Spans as an OTLP/HTTP receiver gets them (JSON encoding, as @opentelemetry/exporter-trace-otlp-http
 * sends by default), flattened for assertions: ids in hex, attributes as plain values, the
 * service that sent each span.
 */
export interface ReceivedSpan {
  traceId: string;
  spanId: string;
  parentSpanId: string | undefined;
  name: string;
  /** OTLP's SpanKind: 1 internal, 2 server, 3 client, 4 producer, 5 consumer. */
  kind: number;
  service: string;
  attributes: Record<string, unknown>;
  statusCode: number;
}

const anyValue: z.ZodType<unknown> = z.lazy(() =>
  z
    .object({
      stringValue: z.string().optional(),
      intValue: z.union([z.string(), z.number()]).optional(),
      doubleValue: z.number().optional(),
      boolValue: z.boolean().optional(),
      arrayValue: z.object({ values: z.array(anyValue).optional() }).optional(),
    })
    .transform((v) => {
      if (v.stringValue !== undefined) return v.stringValue;
      if (v.intValue !== undefined) return Number(v.intValue);
      if (v.doubleValue !== undefined) return v.doubleValue;
      if (v.boolValue !== undefined) return v.boolValue;
      return (v.arrayValue?.values ?? []) as unknown[];
    }),
);
const attributes = z.array(z.object({ key: z.string(), value: anyValue })).optional();
const toRecord = (a: z.infer<typeof attributes>) =>
  Object.fromEntries((a ?? []).map((x) => [x.key, x.value]));

const exportSchema = z.object({
  resourceSpans: z.array(
    z.object({
      resource: z.object({ attributes }).optional(),
      scopeSpans: z.array(
        z.object({
          spans: z.array(
            z.object({
              traceId: z.string(),
              spanId: z.string(),
              parentSpanId: z.string().optional(),
              name: z.string(),
              kind: z.number(),
              attributes,
              status: z.object({ code: z.number().optional() }).optional(),
            }),
          ),
        }),
      ),
    }),
  ),
});

export function otlpSpans(requests: Received[]): ReceivedSpan[] {
  const out: ReceivedSpan[] = [];
  for (const r of requests) {
    const body = exportSchema.parse(JSON.parse(r.body));
    for (const rs of body.resourceSpans) {
      const service = String(toRecord(rs.resource?.attributes)["service.name"] ?? "");
      for (const ss of rs.scopeSpans)
        for (const s of ss.spans)
          out.push({
            traceId: s.traceId,
            spanId: s.spanId,
            parentSpanId: s.parentSpanId || undefined,
            name: s.name,
            kind: s.kind,
            service,
            attributes: toRecord(s.attributes),
            statusCode: s.status?.code ?? 0,
          });
    }
  }
  return out;
}
