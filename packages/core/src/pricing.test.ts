import { PriceBook } from "./pricing";

describe("PriceBook", () => {
  const book = new PriceBook([
    { id: "oa", type: "openai" },
    { id: "an", type: "anthropic" },
    { id: "gm", type: "gemini" },
    {
      id: "local",
      type: "openai-compatible",
      base_url: "http://127.0.0.1:11434/v1",
      prices: { "*": { input_per_million: 0, output_per_million: 0 } },
    },
    {
      id: "priv",
      type: "openai",
      prices: {
        "gpt-4o-mini": { input_per_million: 1, output_per_million: 2, cached_input_per_million: 0.5 },
      },
    },
    { id: "unknown-host", type: "openai-compatible", base_url: "http://10.0.0.1/v1" },
  ]);

  it("prices known models from the table, cached input apart", () => {
    const plain = book.cost("oa", "gpt-4o-mini", { input_tokens: 1_000_000, output_tokens: 0 });
    const cached = book.cost("oa", "gpt-4o-mini", {
      input_tokens: 1_000_000,
      output_tokens: 0,
      cached_input_tokens: 1_000_000,
    });
    expect(plain).toBeGreaterThan(0);
    expect(cached).toBeGreaterThan(0);
    expect(cached!).toBeLessThan(plain!);
    expect(
      book.cost("an", "claude-3-5-haiku-latest", { input_tokens: 1000, output_tokens: 100 }),
    ).toBeGreaterThan(0);
    expect(book.cost("gm", "gemini-2.0-flash", { input_tokens: 1000, output_tokens: 100 })).toBeGreaterThan(
      0,
    );
  });

  it("matches the table's own calculation for a flat-priced model", () => {
    // gpt-4o-mini: $0.15 / M input, $0.60 / M output in the bundled table.
    expect(book.cost("oa", "gpt-4o-mini", { input_tokens: 1000, output_tokens: 100 })).toBeCloseTo(
      0.00021,
      9,
    );
  });

  it("uses the config's prices over the table, per model or for every model", () => {
    expect(
      book.cost("priv", "gpt-4o-mini", {
        input_tokens: 1_000_000,
        output_tokens: 1_000_000,
        cached_input_tokens: 500_000,
      }),
    ).toBeCloseTo(0.5 * 1 + 0.5 * 0.5 + 2, 9);
    expect(book.cost("local", "llama3", { input_tokens: 5000, output_tokens: 5000 })).toBe(0);
  });

  it("says unknown rather than guessing", () => {
    expect(book.has("unknown-host", "my-model")).toBe(false);
    expect(book.cost("unknown-host", "my-model", { input_tokens: 1, output_tokens: 1 })).toBeUndefined();
    expect(book.cost("nope", "gpt-4o-mini", { input_tokens: 1, output_tokens: 1 })).toBeUndefined();
    expect(book.has("oa", "gpt-4o-mini")).toBe(true);
  });
});
