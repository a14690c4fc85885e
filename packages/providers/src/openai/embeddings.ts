import { z } from "zod";
import type { ProviderConfig } from "@switchyard/core";
import { ProviderError } from "../errors";
import { HttpClient } from "../http";

/**
 * OpenAI-compatible embeddings (POST {base_url}/embeddings), for the semantic cache: OpenAI
 * itself, or a local Ollama / vLLM server. One vector per call, as float32.
 */
const responseSchema = z.object({
  data: z.array(z.object({ embedding: z.array(z.number()).min(1) })).min(1),
});

export class OpenAIEmbeddings {
  private readonly http: HttpClient;
  private readonly url: string;
  private readonly secret: string;

  constructor(private readonly cfg: ProviderConfig) {
    this.http = new HttpClient({
      provider: cfg.id,
      timeoutMs: cfg.timeout_ms,
      connectTimeoutMs: cfg.connect_timeout_ms,
      maxResponseBytes: cfg.max_response_bytes,
      connections: 32,
    });
    this.url = `${cfg.base_url.replace(/\/+$/, "")}/embeddings`;
    this.secret = cfg.keys[0]?.secret ?? "";
  }

  async embed(model: string, text: string, signal = new AbortController().signal): Promise<Float32Array> {
    const res = await this.http.postJson(
      this.url,
      { ...this.cfg.headers, authorization: `Bearer ${this.secret}` },
      { model, input: text },
      signal,
    );
    const parsed = responseSchema.safeParse(res.body);
    if (res.status < 200 || res.status >= 300 || !parsed.success)
      throw new ProviderError(
        res.status >= 500 ? "server" : "malformed",
        `embeddings from '${this.cfg.id}' answered ${res.status} without a vector`,
        this.cfg.id,
        { status: res.status },
      );
    return Float32Array.from(parsed.data.data[0]?.embedding ?? []);
  }

  close(): Promise<void> {
    return this.http.close();
  }
}
