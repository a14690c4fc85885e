import { runDemo } from "./demo";

const USAGE = `usage: switchyard demo [--once] [--jobs N]

  demo    start Redis (unless REDIS_URL answers), the mock provider, the API and a worker on
          config/demo.yaml, submit jobs for both demo tenants and print a summary
  --once  exit when the jobs are done instead of running until Ctrl-C
  --jobs  how many jobs to submit (default 40)`;

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  if (command !== "demo") {
    console.error(USAGE);
    return command === undefined || command === "--help" ? 0 : 2;
  }
  const jobsAt = rest.indexOf("--jobs");
  const jobs = jobsAt >= 0 ? Number(rest[jobsAt + 1]) : 40;
  if (!Number.isInteger(jobs) || jobs < 1 || jobs > 100_000) {
    console.error("--jobs takes a whole number from 1 to 100000");
    return 2;
  }
  return runDemo({ once: rest.includes("--once"), jobs });
}

main(process.argv.slice(2)).then((code) => process.exit(code));
