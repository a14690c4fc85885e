import { paced, type PaceClock } from "./load";

/** A clock that moves only when paced() sleeps: by the time asked plus `late` ms. */
function explicitClock(late = 0): PaceClock & { t: number; sleeps: number[] } {
  const clock = {
    t: 1_000,
    sleeps: [] as number[],
    now: () => clock.t,
    sleep: (ms: number) => {
      clock.sleeps.push(ms);
      clock.t += ms + late;
      return Promise.resolve();
    },
  };
  return clock;
}

describe("paced", () => {
  it("starts each task at its due time and sleeps once per task, until the next one is due", async () => {
    const clock = explicitClock();
    const started: [number, number][] = [];
    await paced(200, 5, async (i) => void started.push([i, clock.t - 1_000]), clock);
    // 200 a second: one every 5 ms, task 0 at once.
    expect(started).toEqual([
      [0, 0],
      [1, 5],
      [2, 10],
      [3, 15],
      [4, 20],
    ]);
    // A 1-ms poll would have slept 20 times for this schedule.
    expect(clock.sleeps).toEqual([5, 5, 5, 5]);
  });

  it("starts every task whose time has come after a late wake-up, never one before its time", async () => {
    const clock = explicitClock(7);
    const started: [number, number][] = [];
    await paced(200, 6, async (i) => void started.push([i, clock.t - 1_000]), clock);
    expect(started.map(([i]) => i)).toEqual([0, 1, 2, 3, 4, 5]);
    for (const [i, at] of started) expect(at).toBeGreaterThanOrEqual(i * 5);
    // Woken at 12: tasks 1 and 2 are due (5 and 10), then it sleeps until 15, wakes at 22 (3 and 4)...
    expect(started).toEqual([
      [0, 0],
      [1, 12],
      [2, 12],
      [3, 22],
      [4, 22],
      [5, 32],
    ]);
    expect(clock.sleeps).toEqual([5, 3, 3]);
  });

  it("sleeps at least a millisecond at rates above 1,000 a second, and resolves once every task has ended", async () => {
    const clock = explicitClock();
    const started: [number, number][] = [];
    let ended = 0;
    await paced(
      4_000,
      8,
      async (i) => {
        started.push([i, clock.t - 1_000]);
        await Promise.resolve();
        ended++;
      },
      clock,
    );
    expect(ended).toBe(8);
    // One every 0.25 ms: task 0 at once, 1-4 (due 0.25 to 1) at 1 ms, 5-7 at 2 ms.
    expect(started.map(([, at]) => at)).toEqual([0, 1, 1, 1, 1, 2, 2, 2]);
    expect(clock.sleeps).toEqual([1, 1]);
  });
});
