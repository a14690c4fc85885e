import type { Response } from "express";

/** Starts a server-sent event stream: status 200, the headers proxies must honour, sent now. */
export function startSse(res: Response): void {
  res.status(200).set({
    "content-type": "text/event-stream; charset=utf-8",
    "cache-control": "no-cache, no-transform",
    "x-accel-buffering": "no",
  });
  res.flushHeaders();
}
