import type { NextFunction, Request, Response } from "express";
import { timingSafeEqual, createHash } from "node:crypto";
import { ApiError, unauthorized, type TenantConfig } from "@switchyard/core";
import type { TenantDirectory } from "./tenants";

/**
 * A key presented the way a provider's SDK sends it instead of a Bearer token (Anthropic's
 * x-api-key, Gemini's x-goog-api-key or ?key=); undefined when the request has none of them.
 */
export type KeyOf = (req: Request) => string | undefined;

/**
 * Tenant auth: "Authorization: Bearer <tenant key>", or where `keyOf` finds one, that key. The
 * tenant lands in res.locals.tenant.
 */
export function tenantAuth(directory: TenantDirectory, keyOf?: KeyOf) {
  return (req: Request, res: Response, next: NextFunction): void => {
    const tenant = authenticate(directory, req.get("authorization"), keyOf?.(req));
    if (tenant instanceof ApiError) return next(tenant);
    res.locals.tenant = tenant;
    next();
  };
}

/**
 * The tenant a request's key belongs to: the Bearer token of `authorization`, or `other` (a key
 * sent the way a provider's SDK sends it) when given; a 401 saying what is wrong otherwise.
 */
export function authenticate(
  directory: TenantDirectory,
  authorization: string | undefined,
  other?: string,
): TenantConfig | ApiError {
  if (!authorization && other === undefined)
    return unauthorized(
      "missing Authorization header; send 'Authorization: Bearer <your Switchyard API key>'",
    );
  const match = authorization === undefined ? undefined : /^Bearer\s+(\S+)\s*$/i.exec(authorization);
  const key = other ?? match?.[1];
  if (!key) return unauthorized("malformed Authorization header; expected 'Bearer <key>'");
  return directory.authenticate(key) ?? unauthorized("unknown API key");
}

const sha = (s: string) => createHash("sha256").update(s).digest();

/**
 * Admin guard for Bull Board and admin endpoints: HTTP basic auth with the admin token as the
 * password (any user name), or "Authorization: Bearer <token>". Without a token configured the
 * admin surface is closed.
 */
export function adminAuth(token: string | undefined) {
  const want = token ? sha(token) : undefined;
  return (req: Request, res: Response, next: NextFunction): void => {
    if (!want) {
      return next(
        new ApiError(
          503,
          "admin_disabled",
          "admin endpoints are off; set SWITCHYARD_ADMIN_TOKEN to enable them",
        ),
      );
    }
    const header = req.get("authorization") ?? "";
    let presented: string | undefined;
    const basic = /^Basic\s+(\S+)$/i.exec(header);
    const bearer = /^Bearer\s+(\S+)$/i.exec(header);
    if (basic?.[1]) {
      const decoded = Buffer.from(basic[1], "base64").toString("utf8");
      presented = decoded.slice(decoded.indexOf(":") + 1);
    } else if (bearer?.[1]) {
      presented = bearer[1];
    }
    if (presented !== undefined && timingSafeEqual(sha(presented), want)) return next();
    res.set("www-authenticate", 'Basic realm="switchyard admin", charset="UTF-8"');
    next(
      new ApiError(401, "authentication_error", "admin token required (basic auth password or Bearer token)"),
    );
  };
}
