import Anthropic from "@anthropic-ai/sdk";
import { ApiError as GeminiApiError, GoogleGenAI } from "@google/genai";
import OpenAI from "openai";
import { Redis } from "ioredis";
import { request } from "undici";
import type { JobView } from "@switchyard/core";
import { eventually, FREE_KEY, http, PAID_KEY, Stack, testConfig } from "@switchyard/testing";
import { useGlobalDispatcher } from "../global-dispatcher";
import { chat, mockStats, standingFault, submit, waitFinal } from "./helpers";

/**
 * The drop-in endpoints with the official SDKs, unchanged but for the base URL and the key:
 * each call is a Switchyard job (visible at /v1/jobs/:id), answered in the caller's format
 * whichever provider served it, with the SDKs' own typed errors.
 */
const BROKE_KEY = "sk-compat-broke-01";

describe("drop-in endpoints", () => {
  let stack: Stack;
  let redis: Redis;
  beforeAll(async () => {
    stack = await Stack.start({
      workers: 1,
      config: (mockUrl, prefix) => {
        const cfg = testConfig(mockUrl, prefix, { server: { sync_timeout_seconds: 2 } });
        (cfg.tenants as Record<string, unknown>[]).push({
          id: "broke-co",
          tier: "paid",
          api_keys: [BROKE_KEY],
          quota: { requests_per_day: 0 },
        });
        return cfg;
      },
    });
    redis = new Redis(stack.redisUrl);
  });
  afterAll(async () => {
    redis?.disconnect();
    await stack?.stop();
  });
  const clearFaults = () => http("DELETE", `${stack.mockUrl}/_control/faults`);

  describe("OpenAI", () => {
    const client = (apiKey = PAID_KEY) =>
      new OpenAI({ apiKey, baseURL: `${stack.apiUrl}/v1`, maxRetries: 0, timeout: 20_000 });

    it("answers chat.completions.create with a chat.completion, and the job behind it", async () => {
      const { data, response } = await client()
        .chat.completions.create({
          model: "gpt-4o-mini",
          messages: [
            { role: "system", content: "be brief" },
            { role: "user", content: "hello drop-in" },
          ],
          max_completion_tokens: 20,
        })
        .withResponse();
      expect(data.object).toBe("chat.completion");
      expect(data.choices[0]?.message).toMatchObject({ role: "assistant", content: "Echo: hello drop-in" });
      expect(data.choices[0]?.finish_reason).toBe("stop");
      expect(data.usage).toMatchObject({ prompt_tokens: 14, completion_tokens: 3, total_tokens: 17 });
      expect(data.model).toBe("gpt-4o-mini");
      const jobId = response.headers.get("switchyard-job-id") ?? "";
      expect(data.id).toBe(`chatcmpl-${jobId}`);
      const job = await waitFinal(stack.apiUrl, PAID_KEY, jobId, 1);
      expect(job).toMatchObject({ status: "succeeded", model: "gpt-4o-mini" });
      // Another tenant cannot see it.
      expect((await http("GET", `${stack.apiUrl}/v1/jobs/${jobId}`, { key: FREE_KEY })).status).toBe(404);
    });

    it("lists the configured models and retrieves one", async () => {
      const ids = [];
      for await (const m of client().models.list()) ids.push(m.id);
      expect(ids).toEqual(["claude-sonnet-4-6", "fast", "gemini-2.5-flash", "gpt-4o-mini", "smart"]);
      expect((await client().models.retrieve("smart")).id).toBe("smart");
      await expect(client().models.retrieve("gpt-9")).rejects.toBeInstanceOf(OpenAI.NotFoundError);
    });

    it("answers in OpenAI's format when the route falls back to Anthropic", async () => {
      await standingFault(stack.mockUrl, { format: "openai", fault: "status=500" });
      try {
        const r = await client().chat.completions.create({
          model: "smart",
          messages: [{ role: "user", content: "fall back please" }],
          max_tokens: 20,
        });
        expect(r.choices[0]?.message.content).toBe("Echo: fall back please");
        expect(r.model).toBe("claude-sonnet-4-6");
      } finally {
        await clearFaults();
      }
    });

    it("raises the SDK's own errors: 401, 404, 400 by field, 429 over quota, 400 from upstream", async () => {
      const call = (c: OpenAI, body: Record<string, unknown>) =>
        c.chat.completions
          .create({ model: "gpt-4o-mini", messages: [{ role: "user", content: "x" }], ...body })
          .catch((e: unknown) => e);
      expect(await call(client("sk-nobody-1234"), {})).toBeInstanceOf(OpenAI.AuthenticationError);
      const unknown = await call(client(), { model: "gpt-9" });
      expect(unknown).toBeInstanceOf(OpenAI.NotFoundError);
      const tools = (await call(client(), {
        tools: [{ type: "function", function: { name: "f", parameters: {} } }],
      })) as InstanceType<typeof OpenAI.BadRequestError>;
      expect(tools).toBeInstanceOf(OpenAI.BadRequestError);
      expect(tools.param).toBe("tools");
      const n = (await call(client(), { n: 2 })) as InstanceType<typeof OpenAI.BadRequestError>;
      expect(n).toBeInstanceOf(OpenAI.BadRequestError);
      expect(n.param).toBe("n");
      const quota = (await call(client(BROKE_KEY), {})) as InstanceType<typeof OpenAI.RateLimitError>;
      expect(quota).toBeInstanceOf(OpenAI.RateLimitError);
      expect(quota.code).toBe("quota_exceeded");
      expect(Number(quota.headers?.get("retry-after"))).toBeGreaterThan(0);
      const upstream = await call(client(), {
        messages: [{ role: "user", content: "[[mock:status=400]] refused" }],
      });
      expect(upstream).toBeInstanceOf(OpenAI.BadRequestError);
      expect((upstream as Error).message).toMatch(/upstream refused the request/);
    });

    it("answers 504 with the job's id past server.sync_timeout_seconds, and the job goes on", async () => {
      const err = (await client()
        .chat.completions.create({
          model: "gpt-4o-mini",
          messages: [{ role: "user", content: "[[mock:delay=2500]] slow one" }],
        })
        .catch((e: unknown) => e)) as InstanceType<typeof OpenAI.APIError>;
      expect(err).toBeInstanceOf(OpenAI.InternalServerError);
      expect(err.status).toBe(504);
      const jobId = err.headers?.get("switchyard-job-id") ?? "";
      expect(err.message).toContain(`GET /v1/jobs/${jobId}`);
      expect((await waitFinal(stack.apiUrl, PAID_KEY, jobId, 10)).status).toBe("succeeded");
    });
  });

  describe("Anthropic", () => {
    const client = (apiKey = PAID_KEY) =>
      new Anthropic({ apiKey, baseURL: stack.apiUrl, maxRetries: 0, timeout: 20_000 });

    it("answers messages.create with a message (x-api-key auth, system prompt)", async () => {
      const { data, response } = await client()
        .messages.create({
          model: "claude-sonnet-4-6",
          max_tokens: 20,
          system: "be brief",
          messages: [{ role: "user", content: "hello anthropic drop-in" }],
        })
        .withResponse();
      expect(data.type).toBe("message");
      expect(data.content[0]).toEqual({ type: "text", text: "Echo: hello anthropic drop-in" });
      expect(data.stop_reason).toBe("end_turn");
      expect(data.usage).toMatchObject({ input_tokens: 16, output_tokens: 4 });
      expect(data.id).toBe(`msg_${response.headers.get("switchyard-job-id")}`);
    });

    it("is served by any provider the route picks, and caps with max_tokens", async () => {
      const r = await client().messages.create({
        model: "gpt-4o-mini",
        max_tokens: 2,
        messages: [{ role: "user", content: "one two three four" }],
      });
      expect(r.content[0]).toEqual({ type: "text", text: "Echo: one" });
      expect(r.stop_reason).toBe("max_tokens");
    });

    it("raises the SDK's own errors", async () => {
      const call = (c: Anthropic, body: Record<string, unknown>) =>
        c.messages
          .create({
            model: "claude-sonnet-4-6",
            max_tokens: 10,
            messages: [{ role: "user", content: "x" }],
            ...body,
          })
          .catch((e: unknown) => e);
      expect(await call(client("sk-nobody-1234"), {})).toBeInstanceOf(Anthropic.AuthenticationError);
      expect(await call(client(), { model: "claude-9" })).toBeInstanceOf(Anthropic.NotFoundError);
      const tools = await call(client(), { tools: [{ name: "f", input_schema: { type: "object" } }] });
      expect(tools).toBeInstanceOf(Anthropic.BadRequestError);
      expect((tools as Error).message).toMatch(/tools/);
      expect(await call(client(BROKE_KEY), {})).toBeInstanceOf(Anthropic.RateLimitError);
    });
  });

  describe("Gemini", () => {
    useGlobalDispatcher();
    const client = (apiKey = PAID_KEY) => new GoogleGenAI({ apiKey, httpOptions: { baseUrl: stack.apiUrl } });

    it("answers generateContent with text, finish reason and usage", async () => {
      const r = await client().models.generateContent({
        model: "gemini-2.5-flash",
        contents: "hello gemini drop-in",
        config: { systemInstruction: "be brief", maxOutputTokens: 20 },
      });
      expect(r.text).toBe("Echo: hello gemini drop-in");
      expect(r.candidates?.[0]?.finishReason).toBe("STOP");
      expect(r.usageMetadata).toMatchObject({ candidatesTokenCount: 4 });
      expect(r.modelVersion).toBe("gemini-2.5-flash");
    });

    it("raises ApiError with Gemini's statuses", async () => {
      const bad = await client("sk-nobody-1234")
        .models.generateContent({ model: "gemini-2.5-flash", contents: "x" })
        .catch((e: unknown) => e);
      expect(bad).toBeInstanceOf(GeminiApiError);
      expect((bad as GeminiApiError).status).toBe(401);
      const unknown = await client()
        .models.generateContent({ model: "gemini-9", contents: "x" })
        .catch((e: unknown) => e);
      expect((unknown as GeminiApiError).status).toBe(404);
      expect((unknown as GeminiApiError).message).toContain("NOT_FOUND");
    });

    it("streams generateContentStream through the queue", async () => {
      const stream = await client().models.generateContentStream({
        model: "gemini-2.5-flash",
        contents: "hello streamed gemini",
      });
      let text = "";
      let finish: string | undefined;
      for await (const chunk of stream) {
        text += chunk.text ?? "";
        finish = chunk.candidates?.[0]?.finishReason ?? finish;
      }
      expect(text).toBe("Echo: hello streamed gemini");
      expect(finish).toBe("STOP");
    });

    it("takes the key as ?key= too, and never logs it", async () => {
      const res = await http<{ candidates: { content: { parts: { text: string }[] } }[] }>(
        "POST",
        `${stack.apiUrl}/v1beta/models/gemini-2.5-flash:generateContent?key=${PAID_KEY}`,
        { json: { contents: [{ role: "user", parts: [{ text: "by query key" }] }] } },
      );
      expect(res.status).toBe(200);
      expect(res.body.candidates[0]?.content.parts[0]?.text).toBe("Echo: by query key");
      expect(stack.api.output()).not.toContain(PAID_KEY);
    });
  });

  describe("streaming through the queue", () => {
    const openai = () => new OpenAI({ apiKey: PAID_KEY, baseURL: `${stack.apiUrl}/v1`, maxRetries: 0 });
    const inFlightAtMock = async () =>
      Object.values((await mockStats(stack.mockUrl)).keys).reduce((n, k) => n + k.in_flight, 0);

    it("OpenAI: relays chunks as the upstream sends them, usage last, [DONE]", async () => {
      const { data: stream, response } = await openai()
        .chat.completions.create({
          model: "gpt-4o-mini",
          messages: [{ role: "user", content: "[[mock:chunk_delay=200]] one two three four" }],
          stream: true,
          stream_options: { include_usage: true },
        })
        .withResponse();
      const jobId = response.headers.get("switchyard-job-id") ?? "";
      let text = "";
      let firstWhileUpstreamBusy: boolean | undefined;
      let finish: string | null | undefined;
      let usage: OpenAI.CompletionUsage | null | undefined;
      for await (const chunk of stream) {
        const piece = chunk.choices[0]?.delta.content ?? "";
        // The first piece arrives while the mock is still sending the rest.
        if (piece && firstWhileUpstreamBusy === undefined)
          firstWhileUpstreamBusy = (await inFlightAtMock()) > 0;
        text += piece;
        finish = chunk.choices[0]?.finish_reason ?? finish;
        usage = chunk.usage ?? usage;
        expect(chunk.id).toBe(`chatcmpl-${jobId}`);
      }
      expect(firstWhileUpstreamBusy).toBe(true);
      expect(text).toBe("Echo: one two three four");
      expect(finish).toBe("stop");
      expect(usage).toMatchObject({ completion_tokens: 5 });
      expect((await waitFinal(stack.apiUrl, PAID_KEY, jobId, 5)).status).toBe("succeeded");
      // The job's stream can be read again while it lives, from any point.
      const replay = await http<string>("GET", `${stack.apiUrl}/v1/jobs/${jobId}/stream`, { key: PAID_KEY });
      expect(replay.status).toBe(200);
      const ids = [...replay.body.matchAll(/^id: (.+)$/gm)].map((m) => m[1]);
      expect(replay.body).toContain("event: end");
      const resumed = await http<string>("GET", `${stack.apiUrl}/v1/jobs/${jobId}/stream`, {
        key: PAID_KEY,
        headers: { "last-event-id": ids[2] ?? "" },
      });
      expect([...resumed.body.matchAll(/^id: (.+)$/gm)].map((m) => m[1])).toEqual(ids.slice(3));
    });

    it("Anthropic: messages.stream assembles the message", async () => {
      const client = new Anthropic({ apiKey: PAID_KEY, baseURL: stack.apiUrl, maxRetries: 0 });
      const texts: string[] = [];
      const stream = client.messages.stream({
        model: "claude-sonnet-4-6",
        max_tokens: 20,
        messages: [{ role: "user", content: "hello streamed anthropic" }],
      });
      stream.on("text", (t) => texts.push(t));
      const final = await stream.finalMessage();
      expect(final.content[0]).toMatchObject({ type: "text", text: "Echo: hello streamed anthropic" });
      expect(final.stop_reason).toBe("end_turn");
      expect(final.usage.output_tokens).toBe(4);
      expect(texts).toEqual(["Echo:", " hello", " streamed", " anthropic"]);
    });

    it("retries a failure before the first chunk, and ends the stream with an error event after it", async () => {
      const early = await openai().chat.completions.create({
        model: "gpt-4o-mini",
        messages: [{ role: "user", content: "[[mock:status=500,times=1,id=stream-early]] retried" }],
        stream: true,
      });
      let text = "";
      for await (const c of early) text += c.choices[0]?.delta.content ?? "";
      expect(text).toBe("Echo: retried");

      const late = await openai().chat.completions.create({
        model: "gpt-4o-mini",
        messages: [{ role: "user", content: "[[mock:fail_after=2]] one two three" }],
        stream: true,
      });
      const got: string[] = [];
      const err = await (async () => {
        for await (const c of late) got.push(c.choices[0]?.delta.content ?? "");
      })().catch((e: unknown) => e);
      expect(err).toBeInstanceOf(OpenAI.APIError);
      expect((err as Error).message).toMatch(/stream broke/);
      expect(got.join("")).toBe("Echo: one");
    });

    it("cancels the job and its upstream call when the caller leaves mid-stream", async () => {
      const ctrl = new AbortController();
      const { data: stream, response } = await openai()
        .chat.completions.create(
          {
            model: "gpt-4o-mini",
            messages: [{ role: "user", content: "[[mock:chunk_delay=400]] a b c d e f g h" }],
            stream: true,
          },
          { signal: ctrl.signal },
        )
        .withResponse();
      const jobId = response.headers.get("switchyard-job-id") ?? "";
      const got: string[] = [];
      await (async () => {
        for await (const c of stream) {
          got.push(c.choices[0]?.delta.content ?? "");
          if (got.join("").length > 0) ctrl.abort();
        }
      })().catch(() => undefined);
      const job = await waitFinal(stack.apiUrl, PAID_KEY, jobId, 10);
      expect(job.status).toBe("cancelled");
      // The upstream call was aborted too: nothing is in flight at the mock.
      await eventually(inFlightAtMock, (n) => n === 0, 5_000, "the mock's call to end");
    });

    it("never streams an answer twice: a job whose worker died mid-stream fails as interrupted", async () => {
      const res = await fetch(`${stack.apiUrl}/v1/chat/completions`, {
        method: "POST",
        headers: { authorization: `Bearer ${PAID_KEY}`, "content-type": "application/json" },
        body: JSON.stringify({
          model: "gpt-4o-mini",
          stream: true,
          messages: [{ role: "user", content: "[[mock:chunk_delay=300]] a b c d e f g h i j" }],
        }),
      });
      const jobId = res.headers.get("switchyard-job-id") ?? "";
      const reader = res.body?.getReader();
      await reader?.read(); // the first piece is out
      const dying = stack.workers.find((w) => w.child.exitCode === null);
      await dying?.kill();
      await stack.addWorker();
      // Stay connected (leaving would cancel the job) until the API ends the stream.
      while (reader && !(await reader.read()).done);
      const job = await waitFinal(stack.apiUrl, PAID_KEY, jobId, 20);
      expect(job.status).toBe("failed");
      expect(job.error?.type).toBe("stream_interrupted");
      // The stream holds the pieces the dead worker sent, then the error: nothing twice.
      const again = await http<string>("GET", `${stack.apiUrl}/v1/jobs/${jobId}/stream`, { key: PAID_KEY });
      const pieces = [...again.body.matchAll(/^event: delta\ndata: (.*)$/gm)].map(
        (m) => (JSON.parse(m[1] ?? "{}") as { text: string }).text,
      );
      expect("Echo: a b c d e f g h i j".startsWith(pieces.join(""))).toBe(true);
      expect(again.body).toContain("event: error");
    });

    it("answers a failure that came before any chunk with the format's error status", async () => {
      const err = await openai()
        .chat.completions.create({
          model: "gpt-4o-mini",
          messages: [{ role: "user", content: "[[mock:status=400]] refused" }],
          stream: true,
        })
        .catch((e: unknown) => e);
      expect(err).toBeInstanceOf(OpenAI.BadRequestError);
    });
  });

  it("cancels the job when the caller disconnects", async () => {
    const ctrl = new AbortController();
    const pending = request(`${stack.apiUrl}/v1/chat/completions`, {
      method: "POST",
      headers: { authorization: `Bearer ${PAID_KEY}`, "content-type": "application/json" },
      body: JSON.stringify({
        model: "gpt-4o-mini",
        messages: [{ role: "user", content: "[[mock:delay=2500]] abandon me" }],
      }),
      signal: ctrl.signal,
    }).catch(() => undefined);
    // The running drop-in job (its record says sync), found the way an operator would.
    const running = async () => {
      for (const k of await redis.keys(`${stack.prefix}:job:*`)) {
        const h = await redis.hgetall(k);
        if (h.status === "running" && h.sync === "1") return h.id ?? "";
      }
      return "";
    };
    const jobId = await eventually(running, (id) => id !== "", 10_000, "the drop-in job to run");
    ctrl.abort();
    await pending;
    const job = await waitFinal(stack.apiUrl, PAID_KEY, jobId, 10);
    expect(job.status).toBe("cancelled");
  });

  it("sends no webhook for a drop-in call, unless it asked: the tenant's endpoints stay quiet", async () => {
    const tenantsWithEndpoints = `${stack.prefix}:wh:tenants`;
    const outbox = `${stack.prefix}:wh:outbox`;
    // Events ever added to the outbox (XINFO STREAM's entries-added): the fan-out deletes each
    // entry within milliseconds, so the stream's length would race it.
    const added = async (): Promise<number> => {
      const info = (await redis.xinfo("STREAM", outbox)) as unknown[];
      return Number(info[info.indexOf("entries-added") + 1]);
    };
    await redis.sadd(tenantsWithEndpoints, "paid-co");
    try {
      const before = await added();
      const r = await http("POST", `${stack.apiUrl}/v1/chat/completions`, {
        key: PAID_KEY,
        json: { model: "gpt-4o-mini", messages: [{ role: "user", content: "quiet" }] },
      });
      expect(r.status).toBe(200);
      await waitFinal(stack.apiUrl, PAID_KEY, r.headers.get("switchyard-job-id") ?? "", 5);
      expect(await added()).toBe(before);
      const job: JobView = (await submit(stack.apiUrl, PAID_KEY, chat("loud"))).body;
      await waitFinal(stack.apiUrl, PAID_KEY, job.id, 10);
      await eventually(added, (n) => n === before + 1, 10_000, "the ordinary job's webhook event");
    } finally {
      await redis.srem(tenantsWithEndpoints, "paid-co");
    }
  });
});
