import { createHmac, randomBytes, timingSafeEqual } from "node:crypto";

/**
 * Standard Webhooks signatures (https://www.standardwebhooks.com): a secret is "whsec_" and
 * the base64 of the key bytes; the signature is base64(HMAC-SHA256(key, "id.timestamp.body")),
 * sent as "v1,<signature>", several separated by spaces while an old secret is still valid.
 */
export const SECRET_PREFIX = "whsec_";
const SECRET_PATTERN = /^whsec_[A-Za-z0-9+/]{32,}={0,2}$/;

/** A new signing secret: 32 random bytes. */
export const newSecret = (): string => SECRET_PREFIX + randomBytes(32).toString("base64");

export const isSecret = (s: string): boolean => SECRET_PATTERN.test(s);

const keyOf = (secret: string): Buffer =>
  Buffer.from(secret.startsWith(SECRET_PREFIX) ? secret.slice(SECRET_PREFIX.length) : secret, "base64");

export function signature(secret: string, msgId: string, timestamp: number, body: string): string {
  return createHmac("sha256", keyOf(secret)).update(`${msgId}.${timestamp}.${body}`).digest("base64");
}

/** The webhook-signature header value: one "v1,<sig>" per valid secret. */
export const signatureHeader = (secrets: readonly string[], msgId: string, timestamp: number, body: string) =>
  secrets.map((s) => `v1,${signature(s, msgId, timestamp, body)}`).join(" ");

export type WebhookHeaders = {
  "webhook-id": string;
  "webhook-timestamp": string;
  "webhook-signature": string;
};

/** The three headers of one delivery attempt (the timestamp is the attempt's, the id the event's). */
export function signedHeaders(
  secrets: readonly string[],
  msgId: string,
  body: string,
  nowMs = Date.now(),
): WebhookHeaders {
  const timestamp = Math.floor(nowMs / 1000);
  return {
    "webhook-id": msgId,
    "webhook-timestamp": String(timestamp),
    "webhook-signature": signatureHeader(secrets, msgId, timestamp, body),
  };
}

export class WebhookVerificationError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "WebhookVerificationError";
  }
}

export interface VerifyOptions {
  /** How far the timestamp may be from now, either way (default 300 s, as the spec suggests). */
  toleranceSeconds?: number;
  nowMs?: number;
}

type HeaderSource = Record<string, string | string[] | undefined> | Headers;

const header = (headers: HeaderSource, name: string): string | undefined => {
  if (typeof (headers as Headers).get === "function") return (headers as Headers).get(name) ?? undefined;
  const rec = headers as Record<string, string | string[] | undefined>;
  const v = rec[name] ?? rec[name.toLowerCase()];
  return Array.isArray(v) ? v[0] : v;
};

/**
 * For receivers: checks a delivery's signature against one secret (or several, while you rotate)
 * and its timestamp against the tolerance, then returns the parsed body. Pass the raw body exactly
 * as received: re-serialised JSON will not match. Throws WebhookVerificationError otherwise.
 */
export function verifyWebhook(
  secret: string | readonly string[],
  headers: HeaderSource,
  rawBody: string | Buffer,
  opts: VerifyOptions = {},
): unknown {
  const id = header(headers, "webhook-id");
  const ts = header(headers, "webhook-timestamp");
  const sigs = header(headers, "webhook-signature");
  if (!id || !ts || !sigs) throw new WebhookVerificationError("missing webhook-id, -timestamp or -signature");
  const timestamp = Number(ts);
  if (!/^\d{1,12}$/.test(ts)) throw new WebhookVerificationError("webhook-timestamp is not a Unix time");
  const tolerance = opts.toleranceSeconds ?? 300;
  const now = Math.floor((opts.nowMs ?? Date.now()) / 1000);
  if (Math.abs(now - timestamp) > tolerance)
    throw new WebhookVerificationError(`webhook-timestamp is more than ${tolerance} s from now`);
  const body = typeof rawBody === "string" ? rawBody : rawBody.toString("utf8");
  const offered = sigs
    .split(" ")
    .filter((s) => s.startsWith("v1,"))
    .map((s) => Buffer.from(s.slice(3), "base64"));
  for (const sec of typeof secret === "string" ? [secret] : secret) {
    const expected = Buffer.from(signature(sec, id, timestamp, body), "base64");
    if (offered.some((o) => o.length === expected.length && timingSafeEqual(o, expected))) {
      try {
        return JSON.parse(body) as unknown;
      } catch {
        throw new WebhookVerificationError("the signed body is not JSON");
      }
    }
  }
  throw new WebhookVerificationError("no signature matches the secret");
}
