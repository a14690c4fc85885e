import { FairGate } from "./fair-gate";

/** Grants every waiter's permit back as soon as it arrives, recording the order. */
async function grantOrder(
  gate: FairGate,
  waiting: Record<string, number>,
  grants: number,
): Promise<string[]> {
  const order: string[] = [];
  const pending: Promise<void>[] = [];
  for (const [cls, n] of Object.entries(waiting)) {
    for (let i = 0; i < n; i++) pending.push(gate.acquire(cls).then((ok) => void (ok && order.push(cls))));
  }
  for (let i = 0; i < grants; i++) {
    gate.release();
    await Promise.resolve();
    await Promise.resolve();
  }
  gate.close();
  await Promise.all(pending);
  return order;
}

describe("FairGate", () => {
  it("grants immediately while permits are free", async () => {
    const gate = new FairGate(2, { a: 1 });
    await expect(gate.acquire("a")).resolves.toBe(true);
    await expect(gate.acquire("a")).resolves.toBe(true);
    expect(gate.used).toBe(2);
  });

  it("serves waiting classes by smooth weighted round robin", async () => {
    const gate = new FairGate(1, { paid: 4, free: 1 });
    await gate.acquire("paid");
    const order = await grantOrder(gate, { paid: 10, free: 10 }, 10);
    expect(order).toEqual(["paid", "paid", "free", "paid", "paid", "paid", "paid", "free", "paid", "paid"]);
  });

  it("is work-conserving: a class alone gets every permit", async () => {
    const gate = new FairGate(1, { paid: 4, free: 1 });
    await gate.acquire("paid");
    expect(await grantOrder(gate, { free: 5 }, 5)).toEqual(["free", "free", "free", "free", "free"]);
  });

  it("never starves the light class: its share matches its weight over a long run", async () => {
    const gate = new FairGate(1, { paid: 9, free: 1 });
    await gate.acquire("paid");
    const order = await grantOrder(gate, { paid: 1000, free: 1000 }, 1000);
    expect(order.filter((c) => c === "free")).toHaveLength(100);
    // and the gap between two free grants is never more than 10
    let gap = 0;
    for (const c of order) {
      gap = c === "free" ? 0 : gap + 1;
      expect(gap).toBeLessThan(10);
    }
  });

  it("close() answers every waiter with false", async () => {
    const gate = new FairGate(1, { a: 1 });
    await gate.acquire("a");
    const waiting = gate.acquire("a");
    gate.close();
    await expect(waiting).resolves.toBe(false);
    await expect(gate.acquire("a")).resolves.toBe(false);
  });

  it("force() takes a permit beyond the limit and release() gives it back", async () => {
    const gate = new FairGate(1, { a: 1 });
    await gate.acquire("a");
    gate.force();
    expect(gate.used).toBe(2);
    gate.release();
    gate.release();
    expect(gate.used).toBe(0);
  });
});
