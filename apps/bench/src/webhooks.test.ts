import { Webhook } from "standardwebhooks";
import { tally } from "./webhooks";

/** The webhooks scenario's count of what arrived: signatures, duplicates, losses and latencies. */
describe("webhooks tally", () => {
  const secret = `whsec_${Buffer.from("a-secret-for-the-bench-tally-0001").toString("base64")}`;
  const other = `whsec_${Buffer.from("not-the-endpoint-secret-00000002").toString("base64")}`;
  const arrival = (id: string, finishedMs: number, at: number, key = secret) => {
    const body = JSON.stringify({ type: "job.succeeded", data: { id, finished_at: finishedMs / 1000 } });
    const msg = `msg_${id}_${at}`;
    const when = new Date(at);
    return {
      at,
      body,
      headers: {
        "webhook-id": msg,
        "webhook-timestamp": String(Math.floor(at / 1000)),
        "webhook-signature": new Webhook(key).sign(msg, when, body),
      },
    };
  };

  it("times each measured job's first delivery and counts duplicates, losses and bad signatures", () => {
    // Signed now (standardwebhooks refuses timestamps more than 5 minutes off its clock).
    const t = Date.now();
    const arrivals = [
      arrival("job_a", t, t + 3),
      arrival("job_b", t, t + 10),
      arrival("job_a", t, t + 40), // a second delivery of job_a
      arrival("job_c", t, t + 5, other), // signed with another secret
      arrival("job_warm", t, t + 1), // not a measured job (the warm-up's)
      {
        at: t + 7,
        body: "{}",
        headers: { "webhook-id": "x", "webhook-timestamp": "0", "webhook-signature": "" },
      },
    ];
    const r = tally(arrivals, secret, new Set(["job_a", "job_b", "job_c", "job_d"]));
    expect(r).toEqual({
      delivered: 2,
      duplicates: 1,
      badSignatures: 2,
      lost: 2, // job_c (its only arrival is not ours) and job_d (none)
      p50: 3,
      p99: 10,
      max: 10,
    });
  });
});
