import { TenantDirectory } from "./tenants";

describe("TenantDirectory", () => {
  const dir = new TenantDirectory([
    { id: "a", tier: "paid", api_keys: ["sk-aaaa-1111", "sk-aaaa-2222"], dedicated_queue: false, weight: 1 },
    { id: "b", tier: "free", api_keys: ["sk-bbbb-1111"], dedicated_queue: true, weight: 1 },
  ]);
  it("finds the tenant of each key", () => {
    expect(dir.authenticate("sk-aaaa-2222")?.id).toBe("a");
    expect(dir.authenticate("sk-bbbb-1111")?.id).toBe("b");
  });
  it("rejects unknown, prefix and empty keys", () => {
    expect(dir.authenticate("sk-aaaa-111")).toBeUndefined();
    expect(dir.authenticate("sk-aaaa-11111")).toBeUndefined();
    expect(dir.authenticate("")).toBeUndefined();
  });
});
