import { createServer, type IncomingHttpHeaders, type Server } from "node:http";
import type { AddressInfo } from "node:net";

/** One request a test receiver got, with the raw body exactly as sent (for signature checks). */
export interface Received {
  path: string;
  headers: IncomingHttpHeaders;
  body: string;
  at: number;
}

export interface Reply {
  status: number;
  headers?: Record<string, string>;
  body?: string;
  /** Answer only after this long (to make a sender time out). */
  delayMs?: number;
}

/** Decides the answer to the n-th (0-based) request on a path. */
export type Responder = (n: number, req: Received) => Reply;

/**
 * A real HTTP server standing in for a customer's webhook receiver: records every request and
 * answers per path as the test says (200 by default).
 */
export class Receiver {
  readonly requests: Received[] = [];
  private readonly responders = new Map<string, Responder>();
  private readonly counts = new Map<string, number>();
  private waiters: (() => void)[] = [];

  private constructor(
    private readonly server: Server,
    readonly url: string,
  ) {}

  static async start(host = "127.0.0.1"): Promise<Receiver> {
    const holder: { self?: Receiver } = {};
    const server = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on("data", (c: Buffer) => chunks.push(c));
      req.on("end", () => {
        const rec: Received = {
          path: req.url ?? "/",
          headers: req.headers,
          body: Buffer.concat(chunks).toString("utf8"),
          at: Date.now(),
        };
        const reply = holder.self?.record(rec) ?? { status: 200 };
        const answer = () => {
          if (!res.destroyed) res.writeHead(reply.status, reply.headers).end(reply.body ?? "");
        };
        if (reply.delayMs) setTimeout(answer, reply.delayMs).unref();
        else answer();
      });
    });
    await new Promise<void>((resolve) => server.listen(0, host, resolve));
    const { port } = server.address() as AddressInfo;
    const self = new Receiver(server, `http://${host.includes(":") ? `[${host}]` : host}:${port}`);
    holder.self = self;
    return self;
  }

  private record(rec: Received): Reply {
    const n = this.counts.get(rec.path) ?? 0;
    this.counts.set(rec.path, n + 1);
    this.requests.push(rec);
    const reply = this.responders.get(rec.path)?.(n, rec) ?? { status: 200 };
    for (const w of this.waiters.splice(0)) w();
    return reply;
  }

  /** Sets how a path answers from now on. */
  on(path: string, responder: Responder): void {
    this.responders.set(path, responder);
  }

  received(path: string): Received[] {
    return this.requests.filter((r) => r.path === path);
  }

  /** Resolves once `path` has had at least n requests; rejects after timeoutMs. */
  async waitFor(path: string, n: number, timeoutMs = 20_000): Promise<Received[]> {
    const deadline = Date.now() + timeoutMs;
    while (this.received(path).length < n) {
      const left = deadline - Date.now();
      if (left <= 0)
        throw new Error(
          `receiver: ${path} got ${this.received(path).length} of ${n} requests in ${timeoutMs} ms`,
        );
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, Math.min(left, 250));
        this.waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
    return this.received(path);
  }

  async close(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}
