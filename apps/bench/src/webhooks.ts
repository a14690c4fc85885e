import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { Queue, Worker } from "bullmq";
import { Redis } from "ioredis";
import { Webhook } from "standardwebhooks";
import { Pool } from "undici";
import { z } from "zod";
import { PAID_KEY } from "@switchyard/testing";
import { roundOrder, type BeforeTree, type Side } from "./before-after";
import { meanOf as mean, percentile, ratio, startBenchStack, waitSucceeded } from "./harness";
import { submitRequest } from "./ingest";
import { openLoop, paced } from "./load";
import type { Figure, ScenarioResult } from "./results";

/**
 * Webhooks: jobs of a tenant with an endpoint, offered at a fixed rate (open loop, mock at 0 ms,
 * one worker process); every final event must reach the receiver once, signed. Per delivery,
 * the time from the job's finished_at to the receiver's arrival is what the outbox, its fan-out,
 * the delivery queue and the signed POST added. The floor next to it: raw BullMQ whose processor
 * signs the same kind of body with standardwebhooks and POSTs it to the same receiver, jobs
 * added at the same rate (add to arrival). With `--against REV`, the code as REV had it runs
 * too, alternated, in the same minutes (the issue asks that webhooks be no worse).
 */

/** Submissions before the measured window, at the same rate, not counted. */
const WARM_UP_MS = 2_000;
/** Every delivery of the measured jobs must have arrived within this long after the last submission. */
const DRAIN_MS = 60_000;

interface Arrival {
  at: number;
  body: string;
  headers: Record<string, string>;
}

/** A receiver that answers 204 at once and keeps what arrived, to be checked after the run. */
async function startReceiver(): Promise<{ url: string; arrivals: Arrival[]; close(): Promise<void> }> {
  const arrivals: Arrival[] = [];
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      const h = (name: string) => {
        const v = req.headers[name];
        return typeof v === "string" ? v : "";
      };
      arrivals.push({
        at: Date.now(),
        body: Buffer.concat(chunks).toString("utf8"),
        headers: {
          "webhook-id": h("webhook-id"),
          "webhook-timestamp": h("webhook-timestamp"),
          "webhook-signature": h("webhook-signature"),
        },
      });
      res.writeHead(204).end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    arrivals,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

const eventSchema = z.object({
  type: z.string(),
  data: z.object({ id: z.string(), finished_at: z.number().optional() }),
});
const createdSchema = z.object({ id: z.string(), secret: z.string() });
const acceptedSchema = z.object({ id: z.string() });

/** What one run of a side measured. */
export interface WebhookRun {
  accepted: number;
  delivered: number;
  duplicates: number;
  lost: number;
  badSignatures: number;
  /** finished_at to arrival, ms, one per measured job delivered (its first delivery). */
  p50: number | null;
  p99: number | null;
  max: number | null;
  offeredPerSec: number;
}

/** Checks every arrival's signature and times each measured job's first delivery. */
export function tally(arrivals: readonly Arrival[], secret: string, measured: ReadonlySet<string>) {
  const hook = new Webhook(secret);
  const first = new Map<string, number>();
  let duplicates = 0;
  let badSignatures = 0;
  for (const a of arrivals) {
    let event: z.infer<typeof eventSchema>;
    try {
      event = eventSchema.parse(hook.verify(a.body, a.headers));
    } catch {
      badSignatures += 1;
      continue;
    }
    const id = event.data.id;
    if (!measured.has(id)) continue;
    if (first.has(id)) {
      duplicates += 1;
      continue;
    }
    const finished = event.data.finished_at;
    first.set(id, finished === undefined ? Number.NaN : a.at - Math.round(finished * 1000));
  }
  const latencies = [...first.values()].filter((v) => Number.isFinite(v));
  return {
    delivered: first.size,
    duplicates,
    badSignatures,
    lost: measured.size - first.size,
    p50: percentile(latencies, 50),
    p99: percentile(latencies, 99),
    max: latencies.length ? Math.max(...latencies) : null,
  };
}

async function waitArrivals(arrivals: readonly Arrival[], n: number, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (arrivals.length < n && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
}

/** One side's run: a stack (this checkout's, or appsRoot's), an endpoint, the load, the tally. */
export async function webhookRun(opts: {
  redisUrl: string;
  durationS: number;
  ratePerSec: number;
  appsRoot?: string;
  log: (s: string) => void;
}): Promise<WebhookRun> {
  const receiver = await startReceiver();
  const loopback = { SWITCHYARD_WEBHOOK_ALLOWLIST: "127.0.0.1/32" };
  const stack = await startBenchStack({
    redisUrl: opts.redisUrl,
    workers: 1,
    mockLatencyMs: 0,
    env: loopback,
    ...(opts.appsRoot ? { appsRoot: opts.appsRoot } : {}),
  });
  try {
    const res = await fetch(`${stack.apiUrl}/v1/webhook-endpoints`, {
      method: "POST",
      headers: { authorization: `Bearer ${PAID_KEY}`, "content-type": "application/json" },
      body: JSON.stringify({ url: `${receiver.url}/hooks` }),
    });
    if (res.status !== 201) throw new Error(`creating the webhook endpoint answered ${res.status}`);
    const { secret } = createdSchema.parse(await res.json());
    const warm = await openLoop(stack.apiUrl, submitRequest, {
      ratePerSec: opts.ratePerSec,
      durationMs: WARM_UP_MS,
      connections: 64,
    });
    const warmed = warm.statuses[202] ?? 0;
    const done = await waitSucceeded(stack.workerPorts, warmed, 60_000);
    await waitArrivals(receiver.arrivals, warmed, 30_000);
    const arrivedBefore = receiver.arrivals.length;
    const load = await openLoop(stack.apiUrl, submitRequest, {
      ratePerSec: opts.ratePerSec,
      durationMs: opts.durationS * 1000,
      connections: 64,
      keepBodies: true,
    });
    const measured = new Set(load.bodies.map((b) => acceptedSchema.parse(JSON.parse(b)).id));
    await waitSucceeded(stack.workerPorts, done + measured.size, DRAIN_MS);
    await waitArrivals(receiver.arrivals, arrivedBefore + measured.size, DRAIN_MS);
    // Late duplicates (a redelivery) would come after the first: a short look for them.
    await new Promise((r) => setTimeout(r, 1_000));
    const t = tally(receiver.arrivals, secret, measured);
    const offeredPerSec = load.sent / (load.elapsedMs / 1000);
    opts.log(
      `webhooks: offered ${Math.round(offeredPerSec)}/s, ${measured.size} accepted, ${t.delivered} delivered (p50 ${t.p50} / p99 ${t.p99} ms after finished_at), ${t.duplicates} duplicates, ${t.lost} lost, ${t.badSignatures} bad signatures`,
    );
    return { accepted: measured.size, offeredPerSec, ...t };
  } finally {
    await stack.stop();
    await receiver.close();
  }
}

/**
 * The floor: raw BullMQ (Queue.add at the rate, one Worker) whose processor signs a body with
 * standardwebhooks and POSTs it to the receiver; add to arrival, per job.
 */
export async function rawWebhooks(opts: {
  redisUrl: string;
  ratePerSec: number;
  durationS: number;
}): Promise<{ p50: number | null; p99: number | null; jobs: number }> {
  const receiver = await startReceiver();
  const prefix = `{bench-raw-wh-${Date.now()}}`;
  const connection = new Redis(opts.redisUrl, { maxRetriesPerRequest: null });
  const workerConnection = new Redis(opts.redisUrl, { maxRetriesPerRequest: null });
  const pool = new Pool(receiver.url, { connections: 50 });
  const hook = new Webhook(`whsec_${Buffer.from("bench-raw-webhook-secret-000000").toString("base64")}`);
  const queue = new Queue("raw-webhooks", { connection, prefix });
  const total = Math.round(opts.ratePerSec * opts.durationS);
  const added = new Map<string, number>();
  const worker = new Worker(
    "raw-webhooks",
    async (job) => {
      const id = `msg_${job.id ?? ""}`;
      const body = JSON.stringify({ type: "job.succeeded", data: { id: job.id, ...job.data } });
      const now = new Date();
      const res = await pool.request({
        path: "/hooks",
        method: "POST",
        headers: {
          "content-type": "application/json",
          "webhook-id": id,
          "webhook-timestamp": String(Math.floor(now.getTime() / 1000)),
          "webhook-signature": hook.sign(id, now, body),
        },
        body,
      });
      await res.body.dump();
    },
    { connection: workerConnection, prefix, concurrency: 50 },
  );
  try {
    await worker.waitUntilReady();
    await paced(opts.ratePerSec, total, async (i) => {
      const job = await queue.add(
        "hook",
        { i },
        { jobId: `raw-${i}`, removeOnComplete: { count: 5_000 }, removeOnFail: true },
      );
      added.set(`raw-${i}`, job.timestamp);
    });
    await waitArrivals(receiver.arrivals, total, DRAIN_MS);
    const latencies = receiver.arrivals.flatMap((a) => {
      const id = z.object({ data: z.object({ id: z.string() }) }).parse(JSON.parse(a.body)).data.id;
      const t = added.get(id);
      return t === undefined ? [] : [a.at - t];
    });
    return { p50: percentile(latencies, 50), p99: percentile(latencies, 99), jobs: latencies.length };
  } finally {
    await worker.close();
    await queue.close();
    await pool.close();
    await Promise.all([connection.quit(), workerConnection.quit()]);
    await receiver.close();
  }
}

const sum = (xs: number[]): number => xs.reduce((a, b) => a + b, 0);

/**
 * `rounds` rounds: this checkout (and, with `before`, that build too, which side goes first
 * alternating by round), raw BullMQ's floor measured after each run.
 */
export async function webhooksScenario(opts: {
  redisUrl: string;
  durationS: number;
  ratePerSec: number;
  rounds: number;
  before?: BeforeTree;
  rev?: string;
  log: (s: string) => void;
  flush: () => Promise<void>;
}): Promise<ScenarioResult> {
  const sides: Side[] = opts.before ? ["before", "after"] : ["after"];
  const runs: {
    side: Side;
    run: WebhookRun;
    raw: { p50: number | null; p99: number | null; jobs: number };
  }[] = [];
  for (let round = 0; round < opts.rounds; round++) {
    // With a before side, which goes first alternates by round, as in before-after.
    const order: Side[] = opts.before ? roundOrder(round, [1]).map((r) => r.side) : ["after"];
    for (const side of order) {
      opts.log(`webhooks: round ${round + 1} of ${opts.rounds}, ${side}`);
      const run = await webhookRun({
        redisUrl: opts.redisUrl,
        durationS: opts.durationS,
        ratePerSec: opts.ratePerSec,
        log: opts.log,
        ...(side === "before" && opts.before ? { appsRoot: opts.before.root } : {}),
      });
      await opts.flush();
      const raw = await rawWebhooks({
        redisUrl: opts.redisUrl,
        ratePerSec: opts.ratePerSec,
        durationS: opts.durationS,
      });
      opts.log(`webhooks: raw BullMQ floor: p50 ${raw.p50} / p99 ${raw.p99} ms (${raw.jobs} jobs)`);
      await opts.flush();
      runs.push({ side, run, raw });
    }
  }
  const figures: Figure[] = [];
  const summary = (side: Side) => {
    const rs = runs.filter((r) => r.side === side);
    return {
      p50: mean(rs.map((r) => r.run.p50)),
      p99: mean(rs.map((r) => r.run.p99)),
      rawP50: mean(rs.map((r) => r.raw.p50)),
      rawP99: mean(rs.map((r) => r.raw.p99)),
      accepted: sum(rs.map((r) => r.run.accepted)),
      delivered: sum(rs.map((r) => r.run.delivered)),
      lost: sum(rs.map((r) => r.run.lost)),
      duplicates: sum(rs.map((r) => r.run.duplicates)),
      bad: sum(rs.map((r) => r.run.badSignatures)),
      runs: rs
        .map(
          (r) =>
            `p50 ${r.run.p50 ?? "n/a"} / p99 ${r.run.p99 ?? "n/a"} ms (raw ${r.raw.p50 ?? "n/a"} / ${r.raw.p99 ?? "n/a"}), max ${r.run.max ?? "n/a"}`,
        )
        .join("; "),
    };
  };
  for (const side of sides) {
    const s = summary(side);
    const tag = opts.before ? `, ${side}` : "";
    const who =
      side === "before" ? `${opts.rev ?? ""} (${opts.before?.commit.slice(0, 12) ?? ""})` : "this checkout";
    figures.push(
      {
        name: `delivery p50 after finished_at${tag}`,
        value: s.p50,
        unit: "ms",
        note: `${who}; mean over ${opts.rounds} runs: ${s.runs}`,
      },
      { name: `delivery p99 after finished_at${tag}`, value: s.p99, unit: "ms" },
      {
        name: `raw BullMQ floor p50 / p99${tag}`,
        value: s.rawP50,
        unit: "ms",
        note: `p99 ${s.rawP99?.toFixed(1) ?? "n/a"} ms: Queue.add to arrival of a signed POST from a raw Worker, at the same rate, right after each run`,
      },
      {
        name: `p99 over raw BullMQ's${tag}`,
        value: ratio(s.p99, s.rawP99),
        unit: "x",
      },
      {
        name: `jobs delivered${tag}`,
        value: s.delivered,
        unit: "jobs",
        goal: `= ${s.accepted} accepted`,
        note: "each measured job's final event at the receiver, its signature verified by standardwebhooks",
      },
      { name: `lost${tag}`, value: s.lost, unit: "jobs", goal: "0" },
      { name: `duplicates${tag}`, value: s.duplicates, unit: "deliveries", goal: "0" },
      { name: `bad signatures${tag}`, value: s.bad, unit: "deliveries", goal: "0" },
    );
  }
  if (opts.before) {
    const b = summary("before");
    const a = summary("after");
    figures.push(
      {
        name: "delivery p50, after over before",
        value: ratio(a.p50, b.p50),
        unit: "x",
        note: "below 1: faster now",
      },
      { name: "delivery p99, after over before", value: ratio(a.p99, b.p99), unit: "x" },
    );
  }
  return {
    scenario: "webhooks",
    description: `Jobs of a tenant with one webhook endpoint offered at ${opts.ratePerSec}/s (open loop) for ${opts.durationS} s after a ${WARM_UP_MS / 1000} s warm-up, mock at 0 ms, the API and one worker process; the receiver answers 204 at once. Per measured job, the time from its finished_at to its event's arrival, signatures checked with standardwebhooks. The floor after each run: raw BullMQ adding jobs at the same rate whose Worker signs a body and POSTs it to the same receiver (add to arrival).${opts.before ? ` Against ${opts.rev ?? ""} (${opts.before.commit.slice(0, 12)}), alternated by round.` : ""}`,
    params: {
      duration_s: opts.durationS,
      rate_per_s: opts.ratePerSec,
      rounds: opts.rounds,
      ...(opts.before ? { against: opts.rev, commit: opts.before.commit } : {}),
    },
    details: { runs: runs.map((r) => ({ side: r.side, ...r.run, raw: r.raw })) },
    figures,
  };
}
