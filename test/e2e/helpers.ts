import { http, type HttpAnswer } from "@switchyard/testing";
import type { Attempt, JobView } from "@switchyard/core";

export const chat = (content: string, extra: Record<string, unknown> = {}) => ({
  model: "gpt-4o-mini",
  messages: [{ role: "user", content }],
  ...extra,
});

export async function submit(
  apiUrl: string,
  key: string,
  body: unknown,
  headers: Record<string, string> = {},
): Promise<HttpAnswer<JobView>> {
  return http<JobView>("POST", `${apiUrl}/v1/jobs`, { key, json: body, headers });
}

export async function waitFinal(apiUrl: string, key: string, id: string, seconds = 20): Promise<JobView> {
  const res = await http<JobView>("GET", `${apiUrl}/v1/jobs/${id}?wait=${seconds}`, { key });
  if (res.status !== 200) throw new Error(`GET ${id} answered ${res.status}: ${JSON.stringify(res.body)}`);
  return res.body;
}

export const getJob = (apiUrl: string, key: string, id: string) =>
  http<JobView>("GET", `${apiUrl}/v1/jobs/${id}`, { key });

interface Peak {
  requests: number;
  tokens: number;
}

export interface MockStats {
  requests: number;
  formats: Record<string, number>;
  keys: Record<
    string,
    {
      requests: number;
      tokens: number;
      rate_limited: number;
      by_status: Record<string, number>;
      in_flight: number;
      max_in_flight: number;
      window_max: { accepted: Peak; offered: Peak; limits: { rpm: number; tpm: number } };
    }
  >;
}

export const mockStats = async (mockUrl: string): Promise<MockStats> =>
  (await http<MockStats>("GET", `${mockUrl}/_stats`)).body;

/** Sets a fault on every request of one wire format (and model) at the mock until cleared. */
export async function standingFault(
  mockUrl: string,
  fault: { format?: string; model?: string; fault: string },
) {
  const res = await http("POST", `${mockUrl}/_control/faults`, { json: fault });
  if (res.status !== 200) throw new Error(`mock refused the fault: ${JSON.stringify(res.body)}`);
}

export const clearFaults = (mockUrl: string) => http("DELETE", `${mockUrl}/_control/faults`);

/** A job's attempts as "provider:outcome[:error_type]", for asserting the order of a route's tries. */
export const trail = (attempts: Attempt[] | undefined): string[] =>
  (attempts ?? []).map((a) => `${a.provider}:${a.outcome}${a.error_type ? `:${a.error_type}` : ""}`);
