import { getEventListeners } from "node:events";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { ProviderError } from "./errors";
import { HttpClient } from "./http";

/** A local server whose answer each test sets; requests it is told to hold never get one. */
let server: Server;
let base: string;
let handler: (req: IncomingMessage, res: ServerResponse) => void;
const held: ServerResponse[] = [];

beforeAll(async () => {
  server = createServer((req, res) => handler(req, res));
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
afterEach(() => {
  for (const res of held.splice(0)) res.destroy();
});
afterAll(async () => {
  server.closeAllConnections();
  await new Promise((r) => server.close(r));
});

const client = (over: Partial<ConstructorParameters<typeof HttpClient>[0]> = {}) =>
  new HttpClient({ provider: "p", connectTimeoutMs: 500, timeoutMs: 2000, maxResponseBytes: 1000, ...over });

const failure = async (p: Promise<unknown>): Promise<ProviderError> => {
  try {
    await p;
  } catch (err) {
    if (err instanceof ProviderError) return err;
    throw err;
  }
  throw new Error("the call succeeded");
};

describe("HttpClient", () => {
  it("sends JSON with our headers and the adapter's, and reads status, headers and body", async () => {
    let seen: { method?: string; url?: string; headers?: IncomingMessage["headers"]; body?: string } = {};
    handler = (req, res) => {
      let body = "";
      req.on("data", (c: Buffer) => (body += c.toString()));
      req.on("end", () => {
        seen = { method: req.method, url: req.url, headers: req.headers, body };
        res.writeHead(201, { "content-type": "application/json", "x-ratelimit-remaining-requests": "7" });
        res.end(JSON.stringify({ ok: true }));
      });
    };
    const c = client();
    const res = await c.postJson(
      `${base}/v1/x?alt=1`,
      { authorization: "Bearer k" },
      { a: 1 },
      new AbortController().signal,
    );
    expect(seen).toMatchObject({ method: "POST", url: "/v1/x?alt=1", body: '{"a":1}' });
    expect(seen.headers).toMatchObject({
      accept: "application/json",
      "content-type": "application/json",
      authorization: "Bearer k",
    });
    expect(res.status).toBe(201);
    expect(res.body).toEqual({ ok: true });
    expect(res.headers("X-RateLimit-Remaining-Requests")).toBe("7");
    const got = await c.getJson(`${base}/models`, {}, new AbortController().signal);
    expect(seen).toMatchObject({ method: "GET", url: "/models", body: "" });
    expect(seen.headers?.["content-type"]).toBeUndefined();
    expect(got.body).toEqual({ ok: true });
    await c.close();
  });

  it("keeps a non-JSON answer as raw text, with no body", async () => {
    handler = (_req, res) => res.writeHead(502).end("bad gateway");
    const c = client();
    const res = await c.postJson(`${base}/x`, {}, {}, new AbortController().signal);
    expect(res).toMatchObject({ status: 502, body: undefined, rawText: "bad gateway" });
    await c.close();
  });

  it("refuses an answer larger than maxResponseBytes as malformed, with its status", async () => {
    handler = (_req, res) => res.writeHead(200).end("x".repeat(5000));
    const c = client();
    const err = await failure(c.postJson(`${base}/x`, {}, {}, new AbortController().signal));
    expect(err).toMatchObject({ kind: "malformed", status: 200, retryable: true });
    expect(err.message).toContain("larger than 1000 bytes");
    await c.close();
  });

  it("times out a call with no complete answer, mid-body too", async () => {
    handler = (_req, res) => {
      res.writeHead(200, { "content-type": "application/json" });
      res.write('{"partial":');
      held.push(res);
    };
    const c = client({ timeoutMs: 200 });
    const err = await failure(c.postJson(`${base}/x`, {}, {}, new AbortController().signal));
    expect(err).toMatchObject({ kind: "timeout", retryable: true });
    expect(err.message).toContain("within 200 ms");
    await c.close();
  });

  it("ends a call still waiting for a connection as soon as it is cancelled or times out", async () => {
    handler = (_req, res) => held.push(res);
    // One connection, taken by a call the server never answers: the next ones wait for it.
    const c = client({ connections: 1, timeoutMs: 60_000 });
    const first = new AbortController();
    const hanging = c.postJson(`${base}/x`, {}, {}, first.signal).catch((e: unknown) => e);
    await new Promise((r) => setTimeout(r, 50));
    const caller = new AbortController();
    const waiting = failure(c.postJson(`${base}/x`, {}, {}, caller.signal));
    caller.abort();
    expect(await waiting).toMatchObject({ kind: "cancelled", retryable: false });
    const short = client({ connections: 1, timeoutMs: 100 });
    const holding = short
      .postJson(`${base}/x`, {}, {}, new AbortController().signal)
      .catch((e: unknown) => e);
    await new Promise((r) => setTimeout(r, 20));
    // The second call's own timer ends it while the first still holds the only connection.
    const queued = await failure(short.postJson(`${base}/x`, {}, {}, new AbortController().signal));
    expect(queued.kind).toBe("timeout");
    first.abort();
    expect(await hanging).toMatchObject({ kind: "cancelled" });
    expect(await holding).toMatchObject({ kind: "timeout" });
    await Promise.all([c.close(), short.close()]);
  });

  it("refuses at once a call whose signal is already aborted", async () => {
    let calls = 0;
    handler = (_req, res) => {
      calls++;
      res.end("{}");
    };
    const c = client();
    const ctrl = new AbortController();
    ctrl.abort();
    expect(await failure(c.postJson(`${base}/x`, {}, {}, ctrl.signal))).toMatchObject({ kind: "cancelled" });
    expect(calls).toBe(0);
    await c.close();
  });

  it("releases its timer and its listener on the caller's signal when a call ends", async () => {
    handler = (_req, res) => res.end("{}");
    const c = client({ timeoutMs: 60_000 });
    const signal = new AbortController().signal;
    const timers = () => process.getActiveResourcesInfo().filter((r) => r === "Timeout").length;
    const before = timers();
    for (let i = 0; i < 20; i++) await c.postJson(`${base}/x`, {}, {}, signal);
    handler = (_req, res) => res.writeHead(200).end("x".repeat(5000));
    await failure(c.postJson(`${base}/x`, {}, {}, signal));
    expect(timers()).toBe(before);
    expect(getEventListeners(signal, "abort")).toHaveLength(0);
    await c.close();
  });

  it("streams server-sent events as they arrive, and reads a refused stream whole", async () => {
    handler = (_req, res) => {
      res.writeHead(200, { "content-type": "text/event-stream" });
      res.write("event: a\ndata: 1\n\n");
      setTimeout(() => res.end("data: 2\n\n"), 20);
    };
    const c = client();
    const events: [string | undefined, string][] = [];
    const res = await c.postSse(`${base}/s`, {}, {}, new AbortController().signal, (e, d) =>
      events.push([e, d]),
    );
    expect(res).toMatchObject({ status: 200, body: undefined, rawText: "" });
    expect(events).toEqual([
      ["a", "1"],
      [undefined, "2"],
    ]);
    handler = (_req, res) =>
      res.writeHead(429, { "retry-after": "3" }).end('{"error":{"message":"slow down"}}');
    const refused = await c.postSse(`${base}/s`, {}, {}, new AbortController().signal, () => {
      throw new Error("no events expected");
    });
    expect(refused).toMatchObject({ status: 429, body: { error: { message: "slow down" } } });
    expect(refused.headers("retry-after")).toBe("3");
    await c.close();
  });

  it("ends a stream with the error its reader throws, and caps a stream's size", async () => {
    handler = (_req, res) => {
      res.writeHead(200, { "content-type": "text/event-stream" });
      res.write("data: 1\n\n");
      held.push(res);
    };
    const c = client();
    const bad = new ProviderError("malformed", "not an event we know", "p", { status: 200 });
    const err = await failure(
      c.postSse(`${base}/s`, {}, {}, new AbortController().signal, () => {
        throw bad;
      }),
    );
    expect(err).toBe(bad);
    handler = (_req, res) => {
      res.writeHead(200, { "content-type": "text/event-stream" });
      res.end(`data: ${"x".repeat(2000)}\n\n`);
    };
    const big = await failure(c.postSse(`${base}/s`, {}, {}, new AbortController().signal, () => {}));
    expect(big).toMatchObject({ kind: "malformed", status: 200 });
    await c.close();
  });

  it("classifies a refused connection and a reset as connection errors", async () => {
    const closed = client();
    const srv = createServer();
    await new Promise<void>((r) => srv.listen(0, "127.0.0.1", r));
    const port = (srv.address() as AddressInfo).port;
    await new Promise((r) => srv.close(r));
    const refused = await failure(
      closed.getJson(`http://127.0.0.1:${port}/`, {}, new AbortController().signal),
    );
    expect(refused).toMatchObject({ kind: "connection", retryable: true, status: undefined });
    handler = (_req, res) => {
      res.writeHead(200);
      res.write("{");
      setTimeout(() => res.socket?.destroy(), 10);
    };
    const cut = await failure(closed.postJson(`${base}/x`, {}, {}, new AbortController().signal));
    expect(cut).toMatchObject({ kind: "connection", status: 200 });
    await closed.close();
  });
});
