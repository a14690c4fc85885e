import { rawAround, type RawMeasure } from "./baseline";
import { beforeAfterFigures, prepareBefore, roundOrder, type SideRun } from "./before-after";
import type { E2eRun } from "./e2e";
import type { Figure } from "./results";

const raw = (processPerSec: number, cpuPerJobMs: number): RawMeasure => ({
  addPerSec: 30_000,
  processPerSec,
  added: 1_000,
  clientMs: cpuPerJobMs / 2,
  redisMs: cpuPerJobMs / 2,
  cpuPerJobMs,
});

const e2e = (workers: number, perSec: number, api: number, w: number, redis: number): E2eRun => ({
  workers,
  perSec,
  done: perSec * 10,
  accepted: perSec * 10,
  elapsed: 10,
  submitSeconds: 10,
  cpu: { api, workers: w, redis },
  scriptCalls: 5,
  commands: [],
});

const value = (figures: Figure[], name: string): number | null => {
  const f = figures.find((x) => x.name === name);
  if (!f) throw new Error(`no figure '${name}' in ${figures.map((x) => x.name).join(", ")}`);
  return f.value;
};

describe("before-after", () => {
  it("runs each deployment before and after in every round, alternating which goes first", () => {
    expect(roundOrder(0, [1, 2])).toEqual([
      { side: "before", workers: 1 },
      { side: "after", workers: 1 },
      { side: "before", workers: 2 },
      { side: "after", workers: 2 },
    ]);
    expect(roundOrder(1, [1, 2]).map((r) => r.side)).toEqual(["after", "before", "after", "before"]);
  });

  it("averages each side over its runs and says what the change did", () => {
    const slow = rawAround(raw(10_000, 0.2), raw(10_000, 0.2));
    const fast = rawAround(raw(20_000, 0.1), raw(20_000, 0.1));
    const runs: SideRun[] = [
      // Before: 2.0 and 3.0 ms per job (means 2.5), in a slow and a fast stretch.
      { side: "before", workers: 1, run: e2e(1, 500, 0.5, 1.0, 0.5), around: slow },
      { side: "before", workers: 1, run: e2e(1, 700, 0.6, 1.8, 0.6), around: fast },
      // After: 0.8 and 1.2 ms per job (mean 1.0).
      { side: "after", workers: 1, run: e2e(1, 1_500, 0.2, 0.4, 0.2), around: slow },
      { side: "after", workers: 1, run: e2e(1, 1_700, 0.3, 0.5, 0.4), around: fast },
    ];
    const figures = beforeAfterFigures(runs, "547a5756d3f2aaaa");
    expect(value(figures, "jobs succeeded end to end, before, 1 worker")).toBe(600);
    expect(value(figures, "jobs succeeded end to end, after, 1 worker")).toBe(1_600);
    expect(value(figures, "CPU per job: all three, before, 1 worker")).toBeCloseTo(2.5, 10);
    expect(value(figures, "CPU per job: all three, after, 1 worker")).toBeCloseTo(1.0, 10);
    expect(value(figures, "CPU per job: workers, after, 1 worker")).toBeCloseTo(0.45, 10);
    // Each run over the raw Worker measured next to it: (1500/10000 + 1700/20000) / 2.
    expect(value(figures, "ratio to raw Worker, after, 1 worker")).toBeCloseTo(0.1175, 10);
    // (0.8/0.2 + 1.2/0.1) / 2
    expect(value(figures, "CPU per job over raw BullMQ's, after, 1 worker")).toBeCloseTo(8, 10);
    expect(value(figures, "CPU per job, before over after, 1 worker")).toBeCloseTo(2.5, 10);
    expect(value(figures, "jobs/s, after over before, 1 worker")).toBeCloseTo(1_600 / 600, 10);
    const note = figures.find((f) => f.name === "jobs succeeded end to end, before, 1 worker")?.note ?? "";
    expect(note).toContain("before (547a5756d3f2)");
    expect(note).toContain("500 jobs/s at 2.000 ms");
    expect(figures.some((f) => f.name.includes("2 workers"))).toBe(false);
  });

  it("refuses a revision the repository does not have, saying what to give", () => {
    expect(() => prepareBefore("no-such-revision-here", () => undefined)).toThrow(
      "unknown revision 'no-such-revision-here': give --against a commit of this repository",
    );
  });
});
