/**
 * Fault markers a prompt may carry, e.g. "[[mock:status=500,times=2,id=a1]]":
 *   status=N        answer with HTTP status N (error body in the wire format's shape)
 *   times=K,id=X    only the first K requests carrying id X get the fault; later ones succeed
 *   retry_after=S   Retry-After header (seconds) on the error answer
 *   delay=MS        wait MS before answering
 *   hang            never answer (until the client gives up)
 *   reset           destroy the connection without an answer
 *   malformed       answer 200 with a body that is not JSON
 */
export interface Fault {
  status?: number;
  times?: number;
  id?: string;
  retryAfter?: number;
  delayMs?: number;
  hang?: boolean;
  reset?: boolean;
  malformed?: boolean;
}

const MARKER = /\[\[mock:([^\]]*)\]\]/;

export function parseFault(text: string): Fault | undefined {
  const m = MARKER.exec(text);
  if (!m || m[1] === undefined) return undefined;
  const fault: Fault = {};
  for (const part of m[1].split(",")) {
    const [rawKey, rawValue] = part.split("=");
    const key = rawKey?.trim();
    const value = rawValue?.trim();
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
      case "delay":
        fault.delayMs = Number(value);
        break;
      case "hang":
        fault.hang = true;
        break;
      case "reset":
        fault.reset = true;
        break;
      case "malformed":
        fault.malformed = true;
        break;
    }
  }
  return fault;
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
}
