import { createHmac, timingSafeEqual } from "node:crypto";

/**
 * Signed requests (opt-in per tenant): `switchyard-signature: t=<unix seconds>,v1=<hex
 * HMAC-SHA256(secret, "<t>.<raw body>")>`. Several v1 values may be sent (one per secret while
 * rotating); any one that matches any configured secret is enough.
 */
export const SIGNATURE_HEADER = "switchyard-signature";
/** A signature older (or further in the future) than this is stale. */
export const SIGNATURE_TOLERANCE_SECONDS = 300;

/** The header value for a body, as a client computes it. */
export function signRequest(
  secret: string,
  body: string | Buffer,
  unixSeconds = Math.floor(Date.now() / 1000),
): string {
  const mac = createHmac("sha256", secret).update(`${unixSeconds}.`).update(body).digest("hex");
  return `t=${unixSeconds},v1=${mac}`;
}

export type SignatureCheck =
  | { ok: true; t: number; mac: string }
  | { ok: false; reason: "missing" | "malformed" | "stale" | "mismatch"; message: string };

/** Checks a signature header against the raw body and the tenant's secrets, in constant time. */
export function verifyRequestSignature(
  header: string | undefined,
  body: Buffer,
  secrets: readonly string[],
  nowSeconds = Math.floor(Date.now() / 1000),
  toleranceSeconds = SIGNATURE_TOLERANCE_SECONDS,
): SignatureCheck {
  if (!header)
    return {
      ok: false,
      reason: "missing",
      message: `this tenant requires signed requests: send the ${SIGNATURE_HEADER} header`,
    };
  let t: number | undefined;
  const macs: Buffer[] = [];
  for (const part of header.split(",")) {
    const [k, v] = part.trim().split("=", 2);
    if (k === "t" && v && /^\d{1,12}$/.test(v)) t = Number(v);
    else if (k === "v1" && v && /^[0-9a-f]{64}$/.test(v)) macs.push(Buffer.from(v, "hex"));
  }
  if (t === undefined || macs.length === 0)
    return {
      ok: false,
      reason: "malformed",
      message: `${SIGNATURE_HEADER} must be "t=<unix seconds>,v1=<64 hex characters>"`,
    };
  if (Math.abs(nowSeconds - t) > toleranceSeconds)
    return {
      ok: false,
      reason: "stale",
      message: `the signature's timestamp is more than ${toleranceSeconds} s from now: sign each request when you send it`,
    };
  for (const secret of secrets) {
    const want = createHmac("sha256", secret).update(`${t}.`).update(body).digest();
    for (const mac of macs) if (timingSafeEqual(mac, want)) return { ok: true, t, mac: mac.toString("hex") };
  }
  return {
    ok: false,
    reason: "mismatch",
    message: "the signature does not match the body and timestamp with any of this tenant's secrets",
  };
}
