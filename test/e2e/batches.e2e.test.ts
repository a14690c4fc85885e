import OpenAI, { toFile } from "openai";
import { FREE_KEY, PAID_KEY, Stack } from "@switchyard/testing";
import { chat, submit, waitFinal } from "./helpers";

/**
 * OpenAI's Batch API with the official SDK, unchanged but for the base URL and key: a 1,000-line
 * batch completes with every custom_id once in the output and its bad lines in the error file,
 * an interactive request of the same tenant does not wait behind it, and a batch can be
 * cancelled.
 */
describe("batches", () => {
  let stack: Stack;
  beforeAll(async () => {
    stack = await Stack.start({ workers: 1 });
  });
  afterAll(async () => {
    await stack?.stop();
  });
  const client = (apiKey = PAID_KEY) =>
    new OpenAI({ apiKey, baseURL: `${stack.apiUrl}/v1`, maxRetries: 0, timeout: 60_000 });
  const line = (i: number, content = `batch line ${i}`) =>
    JSON.stringify({
      custom_id: `req-${i}`,
      method: "POST",
      url: "/v1/chat/completions",
      body: { model: "gpt-4o-mini", messages: [{ role: "user", content }], max_tokens: 16 },
    });
  const until = async <T>(read: () => Promise<T>, done: (v: T) => boolean, ms = 60_000): Promise<T> => {
    const end = Date.now() + ms;
    for (;;) {
      const v = await read();
      if (done(v) || Date.now() > end) return v;
      await new Promise((r) => setTimeout(r, 200));
    }
  };

  it("runs a 1,000-line batch: every custom_id once in the output, bad lines in the error file", async () => {
    const lines = Array.from({ length: 1000 }, (_, i) => line(i));
    lines[10] = "{not json";
    lines[20] = JSON.stringify({
      custom_id: "req-20",
      method: "POST",
      url: "/v1/chat/completions",
      body: { model: "gpt-4o-mini", messages: [{ role: "user", content: "x" }], tools: [] },
    });
    const file = await client().files.create({
      file: await toFile(Buffer.from(lines.join("\n")), "batch.jsonl"),
      purpose: "batch",
    });
    expect(file).toMatchObject({ object: "file", purpose: "batch", filename: "batch.jsonl" });
    const batch = await client().batches.create({
      input_file_id: file.id,
      endpoint: "/v1/chat/completions",
      completion_window: "24h",
      metadata: { run: "e2e" },
    });
    expect(batch).toMatchObject({ object: "batch", status: "in_progress", request_counts: { total: 1000 } });
    expect(batch.errors?.data?.map((e) => e.line)).toEqual([11, 21]);

    // The same tenant's interactive work does not wait behind its batch.
    const interactive = await submit(stack.apiUrl, PAID_KEY, chat("interactive while batching"));
    const quick = await waitFinal(stack.apiUrl, PAID_KEY, interactive.body.id, 30);
    expect(quick.status).toBe("succeeded");
    const meanwhile = await client().batches.retrieve(batch.id);
    expect(meanwhile.request_counts?.completed ?? 0).toBeLessThan(998);

    const done = await until(
      () => client().batches.retrieve(batch.id),
      (b) => b.status === "completed",
    );
    expect(done.status).toBe("completed");
    expect(done.request_counts).toEqual({ total: 1000, completed: 998, failed: 2 });
    const output = await (await client().files.content(done.output_file_id ?? "")).text();
    const rows = output
      .trim()
      .split("\n")
      .map(
        (l) =>
          JSON.parse(l) as {
            custom_id: string;
            response: { status_code: number; body: OpenAI.ChatCompletion };
          },
      );
    const ids = rows.map((r) => r.custom_id);
    expect(new Set(ids).size).toBe(998);
    expect(ids).toHaveLength(998);
    const five = rows.find((r) => r.custom_id === "req-5");
    expect(five?.response.status_code).toBe(200);
    expect(five?.response.body.choices[0]?.message.content).toBe("Echo: batch line 5");
    const errors = await (await client().files.content(done.error_file_id ?? "")).text();
    const bad = errors
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l) as { custom_id: string | null; error: { code: string; message: string } });
    expect(bad.map((b) => [b.custom_id, b.error.code])).toEqual([
      [null, "invalid_json"],
      ["req-20", "invalid_request"],
    ]);
    expect(bad[1]?.error.message).toMatch(/line 21.*tools/);
    // Another tenant sees none of it.
    await expect(client(FREE_KEY).batches.retrieve(batch.id)).rejects.toBeInstanceOf(OpenAI.NotFoundError);
    await expect(client(FREE_KEY).files.content(file.id)).rejects.toBeInstanceOf(OpenAI.NotFoundError);
    const list = await client().batches.list();
    expect(list.data.map((b) => b.id)).toContain(batch.id);
  });

  it("cancels a batch: waiting lines end cancelled, the batch ends cancelled", async () => {
    const lines = Array.from({ length: 200 }, (_, i) => line(i, `[[mock:delay=300]] slow ${i}`));
    const file = await client().files.create({
      file: await toFile(Buffer.from(lines.join("\n")), "slow.jsonl"),
      purpose: "batch",
    });
    const batch = await client().batches.create({
      input_file_id: file.id,
      endpoint: "/v1/chat/completions",
      completion_window: "24h",
    });
    const cancelling = await client().batches.cancel(batch.id);
    expect(["cancelling", "cancelled"]).toContain(cancelling.status);
    const ended = await until(
      () => client().batches.retrieve(batch.id),
      (b) => b.status === "cancelled",
      30_000,
    );
    expect(ended.status).toBe("cancelled");
    expect(ended.request_counts?.failed ?? 0).toBeGreaterThan(100);
  });

  it("refuses what it cannot run, by field", async () => {
    const bad = await client()
      .batches.create({
        input_file_id: "file-000000000000000000000000",
        endpoint: "/v1/chat/completions",
        completion_window: "24h",
      })
      .catch((e: unknown) => e);
    expect(bad).toBeInstanceOf(OpenAI.NotFoundError);
    const endpoint = await client()
      .batches.create({ input_file_id: "x", endpoint: "/v1/embeddings", completion_window: "24h" })
      .catch((e: unknown) => e);
    expect(endpoint).toBeInstanceOf(OpenAI.BadRequestError);
    expect((endpoint as InstanceType<typeof OpenAI.BadRequestError>).param).toBe("endpoint");
    const allBad = await client().files.create({
      file: await toFile(Buffer.from("nope\n{}\n"), "bad.jsonl"),
      purpose: "batch",
    });
    const failed = await client().batches.create({
      input_file_id: allBad.id,
      endpoint: "/v1/chat/completions",
      completion_window: "24h",
    });
    expect(failed).toMatchObject({ status: "failed", request_counts: { total: 2, completed: 0, failed: 2 } });
    expect(failed.errors?.data).toHaveLength(2);
    const purpose = await client()
      .files.create({ file: await toFile(Buffer.from("{}"), "x.jsonl"), purpose: "assistants" })
      .catch((e: unknown) => e);
    expect(purpose).toBeInstanceOf(OpenAI.BadRequestError);
  });
});
