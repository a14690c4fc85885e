/** Per-key counters served at GET /_stats. Keys are the fake upstream's API keys. */
export interface KeyStats {
  requests: number;
  input_tokens: number;
  output_tokens: number;
  rate_limited: number;
  by_status: Record<string, number>;
  in_flight: number;
  max_in_flight: number;
}

export class Stats {
  readonly keys = new Map<string, KeyStats>();
  /** Requests per wire format (openai, anthropic, gemini). */
  readonly formats = new Map<string, number>();
  requests = 0;

  private key(k: string): KeyStats {
    let s = this.keys.get(k);
    if (!s) {
      s = {
        requests: 0,
        input_tokens: 0,
        output_tokens: 0,
        rate_limited: 0,
        by_status: {},
        in_flight: 0,
        max_in_flight: 0,
      };
      this.keys.set(k, s);
    }
    return s;
  }

  begin(apiKey: string, format: string): void {
    const s = this.key(apiKey);
    this.requests += 1;
    this.formats.set(format, (this.formats.get(format) ?? 0) + 1);
    s.requests += 1;
    s.in_flight += 1;
    s.max_in_flight = Math.max(s.max_in_flight, s.in_flight);
  }

  end(apiKey: string, status: number, inputTokens = 0, outputTokens = 0): void {
    const s = this.key(apiKey);
    s.in_flight = Math.max(0, s.in_flight - 1);
    s.by_status[String(status)] = (s.by_status[String(status)] ?? 0) + 1;
    if (status === 429) s.rate_limited += 1;
    s.input_tokens += inputTokens;
    s.output_tokens += outputTokens;
  }

  /** `windows` adds each key's limits and the highest 60 s window counts (accepted and offered). */
  toJSON<W>(windows: (key: string) => W): {
    requests: number;
    formats: Record<string, number>;
    keys: Record<string, KeyStats & { tokens: number; window_max: W }>;
  } {
    return {
      requests: this.requests,
      formats: Object.fromEntries(this.formats),
      keys: Object.fromEntries(
        [...this.keys].map(([k, s]) => [
          k,
          { ...s, tokens: s.input_tokens + s.output_tokens, window_max: windows(k) },
        ]),
      ),
    };
  }

  reset(): void {
    this.keys.clear();
    this.formats.clear();
    this.requests = 0;
  }
}
