import type { IncomingMessage, ServerResponse } from "node:http";
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

/** Aborts when the client goes away (or the response is done): for waits that hold a request. */
export function abortSignalOf(req: IncomingMessage, res: ServerResponse): AbortSignal {
  const ctrl = new AbortController();
  res.on("close", () => ctrl.abort());
  req.on("aborted", () => ctrl.abort());
  return ctrl.signal;
}
