import { Sleepers } from "./dispatcher";

/** Resolves to whether `p` settled within a turn of the event loop. */
async function settled(p: Promise<unknown>): Promise<boolean> {
  let done = false;
  void p.then(() => (done = true));
  await new Promise((r) => setImmediate(r));
  return done;
}

describe("Sleepers", () => {
  it("lets one sleeper go per wake-up, in the order they slept", async () => {
    const s = new Sleepers(4);
    const order: number[] = [];
    const a = s.wait().then(() => order.push(1));
    const b = s.wait().then(() => order.push(2));
    s.wakeOne();
    await a;
    expect(order).toEqual([1]);
    expect(await settled(b)).toBe(false);
    s.wakeOne();
    await b;
    expect(order).toEqual([1, 2]);
  });

  it("keeps a wake-up that found nobody asleep for the next wait, up to its cap", async () => {
    const s = new Sleepers(2);
    s.wakeOne();
    s.wakeOne();
    s.wakeOne(); // over the cap: dropped
    expect(await settled(s.wait())).toBe(true);
    expect(await settled(s.wait())).toBe(true);
    expect(await settled(s.wait())).toBe(false);
  });

  it("wakes every sleeper and drops kept wake-ups on wakeAll", async () => {
    const s = new Sleepers(2);
    const sleeping = [s.wait(), s.wait()];
    s.wakeAll();
    await Promise.all(sleeping);
    s.wakeOne();
    s.wakeAll();
    expect(await settled(s.wait())).toBe(false);
  });

  it("wakes every sleeper on close, and lets every later wait go at once", async () => {
    const s = new Sleepers(2);
    const sleeping = [s.wait(), s.wait()];
    s.close();
    await Promise.all(sleeping);
    expect(await settled(s.wait())).toBe(true);
    expect(await settled(s.wait())).toBe(true);
  });
});
