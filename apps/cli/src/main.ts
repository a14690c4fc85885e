import { Command, InvalidArgumentError } from "commander";
import { runDemo } from "./demo";
import { CliError, get, submit, target, watch } from "./jobs";

/** `switchyard`: the demo, and the job API from a terminal (commander parses the arguments). */
function program(): Command {
  const p = new Command("switchyard")
    .description("Switchyard: a queue-backed gateway for LLM work")
    .option("--url <url>", "the API (default $SWITCHYARD_URL or http://127.0.0.1:8080)")
    .option("--key <key>", "your tenant key (default $SWITCHYARD_KEY)")
    .showHelpAfterError();
  const globals = () => p.opts<{ url?: string; key?: string }>();
  const out = (s: string) => console.log(s);

  p.command("demo")
    .description(
      "start Redis (unless REDIS_URL answers), the mock provider, the API and a worker on config/demo.yaml, submit jobs for both demo tenants and print a summary",
    )
    .option("--once", "exit when the jobs are done instead of running until Ctrl-C")
    .option(
      "--jobs <n>",
      "how many jobs to submit",
      (v) => {
        const n = Number(v);
        if (!Number.isInteger(n) || n < 1 || n > 100_000)
          throw new InvalidArgumentError("a whole number from 1 to 100000");
        return n;
      },
      40,
    )
    .action(async (o: { once?: boolean; jobs: number }) => {
      process.exit(await runDemo({ once: o.once ?? false, jobs: o.jobs }));
    });

  p.command("submit")
    .description("submit a job: a prompt, or a whole /v1/jobs body with --file")
    .argument("[prompt]", "the user message")
    .option("-m, --model <model>", "model or route alias", "gpt-4o-mini")
    .option("-p, --priority <priority>", "high, normal or low")
    .option("--max-tokens <n>", "max_tokens")
    .option("--system <text>", "a system message first")
    .option("-f, --file <path>", "a JSON request body ('-' reads stdin)")
    .option("-w, --wait", "wait for the end and print the job")
    .option("-t, --text", "with --wait: print only the answer's text")
    .action(async (prompt: string | undefined, o: Parameters<typeof submit>[2]) => {
      await submit(target(globals()), prompt, o, out);
    });

  p.command("get")
    .description("print a job")
    .argument("<id>", "the job id")
    .option("-w, --wait <seconds>", "long-poll up to this long for its end")
    .option("-t, --text", "print only the answer's text once it succeeded")
    .action(async (id: string, o: { wait?: string; text?: boolean }) => {
      await get(target(globals()), id, o, out);
    });

  p.command("watch")
    .description("follow a job live: every status change until it ends, then its answer")
    .argument("<id>", "the job id")
    .action(async (id: string) => {
      await watch(target(globals()), id, out, (s) => process.stdout.write(s));
    });
  return p;
}

program()
  .parseAsync(process.argv)
  .catch((err: unknown) => {
    if (err instanceof CliError) {
      console.error(`switchyard: ${err.message}`);
      process.exitCode = err.exitCode;
      return;
    }
    console.error(`switchyard: ${(err as Error).message}`);
    process.exitCode = 1;
  });
