import { Webhook } from "standardwebhooks";
import { newSecret, signedHeaders, verifyWebhook, WebhookVerificationError } from "./signing";

const body = JSON.stringify({ type: "job.succeeded", data: { id: "job_1", output: "é ✓" } });

describe("Standard Webhooks signing", () => {
  it("produces signatures the official standardwebhooks package accepts", () => {
    const secret = newSecret();
    expect(secret).toMatch(/^whsec_[A-Za-z0-9+/]{43}=$/);
    const headers = signedHeaders([secret], "msg_abc", body);
    expect(headers["webhook-signature"]).toMatch(/^v1,[A-Za-z0-9+/]+=*$/);
    expect(new Webhook(secret).verify(body, { ...headers })).toEqual(JSON.parse(body));
  });

  it("carries one signature per valid secret during a rotation, each accepted on its own", () => {
    const [oldSecret, newer] = [newSecret(), newSecret()];
    const headers = signedHeaders([newer, oldSecret], "msg_rot", body);
    expect(headers["webhook-signature"].split(" ")).toHaveLength(2);
    expect(new Webhook(oldSecret).verify(body, { ...headers })).toEqual(JSON.parse(body));
    expect(new Webhook(newer).verify(body, { ...headers })).toEqual(JSON.parse(body));
    expect(() => new Webhook(newSecret()).verify(body, { ...headers })).toThrow();
  });

  it("our verify helper accepts what standardwebhooks signs", () => {
    const secret = newSecret();
    const ts = new Date();
    const sig = new Webhook(secret).sign("msg_x", ts, body);
    const headers = {
      "webhook-id": "msg_x",
      "webhook-timestamp": String(Math.floor(ts.getTime() / 1000)),
      "webhook-signature": sig,
    };
    expect(verifyWebhook(secret, headers, body)).toEqual(JSON.parse(body));
    expect(verifyWebhook([newSecret(), secret], new Headers(headers), Buffer.from(body))).toEqual(
      JSON.parse(body),
    );
  });

  it("refuses a changed body, a wrong secret, missing headers and a stale or future timestamp", () => {
    const secret = newSecret();
    const now = Date.now();
    const headers = signedHeaders([secret], "msg_y", body, now);
    expect(() => verifyWebhook(secret, headers, body.replace("job_1", "job_2"))).toThrow(
      WebhookVerificationError,
    );
    expect(() => verifyWebhook(newSecret(), headers, body)).toThrow(/no signature matches/);
    expect(() => verifyWebhook(secret, { "webhook-id": "msg_y" }, body)).toThrow(/missing/);
    expect(() => verifyWebhook(secret, headers, body, { nowMs: now + 301_000 })).toThrow(/300 s/);
    expect(() => verifyWebhook(secret, headers, body, { nowMs: now - 301_000 })).toThrow(/300 s/);
    expect(verifyWebhook(secret, headers, body, { nowMs: now + 9_000, toleranceSeconds: 10 })).toBeTruthy();
    expect(() =>
      verifyWebhook(secret, headers, body, { nowMs: now + 11_000, toleranceSeconds: 10 }),
    ).toThrow();
  });
});
