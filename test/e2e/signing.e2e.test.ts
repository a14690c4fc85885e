import { signRequest } from "@switchyard/core";
import { http, PAID_KEY, FREE_KEY, Stack, testConfig } from "@switchyard/testing";
import { chat } from "./helpers";

/**
 * Signed requests through the API: a tenant that requires them gets 403s that say what is wrong
 * (missing, malformed, stale, wrong, replayed) and 202 for a good one; a tenant where signing is
 * optional may send unsigned requests, but a signature it sends must be valid.
 */
const SECRET = "sig-secret-paid-0123456789";
const OLD_SECRET = "sig-secret-old-01234567890";
const FREE_SECRET = "sig-secret-free-0123456789";

describe("request signing", () => {
  let stack: Stack;
  beforeAll(async () => {
    stack = await Stack.start({
      workers: 0,
      config: (mockUrl, prefix) => {
        const cfg = testConfig(mockUrl, prefix);
        const [paid, free] = cfg.tenants as Record<string, unknown>[];
        paid!.signing = { secrets: [SECRET, OLD_SECRET] };
        free!.signing = { required: false, secrets: [FREE_SECRET] };
        return cfg;
      },
    });
  });
  afterAll(async () => {
    await stack?.stop();
  });

  type Err = { error: { type: string; message: string; details?: { path: string; message: string }[] } };
  const post = (key: string, raw: string, signature?: string) =>
    http<Err & { id?: string }>("POST", `${stack.apiUrl}/v1/jobs`, {
      key,
      rawBody: raw,
      headers: signature ? { "switchyard-signature": signature } : {},
    });
  const now = () => Math.floor(Date.now() / 1000);
  const body = (text: string) => JSON.stringify(chat(text));

  it("refuses each bad case with a 403 that says which", async () => {
    const raw = body("signed");
    const cases: [string | undefined, string][] = [
      [undefined, "missing"],
      ["t=123", "malformed"],
      [signRequest(SECRET, raw, now() - 600), "stale"],
      [signRequest("not-the-tenant-secret-000", raw, now()), "mismatch"],
      [signRequest(SECRET, body("another body"), now()), "mismatch"],
    ];
    for (const [signature, reason] of cases) {
      const res = await post(PAID_KEY, raw, signature);
      expect({ reason, status: res.status }).toEqual({ reason, status: 403 });
      expect(res.body.error.type).toBe("signature_error");
      expect(res.body.error.details?.[0]).toEqual({ path: "header.switchyard-signature", message: reason });
      expect(JSON.stringify(res.body)).not.toContain(SECRET);
    }
  });

  it("accepts a good signature (with the current or the previous secret) once, and refuses its replay", async () => {
    const raw = body("signed and sent once");
    const signature = signRequest(SECRET, raw, now());
    const ok = await post(PAID_KEY, raw, signature);
    expect(ok.status).toBe(202);
    const replay = await post(PAID_KEY, raw, signature);
    expect(replay.status).toBe(403);
    expect(replay.body.error.details?.[0]?.message).toBe("replayed");
    const rotated = body("signed with the previous secret");
    expect((await post(PAID_KEY, rotated, signRequest(OLD_SECRET, rotated, now()))).status).toBe(202);
    // Reads are signed too: the body is empty.
    const read = await http("GET", `${stack.apiUrl}/v1/jobs/${ok.body.id}`, {
      key: PAID_KEY,
      headers: { "switchyard-signature": signRequest(SECRET, "", now()) },
    });
    expect(read.status).toBe(200);
    expect((await http("GET", `${stack.apiUrl}/v1/jobs/${ok.body.id}`, { key: PAID_KEY })).status).toBe(403);
  });

  it("lets a tenant with optional signing send unsigned requests, but checks a signature it sends", async () => {
    const raw = body("optional");
    expect((await post(FREE_KEY, raw)).status).toBe(202);
    expect((await post(FREE_KEY, raw, signRequest("a-wrong-secret-0123456", raw, now()))).status).toBe(403);
    expect((await post(FREE_KEY, raw, signRequest(FREE_SECRET, raw, now()))).status).toBe(202);
  });
});
