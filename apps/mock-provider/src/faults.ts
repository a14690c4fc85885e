import { WIRE_NAMES, type HintPlace, type WireName } from "./formats/types";

/**
 * Fault markers a prompt may carry, e.g. "[[mock:status=500,times=2,id=a1]]":
 *   status=N        answer with HTTP status N (error body in the wire format's shape)
 *   times=K,id=X    only the first K requests carrying id X get the fault; later ones succeed
 *   retry_after=S   on a 429: come back in S seconds, said where the provider says it
 *   hint=P          ...only in one place: header (retry-after), reset (rate-limit reset
 *                   headers) or body (Gemini's RetryInfo); default: all the provider uses
 *   delay=MS        wait MS before answering
 *   hang            never answer (until the client gives up)
 *   reset           destroy the connection without an answer
 *   malformed       answer 200 with a body that is not JSON
 *   truncated       answer 200 with a Content-Length longer than the body, then close
 *   echo_key        with status=N: the error message quotes the API key the request used (some
 *                   upstreams do; Switchyard must never pass it on)
 *   cached=N        a success reports N of the prompt's tokens as read from the provider's prompt
 *                   cache (in each format's own field)
 *   chunk_delay=MS  a streamed answer waits MS between its content events
 *   fail_after=N    a streamed answer's connection is cut after N content events
 * The same grammar (without the brackets) sets standing faults through POST /_control/faults.
 */
export interface Fault {
  status?: number;
  times?: number;
  id?: string;
  retryAfter?: number;
  hint?: HintPlace;
  delayMs?: number;
  hang?: boolean;
  reset?: boolean;
  malformed?: boolean;
  truncated?: boolean;
  echoKey?: boolean;
  cachedTokens?: number;
  chunkDelayMs?: number;
  failAfter?: number;
}

const MARKER = /\[\[mock:([^\]]*)\]\]/;
const HINTS: readonly HintPlace[] = ["all", "header", "reset", "body"];

export function parseFaultSpec(spec: string): Fault {
  const fault: Fault = {};
  for (const part of spec.split(",")) {
    const [rawKey, rawValue] = part.split("=");
    const key = rawKey?.trim();
    const value = rawValue?.trim() ?? "";
    switch (key) {
      case "status":
        fault.status = Number(value);
        break;
      case "times":
        fault.times = Number(value);
        break;
      case "id":
        fault.id = value;
        break;
      case "retry_after":
        fault.retryAfter = Number(value);
        break;
      case "hint":
        if ((HINTS as readonly string[]).includes(value)) fault.hint = value as HintPlace;
        break;
      case "delay":
        fault.delayMs = Number(value);
        break;
      case "hang":
      case "reset":
      case "malformed":
      case "truncated":
        fault[key] = true;
        break;
      case "echo_key":
        fault.echoKey = true;
        break;
      case "cached":
        fault.cachedTokens = Number(value);
        break;
      case "chunk_delay":
        fault.chunkDelayMs = Number(value);
        break;
      case "fail_after":
        fault.failAfter = Number(value);
        break;
    }
  }
  return fault;
}

export function parseFault(text: string): Fault | undefined {
  const m = MARKER.exec(text);
  return m?.[1] === undefined ? undefined : parseFaultSpec(m[1]);
}

/** Counts how often each fault id has fired, so "times=K" faults stop after K requests. */
export class FaultCounter {
  private readonly fired = new Map<string, number>();

  /** True when this request should get the fault. */
  shouldFire(fault: Fault): boolean {
    if (fault.times === undefined || fault.id === undefined) return true;
    const n = this.fired.get(fault.id) ?? 0;
    if (n >= fault.times) return false;
    this.fired.set(fault.id, n + 1);
    return true;
  }

  reset(): void {
    this.fired.clear();
  }
}

/** A fault that applies to every request of one wire format (and model) until cleared. */
export interface StandingFault {
  format?: WireName;
  model?: string;
  fault: Fault;
}

export function parseStandingFault(body: unknown): StandingFault | string {
  if (!body || typeof body !== "object") return "body must be an object {format?, model?, fault}";
  const b = body as Record<string, unknown>;
  if (b.format !== undefined && !(WIRE_NAMES as readonly unknown[]).includes(b.format))
    return `format must be one of ${WIRE_NAMES.join(", ")}`;
  if (b.model !== undefined && typeof b.model !== "string") return "model must be a string";
  if (typeof b.fault !== "string" || !b.fault)
    return 'fault must be a spec string like "status=500,times=3,id=x"';
  return {
    ...(b.format !== undefined ? { format: b.format as WireName } : {}),
    ...(typeof b.model === "string" ? { model: b.model } : {}),
    fault: parseFaultSpec(b.fault),
  };
}
