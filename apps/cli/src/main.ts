import { Command, InvalidArgumentError } from "commander";
import { runDemo } from "./demo";
import { SingleBar, Presets } from "cli-progress";
import { batchCreate, batchResults, batchWatch, CliError, get, submit, target, watch } from "./jobs";

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
    .description("follow a job live (every status change, then its answer) or a batch (a progress bar)")
    .argument("<id>", "a job id, or a batch id (batch_…)")
    .action(async (id: string) => {
      if (id.startsWith("batch_")) return void (await followBatch(target(globals()), id, out));
      await watch(target(globals()), id, out, (s) => process.stdout.write(s));
    });

  const batch = p.command("batch").description("OpenAI-format batches of chat completions");
  batch
    .command("create")
    .description("upload a JSONL file of requests and run it as a batch, showing its progress")
    .argument("<file>", "one request a line: {custom_id, method: POST, url: /v1/chat/completions, body}")
    .option("--no-wait", "print the batch and exit instead of following it")
    .action(async (file: string, o: { wait: boolean }) => {
      const t = target(globals());
      const b = await batchCreate(t, file);
      for (const e of b.errors?.data ?? []) console.error(`line ${e.line ?? "?"}: ${e.code}: ${e.message}`);
      if (!o.wait) return out(JSON.stringify(b, null, 2));
      await followBatch(t, b.id, out);
    });
  batch
    .command("results")
    .description("print a finished batch's output file (or its error file)")
    .argument("<id>", "the batch id")
    .option("--errors", "the error file instead")
    .action(async (id: string, o: { errors?: boolean }) => {
      process.stdout.write(await batchResults(target(globals()), id, o.errors ?? false));
    });
  return p;
}

/** Follows a batch with a progress bar, then says how it ended and where its results are. */
async function followBatch(t: ReturnType<typeof target>, id: string, out: (s: string) => void) {
  const bar = new SingleBar(
    { format: "{bar} {value}/{total} lines | failed {failed} | {status}", hideCursor: true },
    Presets.shades_classic,
  );
  const b = await batchWatch(t, id, {
    start: (total) => bar.start(total, 0, { failed: 0, status: "validating" }),
    update: (done, payload) => bar.update(done, payload),
    stop: () => bar.stop(),
  });
  out(`${b.id} ${b.status}: ${JSON.stringify(b.request_counts)}; results: switchyard batch results ${b.id}`);
  if (b.status !== "completed") throw new CliError(`batch ${id} ended ${b.status}`, 1);
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
