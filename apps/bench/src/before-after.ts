import { execFileSync, spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { APP_NODE_OPTIONS, REPO_ROOT } from "@switchyard/testing";
import { describeRaw, rawAround, rawNextTo, type RawAround } from "./baseline";
import { cpuAll, e2eRun, workersText, type E2eRun } from "./e2e";
import { meanOf as mean, ratio, type ThroughputOpts } from "./harness";
import type { Figure, ScenarioResult } from "./results";

/**
 * Before and after in the same minutes: the e2e load against another commit's API and worker
 * (built from a clean export of it) and against this checkout's, alternated, with raw BullMQ
 * measured between every two runs. This machine's speed moves by a third within an hour, and by
 * more between hours, so a "before" figure from another day says little about what a change did;
 * runs side by side do, in whatever hour they are made.
 */

/** The code as issue 18 (per-job cost) found it: the commit before its first change. */
export const ISSUE_18_START = "547a575";

export interface BeforeTree {
  root: string;
  commit: string;
  cleanup(): void;
}

function run(cmd: string, args: string[], cwd: string, what: string): void {
  const r = spawnSync(cmd, args, { cwd, stdio: ["ignore", "inherit", "inherit"] });
  if (r.error && (r.error as NodeJS.ErrnoException).code === "ENOENT")
    throw new Error(`${cmd} is not on PATH: run the bench through 'pnpm bench', which installs it`);
  if (r.status !== 0)
    throw new Error(`${what} failed (${cmd} ${args.join(" ")} in ${cwd}, exit ${r.status})`);
}

/** Exports `rev` of this repository to a temporary folder, installs its dependencies and builds it. */
export function prepareBefore(rev: string, log: (s: string) => void): BeforeTree {
  let commit: string;
  try {
    commit = execFileSync("git", ["rev-parse", "--verify", "--quiet", `${rev}^{commit}`], {
      cwd: REPO_ROOT,
      stdio: ["ignore", "pipe", "ignore"],
    })
      .toString()
      .trim();
  } catch {
    throw new Error(`unknown revision '${rev}': give --against a commit of this repository (see git log)`);
  }
  const root = mkdtempSync(join(tmpdir(), "switchyard-before-"));
  const cleanup = () => rmSync(root, { recursive: true, force: true });
  try {
    log(`before-after: exporting ${commit.slice(0, 12)} to ${root}`);
    const tar = join(root, "export.tar");
    execFileSync("git", ["archive", "--format=tar", "-o", tar, commit], { cwd: REPO_ROOT });
    execFileSync("tar", ["-xf", tar, "-C", root]);
    rmSync(tar);
    log("before-after: installing its dependencies (pnpm install --frozen-lockfile)");
    run("pnpm", ["install", "--frozen-lockfile", "--prefer-offline"], root, "installing the older commit");
    log("before-after: building it (pnpm build)");
    run("pnpm", ["build"], root, "building the older commit");
    for (const app of ["api", "worker"]) {
      const main = join(root, "apps", app, "dist", "main.js");
      if (!existsSync(main))
        throw new Error(`${commit.slice(0, 12)} built no ${main}: is it too old for this bench?`);
    }
    return { root, commit, cleanup };
  } catch (err) {
    cleanup();
    throw err;
  }
}

export type Side = "before" | "after";

/** One run of the comparison, with raw BullMQ measured right before and right after it. */
export interface SideRun {
  side: Side;
  workers: number;
  run: E2eRun;
  around: RawAround;
}

/** The order of a round's runs: each deployment before and after, the first side alternating by round. */
export function roundOrder(round: number, deployments: number[]): { side: Side; workers: number }[] {
  const sides: Side[] = round % 2 === 0 ? ["before", "after"] : ["after", "before"];
  return deployments.flatMap((workers) => sides.map((side) => ({ side, workers })));
}

/**
 * The comparison's figures: per deployment and side, the means over the rounds (jobs/s, its ratio
 * to the raw Worker next to each run, CPU per job by process and over raw BullMQ's); then what the
 * change did: CPU per job before over after, jobs/s after over before.
 */
export function beforeAfterFigures(runs: SideRun[], commit: string): Figure[] {
  const figures: Figure[] = [];
  const deployments = [...new Set(runs.map((r) => r.workers))].sort((a, b) => a - b);
  for (const workers of deployments) {
    const tag = workersText(workers);
    const of = (side: Side) => runs.filter((r) => r.workers === workers && r.side === side);
    const summary = (side: Side) => {
      const rs = of(side);
      return {
        n: rs.length,
        perSec: mean(rs.map((r) => r.run.perSec)),
        ratio: mean(rs.map((r) => ratio(r.run.perSec, r.around.mean.processPerSec))),
        api: mean(rs.map((r) => r.run.cpu.api)),
        workers: mean(rs.map((r) => r.run.cpu.workers)),
        redis: mean(rs.map((r) => r.run.cpu.redis)),
        all: mean(rs.map((r) => cpuAll(r.run))),
        overRaw: mean(rs.map((r) => ratio(cpuAll(r.run), r.around.mean.cpuPerJobMs))),
        scripts: mean(rs.map((r) => r.run.scriptCalls)),
        runs: rs
          .map(
            (r) =>
              `${Math.round(r.run.perSec)} jobs/s at ${cpuAll(r.run)?.toFixed(3) ?? "n/a"} ms (${describeRaw(r.around, "cpu")})`,
          )
          .join("; "),
      };
    };
    const before = summary("before");
    const after = summary("after");
    for (const [side, s] of [
      ["before", before],
      ["after", after],
    ] as const) {
      const who = side === "before" ? `before (${commit.slice(0, 12)})` : "after (this checkout)";
      const suffix = `, ${side}, ${tag}`;
      figures.push(
        {
          name: `jobs succeeded end to end${suffix}`,
          value: s.perSec,
          unit: "jobs/s",
          note: `${who}: mean of ${s.n} runs: ${s.runs}`,
        },
        {
          name: `ratio to raw Worker${suffix}`,
          value: s.ratio,
          unit: "x",
          note: "each run over raw BullMQ measured right before and after it",
        },
        { name: `CPU per job: API${suffix}`, value: s.api, unit: "ms" },
        { name: `CPU per job: workers${suffix}`, value: s.workers, unit: "ms" },
        { name: `CPU per job: Redis${suffix}`, value: s.redis, unit: "ms" },
        { name: `CPU per job: all three${suffix}`, value: s.all, unit: "ms" },
        { name: `CPU per job over raw BullMQ's${suffix}`, value: s.overRaw, unit: "x" },
        { name: `Redis script calls per job${suffix}`, value: s.scripts, unit: "calls" },
      );
    }
    figures.push(
      {
        name: `CPU per job, before over after, ${tag}`,
        value: ratio(before.all, after.all),
        unit: "x",
        note: "how many times less CPU a job costs now, measured in the same minutes",
      },
      {
        name: `jobs/s, after over before, ${tag}`,
        value: ratio(after.perSec, before.perSec),
        unit: "x",
      },
    );
  }
  return figures;
}

/**
 * Runs the e2e load (mock at 0 ms) `rounds` times per deployment against `before`'s build and
 * this checkout's, alternating which goes first, with raw BullMQ measured between every two runs.
 */
export async function beforeAfterScenario(
  opts: Pick<ThroughputOpts, "redisUrl" | "durationS" | "log" | "flush"> & {
    rawDurationS: number;
    rounds: number;
    before: BeforeTree;
    rev: string;
  },
): Promise<ScenarioResult> {
  const deployments = [1, 2];
  const runs: SideRun[] = [];
  let prev = await rawNextTo(opts, "before-after, raw BullMQ first");
  let n = 0;
  const total = opts.rounds * deployments.length * 2;
  for (let round = 0; round < opts.rounds; round++) {
    for (const { side, workers } of roundOrder(round, deployments)) {
      n += 1;
      opts.log(`before-after: run ${n} of ${total} (round ${round + 1}, ${side}, ${workersText(workers)})`);
      const r = await e2eRun({
        redisUrl: opts.redisUrl,
        durationS: opts.durationS,
        workers,
        log: opts.log,
        label: `before-after, ${side}`,
        ...(side === "before" ? { appsRoot: opts.before.root } : {}),
      });
      await opts.flush();
      const next = await rawNextTo(opts, `before-after, raw BullMQ after run ${n}`);
      runs.push({ side, workers, run: r, around: rawAround(prev, next) });
      prev = next;
    }
  }
  return {
    scenario: "before-after",
    description: `The e2e load (POST to succeeded, mock at 0 ms, 100 submissions in flight for ${opts.durationS} s after a 2 s warm-up) against the API and worker of ${opts.rev} (${opts.before.commit.slice(0, 12)}, built from a clean export) and against this checkout's, with one worker process and with two: ${opts.rounds} rounds, each running every deployment before and after (which goes first alternates by round), raw BullMQ (${opts.rawDurationS} s of adds, then their processing) measured between every two runs. The mock, the load generator and the processes' Node options (${APP_NODE_OPTIONS}, itself one of issue 18's changes) are this checkout's for both sides, so the before side gets that change too. Figures are means over the rounds.`,
    params: {
      against: opts.rev,
      commit: opts.before.commit,
      rounds: opts.rounds,
      duration_s: opts.durationS,
      workers: deployments,
      raw_duration_s: opts.rawDurationS,
    },
    details: {
      runs: runs.map((r) => ({
        side: r.side,
        workers: r.workers,
        jobs_per_s: r.run.perSec,
        cpu: r.run.cpu,
        script_calls: r.run.scriptCalls,
        raw_cpu_per_job_ms: r.around.mean.cpuPerJobMs,
        raw_process_per_s: r.around.mean.processPerSec,
      })),
    },
    figures: beforeAfterFigures(runs, opts.before.commit),
  };
}
