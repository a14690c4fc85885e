import { describeRaw, rawAround, type RawMeasure } from "./baseline";

const measure = (
  addPerSec: number,
  processPerSec: number,
  clientMs: number,
  redisMs: number,
): RawMeasure => ({
  addPerSec,
  processPerSec,
  added: 1_000,
  clientMs,
  redisMs,
  cpuPerJobMs: clientMs + redisMs,
});

describe("raw BullMQ next to a run", () => {
  const before = measure(30_000, 15_000, 0.06, 0.07);
  const after = measure(40_000, 19_000, 0.05, 0.06);

  it("divides by the mean of the measures taken right before and right after the run", () => {
    const { mean } = rawAround(before, after);
    expect(mean.addPerSec).toBe(35_000);
    expect(mean.processPerSec).toBe(17_000);
    expect(mean.clientMs).toBeCloseTo(0.055, 10);
    expect(mean.redisMs).toBeCloseTo(0.065, 10);
    expect(mean.cpuPerJobMs).toBeCloseTo(0.12, 10);
    expect(mean.added).toBe(2_000);
  });

  it("says in the figure's note what was measured on each side", () => {
    const around = rawAround(before, after);
    expect(describeRaw(around, "add")).toBe(
      "raw BullMQ measured right before (30000/s) and right after (40000/s) this run: the mean, 35000/s",
    );
    expect(describeRaw(around, "process")).toContain("(15000 jobs/s)");
    expect(describeRaw(around, "cpu")).toContain("the mean, 0.120 ms");
  });
});
