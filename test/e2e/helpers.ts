import { http, type HttpAnswer } from "@switchyard/testing";
import type { JobView } from "@switchyard/core";

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
