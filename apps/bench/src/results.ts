import { execFileSync } from "node:child_process";
import { mkdirSync, writeFileSync } from "node:fs";
import { cpus, totalmem } from "node:os";
import { join } from "node:path";
import { REPO_ROOT } from "@switchyard/testing";

/** One measured figure, with the goal it is read against (never a pass/fail assertion). */
export interface Figure {
  name: string;
  value: number | null;
  unit: string;
  goal?: string;
  note?: string;
}

export interface ScenarioResult {
  scenario: string;
  description: string;
  params: Record<string, unknown>;
  figures: Figure[];
  details?: Record<string, unknown>;
}

/** A figure's value in a scenario's result, by name (null when absent or not measured). */
export const figureValue = (r: ScenarioResult, name: string): number | null =>
  r.figures.find((f) => f.name === name)?.value ?? null;

/** What a benchmark's stacks are built and configured from. */
const CODE_PATHS = [
  "apps",
  "packages",
  "config",
  "patches",
  "types",
  "package.json",
  "pnpm-lock.yaml",
  "tsconfig.base.json",
];

export function machineFacts(): Record<string, unknown> {
  let commit = "unknown";
  try {
    commit = execFileSync("git", ["rev-parse", "--short", "HEAD"], { cwd: REPO_ROOT }).toString().trim();
    // Code changed and not committed (what the stacks are built and configured from; docs and
    // results aside): the figures are not that commit's, and the result says so.
    const changed = execFileSync(
      "git",
      ["status", "--porcelain", "--untracked-files=no", "--", ...CODE_PATHS],
      { cwd: REPO_ROOT },
    )
      .toString()
      .trim();
    if (changed !== "") commit += " with uncommitted changes";
  } catch {
    // not a git checkout
  }
  return {
    cores: cpus().length,
    cpu: cpus()[0]?.model ?? "unknown",
    memory_gib: Math.round(totalmem() / 2 ** 30),
    node: process.version,
    commit,
    date: new Date().toISOString(),
  };
}

const fmt = (f: Figure): string =>
  f.value === null
    ? "n/a"
    : `${Number.isInteger(f.value) ? f.value : f.value.toFixed(f.value < 10 ? 3 : 1)} ${f.unit}`;

/** Writes bench/results/<stamp>-<name>.json and .md; returns the markdown. */
export function writeResults(
  name: string,
  results: ScenarioResult[],
  facts: Record<string, unknown>,
): string {
  const dir = join(REPO_ROOT, "bench", "results");
  mkdirSync(dir, { recursive: true });
  const stamp = new Date().toISOString().replace(/[:.]/g, "-").slice(0, 19);
  const md = [
    `# Switchyard benchmark: ${name}`,
    "",
    `Machine: ${String(facts.cores)} cores (${String(facts.cpu)}), ${String(facts.memory_gib)} GiB, Node ${String(facts.node)}, commit ${String(facts.commit)}, ${String(facts.date)}`,
    "",
    ...results.flatMap((r) => [
      `## ${r.scenario}`,
      "",
      r.description,
      "",
      `Parameters: \`${JSON.stringify(r.params)}\``,
      "",
      "| figure | value | goal | note |",
      "|---|---|---|---|",
      ...r.figures.map((f) => `| ${f.name} | ${fmt(f)} | ${f.goal ?? ""} | ${f.note ?? ""} |`),
      "",
    ]),
  ].join("\n");
  writeFileSync(join(dir, `${stamp}-${name}.json`), JSON.stringify({ machine: facts, results }, null, 2));
  writeFileSync(join(dir, `${stamp}-${name}.md`), md);
  return md;
}
