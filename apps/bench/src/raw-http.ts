import { createServer } from "node:http";
import { Queue } from "bullmq";
import { Redis } from "ioredis";

/**
 * The ingest floor, run as its own process by the ingest scenario: raw BullMQ behind Node's own
 * HTTP server, with nothing of Switchyard's. POST /v1/jobs reads the body, parses it as JSON and
 * answers 202 with the job's id once Queue.add has stored it; no authentication, validation,
 * idempotency, quotas, scheduling, logging or metrics. What the load generator measures against
 * it is what this stack (Node, ioredis, BullMQ) can accept over HTTP on this machine at all.
 *
 * Environment: PORT, REDIS_URL. Prints "raw-http listening" once it listens.
 */
const port = Number(process.env.PORT ?? 0);
const connection = new Redis(process.env.REDIS_URL ?? "redis://127.0.0.1:6379", {
  maxRetriesPerRequest: null,
});
const queue = new Queue("raw-http", { connection, prefix: `{bench-raw-http-${process.pid}}` });

const answer = (res: import("node:http").ServerResponse, status: number, body: string) => {
  res.writeHead(status, { "content-type": "application/json", "content-length": Buffer.byteLength(body) });
  res.end(body);
};

const server = createServer((req, res) => {
  if (req.method !== "POST" || req.url !== "/v1/jobs") return answer(res, 404, '{"error":"not found"}');
  const chunks: Buffer[] = [];
  req.on("data", (c: Buffer) => chunks.push(c));
  req.on("end", () => {
    let data: unknown;
    try {
      data = JSON.parse(Buffer.concat(chunks).toString("utf8"));
    } catch {
      return answer(res, 400, '{"error":"invalid JSON"}');
    }
    queue.add("chat", data, { removeOnComplete: { count: 5_000 }, removeOnFail: { count: 5_000 } }).then(
      (job) => answer(res, 202, JSON.stringify({ id: job.id, status: "queued" })),
      () => answer(res, 503, '{"error":"redis unavailable"}'),
    );
  });
});

server.keepAliveTimeout = 65_000;
server.listen(port, "127.0.0.1", () => {
  const addr = server.address();
  console.log(`raw-http listening on ${typeof addr === "object" && addr ? addr.port : port}`);
});

const stop = () => {
  server.close();
  server.closeAllConnections();
  void queue.close().finally(() => connection.quit().finally(() => process.exit(0)));
};
process.on("SIGTERM", stop);
process.on("SIGINT", stop);
