import { signRequest, verifyRequestSignature } from "./request-signing";

describe("request signatures", () => {
  const secret = "whsk-secret-0123456789";
  const body = Buffer.from('{"model":"m","messages":[]}');
  const now = 1_800_000_000;

  it("accepts a signature made with any configured secret (rotation), and names the mac", () => {
    const header = signRequest(secret, body, now);
    expect(verifyRequestSignature(header, body, ["an-older-secret-abcdef", secret], now)).toMatchObject({
      ok: true,
      t: now,
    });
    const both = `${signRequest("an-older-secret-abcdef", body, now)},${header.split(",")[1]}`;
    expect(verifyRequestSignature(both, body, [secret], now).ok).toBe(true);
  });

  it.each([
    [undefined, "missing"],
    ["v1=abc", "malformed"],
    ["t=1800000000", "malformed"],
    ["t=soon,v1=" + "0".repeat(64), "malformed"],
  ])("refuses %j as %s", (header, reason) => {
    expect(verifyRequestSignature(header, body, [secret], now)).toMatchObject({ ok: false, reason });
  });

  it("refuses a stale or future timestamp, a tampered body and a wrong secret", () => {
    expect(verifyRequestSignature(signRequest(secret, body, now - 301), body, [secret], now)).toMatchObject({
      reason: "stale",
    });
    expect(verifyRequestSignature(signRequest(secret, body, now + 301), body, [secret], now)).toMatchObject({
      reason: "stale",
    });
    expect(verifyRequestSignature(signRequest(secret, body, now - 299), body, [secret], now).ok).toBe(true);
    const header = signRequest(secret, body, now);
    expect(
      verifyRequestSignature(header, Buffer.from('{"model":"x","messages":[]}'), [secret], now),
    ).toMatchObject({ reason: "mismatch" });
    expect(verifyRequestSignature(header, body, ["another-secret-0123456"], now)).toMatchObject({
      reason: "mismatch",
    });
  });
});
