import { parseConfig } from "@switchyard/core";
import { providerConnections } from "./provider-pool";

const doc = (concurrency: number) => `
worker: { concurrency: ${concurrency} }
providers:
  - { id: openai, type: openai, keys: [{ id: k1, secret: s1 }] }
  - id: local
    type: openai-compatible
    base_url: "http://127.0.0.1:11434/v1"
    keys: [{ id: k2, secret: none }]
    bulkhead: { max_concurrent: 40 }
models:
  gpt-4o-mini: { provider: openai }
tenants:
  - { id: acme, tier: paid, api_keys: [sk-acme-123456] }
`;

describe("providerConnections", () => {
  it("gives a provider's HTTP pool one connection per call the process may have in flight, and a few for probes", () => {
    // 1,000 slots: more than undici's 512 we used to cap at, so no call queues in the client.
    const big = parseConfig(doc(1000), {});
    const [openai, local] = big.providers;
    expect(providerConnections(big, openai!)).toBe(1008);
    // A bulkhead bounds the calls in flight: the pool needs no more.
    expect(providerConnections(big, local!)).toBe(48);
    // Fewer slots than the bulkhead: the slots bound it.
    const small = parseConfig(doc(16), {});
    expect(providerConnections(small, small.providers[1]!)).toBe(24);
  });
});
