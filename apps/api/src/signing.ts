import express, { type NextFunction, type Request, type RequestHandler, type Response } from "express";
import {
  ApiError,
  SIGNATURE_HEADER,
  SIGNATURE_TOLERANCE_SECONDS,
  verifyRequestSignature,
  type SwitchyardConfig,
  type TenantConfig,
} from "@switchyard/core";
import type { Keys, Redis } from "@switchyard/queue";

/** The request's raw body, kept by jsonBody: a signature covers the bytes, not the parsed JSON. */
const RAW = Symbol("rawBody");
type WithRaw = Request & { [RAW]?: Buffer };

/** JSON bodies up to server.max_body_bytes, keeping the raw bytes for signature checks. */
export const jsonBody = (config: SwitchyardConfig): RequestHandler =>
  express.json({
    limit: config.server.max_body_bytes,
    strict: true,
    verify: (req, _res, buf) => {
      (req as WithRaw)[RAW] = buf;
    },
  });

/**
 * Multipart uploads (POST /v1/files) read whole, up to `limit` bytes, keeping the raw bytes for
 * signature checks; the parser then reads them from `rawBodyOf`.
 */
export const multipartBody = (limit: number): RequestHandler =>
  express.raw({
    type: "multipart/form-data",
    limit,
    verify: (req, _res, buf) => {
      (req as WithRaw)[RAW] = buf;
    },
  });

/** The raw bytes a body parser kept, if any. */
export const rawBodyOf = (req: Request): Buffer | undefined => (req as WithRaw)[RAW];

const refused = (message: string, reason: string) =>
  new ApiError(403, "signature_error", message, [{ path: `header.${SIGNATURE_HEADER}`, message: reason }]);

/**
 * Signed requests, for tenants with `signing`: a missing (when required), malformed, stale or
 * wrong signature is a 403 saying which; a signature is accepted once (a replay is refused), for
 * as long as it could still be fresh.
 */
export function signatureCheck(redis: Redis, keys: Keys) {
  return async (req: Request, res: Response, next: NextFunction): Promise<void> => {
    next(
      await checkSignature(
        redis,
        keys,
        res.locals.tenant as TenantConfig,
        req.get(SIGNATURE_HEADER),
        (req as WithRaw)[RAW],
      ),
    );
  };
}

/**
 * A request's signature against its tenant's signing settings: undefined when it may pass, the
 * 403 to answer otherwise. A valid signature is remembered (SET NX) so a replay is refused.
 */
export async function checkSignature(
  redis: Redis,
  keys: Keys,
  tenant: TenantConfig,
  header: string | undefined,
  raw: Buffer | undefined,
): Promise<ApiError | undefined> {
  const signing = tenant.signing;
  if (!signing || (!header && !signing.required)) return undefined;
  const check = verifyRequestSignature(header, raw ?? Buffer.alloc(0), signing.secrets);
  if (!check.ok) return refused(check.message, check.reason);
  const fresh = await redis.set(
    keys.signatureSeen(tenant.id, check.mac),
    "1",
    "PX",
    2 * SIGNATURE_TOLERANCE_SECONDS * 1000,
    "NX",
  );
  if (fresh !== "OK")
    return refused(
      "this signature was already used: sign every request anew, with its own timestamp",
      "replayed",
    );
  return undefined;
}
