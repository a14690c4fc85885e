import { limiterScenario } from "./limiter";
import { machineFacts, writeResults, type ScenarioResult } from "./results";

/**
 * `pnpm bench [--quick] [--scenario name] [--duration seconds]`: runs the benchmark scenarios on
 * this machine, starting everything they need, and writes bench/results/<time>-<name>.json/.md.
 */
const SCENARIOS = ["limiter"] as const;

function arg(name: string): string | undefined {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : undefined;
}

async function main(): Promise<void> {
  const quick = process.argv.includes("--quick");
  const wanted = arg("scenario") ?? "all";
  if (wanted !== "all" && !(SCENARIOS as readonly string[]).includes(wanted)) {
    console.error(`unknown scenario '${wanted}'; choose one of: ${SCENARIOS.join(", ")}, all`);
    process.exit(2);
  }
  const duration = Number(arg("duration") ?? (quick ? 150 : 240));
  const log = (s: string) => console.log(s);
  const facts = machineFacts();
  log(
    `bench on ${String(facts.cores)} cores, Node ${String(facts.node)}, commit ${String(facts.commit)}${quick ? " (quick)" : ""}`,
  );
  const results: ScenarioResult[] = [];
  if (wanted === "all" || wanted === "limiter")
    results.push(await limiterScenario({ durationS: duration, latencyMs: 200, log }));
  const md = writeResults(wanted === "all" ? "all" : wanted, results, facts);
  log(`\n${md}`);
}

main().catch((err: Error) => {
  console.error(`bench failed: ${err.message}`);
  process.exit(1);
});
