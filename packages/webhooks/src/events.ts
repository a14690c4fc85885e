import type { JobStatus, JobView } from "@switchyard/core";

/** The events a webhook can carry: one per final job status. */
export const WEBHOOK_EVENTS = ["job.succeeded", "job.failed", "job.cancelled", "job.expired"] as const;
export type WebhookEvent = (typeof WEBHOOK_EVENTS)[number];

const FINAL: ReadonlySet<string> = new Set(["succeeded", "failed", "cancelled", "expired"]);

export const eventFor = (status: string): WebhookEvent | undefined =>
  FINAL.has(status) ? (`job.${status}` as WebhookEvent) : undefined;

/** The webhook-id of a job's final event: the same for every attempt, endpoint and replay. */
export const messageId = (jobId: string, status: JobStatus | string): string =>
  `msg_${jobId.replace(/^job_/, "")}_${status}`;

/** "url" names the job's own webhook.url; anything else is an endpoint id. */
export const JOB_URL_TARGET = "url";

/** Deterministic, so a fan-out repeated after a crash adds nothing twice. */
export const deliveryId = (jobId: string, status: string, target: string): string =>
  `dlv_${jobId.replace(/^job_/, "")}_${status}_${target.replace(/^ep_/, "")}`;

export const DELIVERY_ID_PATTERN =
  /^dlv_[0-9a-z]{29}_(succeeded|failed|cancelled|expired)_([0-9a-f]{20}|url)$/;
export const ENDPOINT_ID_PATTERN = /^ep_[0-9a-f]{20}$/;

/** The body of a delivery, Standard Webhooks style: type, timestamp, and the job as GET shows it. */
export const eventBody = (type: WebhookEvent, job: JobView, nowMs = Date.now()): string =>
  JSON.stringify({ type, timestamp: new Date(nowMs).toISOString(), data: job });
