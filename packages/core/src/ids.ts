import { randomBytes } from "node:crypto";

/** Job ids sort by creation time (base36 ms) and carry 80 random bits. */
export function newJobId(now = Date.now()): string {
  return `job_${now.toString(36).padStart(9, "0")}${randomBytes(10).toString("hex")}`;
}

export const JOB_ID_PATTERN = /^job_[0-9a-z]{9}[0-9a-f]{20}$/;
