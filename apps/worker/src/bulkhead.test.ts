import { Bulkhead } from "./bulkhead";

describe("Bulkhead", () => {
  it("admits up to max_concurrent, queues up to max_waiting in order, refuses the rest", async () => {
    const b = new Bulkhead(2, 1);
    const r1 = await b.enter();
    const r2 = await b.enter();
    expect(typeof r1).toBe("function");
    expect(typeof r2).toBe("function");
    const third = b.enter();
    expect(await b.enter()).toBe("full");
    expect([b.inUse, b.queued]).toEqual([2, 1]);
    if (typeof r1 === "function") r1();
    const r3 = await third;
    expect(typeof r3).toBe("function");
    expect([b.inUse, b.queued]).toEqual([2, 0]);
    if (typeof r2 === "function") r2();
    if (typeof r3 === "function") {
      r3();
      r3(); // a second release is a no-op
    }
    expect(b.inUse).toBe(0);
  });

  it("lets an aborted waiter leave the line without taking a place", async () => {
    const b = new Bulkhead(1, 5);
    const r1 = await b.enter();
    const ctrl = new AbortController();
    const waiting = b.enter(ctrl.signal);
    ctrl.abort();
    expect(await waiting).toBe("full");
    expect(b.queued).toBe(0);
    if (typeof r1 === "function") r1();
    expect(b.inUse).toBe(0);
  });

  it("takes new limits live: a larger cap lets waiters in, a smaller one admits nobody until calls end", async () => {
    const b = new Bulkhead(1, 5);
    const r1 = await b.enter();
    const w1 = b.enter();
    const w2 = b.enter();
    expect([b.inUse, b.queued]).toEqual([1, 2]);
    b.resize(2, 5);
    expect(typeof (await w1)).toBe("function");
    expect([b.inUse, b.queued]).toEqual([2, 1]);
    b.resize(1, 1);
    if (typeof r1 === "function") r1();
    // Still at the new cap of 1 (w1 runs): w2 keeps waiting.
    expect([b.inUse, b.queued]).toEqual([1, 1]);
    expect(await b.enter()).toBe("full");
    const r2 = await w1;
    if (typeof r2 === "function") r2();
    expect(typeof (await w2)).toBe("function");
    expect([b.inUse, b.queued]).toEqual([1, 0]);
  });
});
