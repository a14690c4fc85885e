import { SlotGate } from "./slot-gate";

describe("SlotGate", () => {
  it("grants up to its slots, then serves waiters in order as slots come back", async () => {
    const gate = new SlotGate(2);
    expect(await gate.acquire()).toBe(true);
    expect(await gate.acquire()).toBe(true);
    const order: number[] = [];
    const third = gate.acquire().then((g) => order.push(3) && g);
    const fourth = gate.acquire().then((g) => order.push(4) && g);
    expect(gate.used).toBe(2);
    gate.release();
    expect(await third).toBe(true);
    gate.release();
    expect(await fourth).toBe(true);
    expect(order).toEqual([3, 4]);
    expect(gate.used).toBe(2);
  });

  it("takes only free slots without waiting, and none once closed", async () => {
    const gate = new SlotGate(4);
    expect(await gate.acquire()).toBe(true);
    expect(gate.tryAcquire(2)).toBe(2);
    expect(gate.tryAcquire(5)).toBe(1);
    expect(gate.used).toBe(4);
    expect(gate.tryAcquire(1)).toBe(0);
    const waiter = gate.acquire();
    gate.release();
    expect(await waiter).toBe(true);
    expect(gate.used).toBe(4);
    gate.release();
    gate.close();
    expect(gate.tryAcquire(1)).toBe(0);
  });

  it("answers false to every waiter when it closes, and to later callers", async () => {
    const gate = new SlotGate(1);
    await gate.acquire();
    const waiting = gate.acquire();
    gate.close();
    expect(await waiting).toBe(false);
    expect(await gate.acquire()).toBe(false);
  });

  it("takes a new slot count live: more slots serve waiters at once", async () => {
    const gate = new SlotGate(1);
    expect(await gate.acquire()).toBe(true);
    const waiter = gate.acquire();
    gate.resize(2);
    expect(await waiter).toBe(true);
    expect(gate.used).toBe(2);
    gate.resize(1);
    gate.release();
    const next = gate.acquire();
    let granted = false;
    void next.then(() => (granted = true));
    await Promise.resolve();
    expect(granted).toBe(false);
    gate.release();
    expect(await next).toBe(true);
  });
});
