import type { z } from "zod";
import { badRequest, findProtoKey } from "@switchyard/core";

/** Parses a JSON body with a zod schema; a failure is a 400 naming every failing field path. */
export function parseBody<T extends z.ZodType>(schema: T, body: unknown): z.infer<T> {
  if (body === undefined || body === null || typeof body !== "object" || Array.isArray(body)) {
    throw badRequest("send a JSON object with Content-Type: application/json");
  }
  // Parsers drop a "__proto__" key silently (it would set the prototype): refuse it by name.
  const proto = findProtoKey(body);
  if (proto) {
    const path = proto.join(".");
    throw badRequest(`invalid request: ${path}: '__proto__' is not allowed as a key`, [
      { path, message: "'__proto__' is not allowed as a key" },
    ]);
  }
  const parsed = schema.safeParse(body);
  if (parsed.success) return parsed.data;
  const details = parsed.error.issues.flatMap((i) => {
    const base = i.path.map(String);
    // Unknown fields are reported at their own path, like every other problem.
    if (i.code === "unrecognized_keys")
      return i.keys.map((k) => ({ path: [...base, k].join("."), message: "unknown field" }));
    return [{ path: base.join(".") || "(body)", message: i.message }];
  });
  throw badRequest(`invalid request: ${details.map((d) => `${d.path}: ${d.message}`).join("; ")}`, details);
}
