import type { Redis } from "ioredis";
import { moveToActive } from "bullmq/dist/cjs/scripts/moveToActive-11.js";
import { moveToFinished } from "bullmq/dist/cjs/scripts/moveToFinished-14.js";
import { version as bullmqVersion } from "bullmq/dist/cjs/version.js";
import { z } from "zod";
import { transitionOutcome, type JobStore, type TransitionCall } from "./job-store";
import { LuaLibrary, programFunction, type LuaMode, type LuaProgram } from "./lua-library";
import beginLua from "./lua/begin.lua";
import finishLua from "./lua/finish.lua";
import transitionLua from "./lua/transition.lua";

/**
 * BullMQ's per-job scripts as Redis function libraries. BullMQ 6.7.0 runs its Lua as EVAL
 * scripts, and each of its scripts carries its helpers (moveToFinished: 37 functions), which
 * Redis makes again at every call. Loaded as a library (lua-library.ts), BullMQ's own code runs
 * unchanged, its helpers made once: a job's completion costs ~42,000 fewer Redis instructions
 * (callgrind, raw BullMQ: 495,083 -> 452,694 per job).
 *
 * How BullMQ is made to call them (internals of the pinned version; bullmq-functions.int.test.ts
 * fails when they change): BullMQ runs a script as `client["<name>:<version>"](args)`, and
 * defines that command on the client only when the client has none (RedisConnection's
 * loadCommands). A connection given to useBullmqFunctions has both commands already, running
 * the libraries; BullMQ's Queue and Worker objects made on it use them. Another connection
 * (BullMQ's own duplicate for blocking waits) keeps BullMQ's EVAL scripts.
 */
const SCRIPTS: readonly BullScript[] = [moveToFinished, moveToActive];

export interface BullScript {
  name: string;
  content: string;
  keys: number;
}

/**
 * A BullMQ script as a program: its helper definitions (every top-level `local function`, or
 * `local name = function`, before the first other statement) are the shared part, made once; the
 * rest is the body. `local rcall = redis.call` becomes a local that begin.lua sets at every call
 * (a library is loaded where redis.call does not exist yet), with KEYS and ARGV (BullMQ's helpers
 * take their keys and arguments as parameters; its main code reads KEYS and ARGV).
 */
export function bullmqProgram(script: BullScript): LuaProgram {
  const lines = script.content.split("\n");
  let comment = false;
  let main = -1;
  let rcall = -1;
  for (let i = 0; i < lines.length && main < 0; i++) {
    const line = lines[i] ?? "";
    if (comment) {
      if (line.includes("]]")) comment = false;
      continue;
    }
    if (line.startsWith("--[[")) {
      comment = !line.includes("]]");
      continue;
    }
    if (line === "" || /^\s/.test(line) || line.startsWith("--") || /^(end|\]\])\b/.test(line)) continue;
    if (/^local rcall = redis\.call\s*$/.test(line)) {
      rcall = i;
      continue;
    }
    if (/^local function \w+\s*\(/.test(line) || /^local \w+ = function\s*\(/.test(line)) continue;
    main = i;
  }
  if (main < 0 || rcall < 0) throw new Error(`BullMQ's ${script.name} script is not shaped as expected`);
  const helpers = lines.slice(0, main);
  helpers[rcall] = "local rcall";
  return {
    family: `sy_bullmq_${script.name}`,
    shared: `${helpers.join("\n")}\n${beginLua}`,
    bodies: [lines.slice(main).join("\n")],
  };
}

type ScriptArg = string | number | Buffer;
const asArg = (v: unknown): ScriptArg => {
  if (typeof v === "string" || typeof v === "number" || Buffer.isBuffer(v)) return v;
  if (v === undefined || v === null) return ""; // as ioredis sends them
  throw new Error(`a BullMQ script argument of type ${typeof v}`);
};

/**
 * A succeeded job's final transition and BullMQ's completion of its job as one program
 * (lua/finish.lua): moveToFinished's helpers and begin.lua shared, transition.lua and
 * moveToFinished's main code each made a function of it, finish.lua the one op. With `before`
 * (the key pool's program), a step of that program can run first in the same call (FoldedStep).
 */
export function finishProgram(before?: LuaProgram): LuaProgram {
  const bull = bullmqProgram(moveToFinished);
  return {
    family: "sy_finish",
    shared: [
      bull.shared,
      `local function transition(KEYS, ARGV)\n${transitionLua}\nend`,
      `local function completeBullJob()\n${bull.bodies[0] ?? ""}\nend`,
      before ? `local before = ${programFunction(before)}` : "local before = nil",
    ].join("\n"),
    bodies: [finishLua],
  };
}

const finishReplySchema = z.tuple([z.unknown(), z.unknown()]).rest(z.unknown());

/**
 * A script call that goes first in a succeeded job's folded final write: the key pool's
 * settlement of the job's upstream call. Its keys and arguments are those of the fold's
 * `before` program; run() makes the call on its own, when the write goes without a fold, and
 * must not throw (a step's failure is its own to report).
 */
export interface FoldedStep {
  keys: readonly string[];
  args: readonly ScriptArg[];
  run(): Promise<void>;
}

interface Deferred {
  call: TransitionCall;
  step?: FoldedStep;
}

/**
 * Folds a succeeded job's final transition into BullMQ's completion of its job: one script call
 * per job instead of two (three with the key pool's settlement, which goes first in it: see
 * FoldedStep). The runner defers the transition here (defer) instead of running it; BullMQ's
 * moveToCompleted, run on a connection given this fold (useBullmqFunctions), finds it by the
 * BullMQ job's id and runs it all in one call (finishProgram). The settlement and the
 * transition go first, in the same atomic step, so nothing else changes: a record already final
 * stays so, its usage is settled once, its webhook event is written with it, the key's slot is
 * free and its window corrected by the time the job reads succeeded. A settlement that fails
 * in Redis fails alone (finish.lua catches it), as it did as a call of its own.
 *
 * A transition BullMQ never came for (its worker was closing, or a completion kept failing
 * until the worker stopped) is still pending when the job's processing ends: runPending runs it
 * (and its step) on its own then, as the runner did before. A completion call that failed
 * without an answer (a connection error: BullMQ tries again) keeps it pending, so the next try
 * carries it too.
 */
export class FinishFold {
  private readonly pending = new Map<string, Deferred>();

  /** The program whose steps may go first (the key pool's); without it, steps run apart. */
  readonly before: LuaProgram | undefined;
  /** Hears of a step that failed within a folded write (the error Redis gave). */
  readonly onStepError: ((bullJobId: string, message: string) => void) | undefined;

  constructor(
    private readonly store: Pick<JobStore, "runTransition">,
    opts: { before?: LuaProgram; onStepError?: (bullJobId: string, message: string) => void } = {},
  ) {
    this.before = opts.before;
    this.onStepError = opts.onStepError;
  }

  /** Holds `call` (and `step`) until BullMQ completes the BullMQ job `bullJobId` (or runPending). */
  defer(bullJobId: string, call: TransitionCall, step?: FoldedStep): void {
    if (step && !this.before) {
      // Nothing to fold it into: it runs now, ahead of the write, as it would have alone.
      void step.run();
      step = undefined;
    }
    this.pending.set(bullJobId, step ? { call, step } : { call });
  }

  /** What is deferred for `bullJobId`, if anything (left pending until done() says it ran). */
  deferred(bullJobId: string): Deferred | undefined {
    return this.pending.get(bullJobId);
  }

  done(bullJobId: string): void {
    this.pending.delete(bullJobId);
  }

  /** How many transitions wait for their BullMQ completion. */
  get size(): number {
    return this.pending.size;
  }

  /** Runs what is still deferred for `bullJobId` on its own (the job's processing ended). */
  async runPending(bullJobId: string): Promise<void> {
    const d = this.pending.get(bullJobId);
    if (!d) return;
    this.pending.delete(bullJobId);
    await d.step?.run();
    await this.store.runTransition(d.call.keys, d.call.args);
  }
}

/**
 * Makes BullMQ's moveToFinished and moveToActive run as function libraries on `connection`
 * (before any BullMQ object uses it). With `fold`, a completion whose job has a deferred final
 * transition runs both in one call (FinishFold). Returns the libraries (their mode, for tests).
 */
export function useBullmqFunctions(
  connection: Redis,
  registry: string,
  mode?: LuaMode,
  fold?: FinishFold,
): LuaLibrary[] {
  const finish = fold ? new LuaLibrary(connection, finishProgram(fold.before), registry, mode) : undefined;
  const libs = SCRIPTS.map((script) => {
    const lib = new LuaLibrary(connection, bullmqProgram(script), registry, mode);
    const command = `${script.name}:${bullmqVersion}`;
    const folding = script === moveToFinished ? fold : undefined;
    Object.defineProperty(connection, command, {
      configurable: true,
      writable: true,
      value: (args: unknown) => {
        const all = (Array.isArray(args) ? args : [args]).map(asArg);
        const keys = all.slice(0, script.keys).map(String);
        const rest = all.slice(script.keys);
        // moveToFinished's ARGV[1] is the job's id, ARGV[5] the target ("completed" | "failed").
        const jobId = String(rest[0] ?? "");
        const deferred = rest[4] === "completed" ? folding?.deferred(jobId) : undefined;
        if (!folding || !deferred || !finish) return lib.call(keys, rest);
        const { call, step } = deferred;
        return finish
          .call(
            [...(step?.keys ?? []), ...call.keys, ...keys],
            [
              step?.keys.length ?? 0,
              step?.args.length ?? 0,
              call.args.length,
              ...(step?.args ?? []),
              ...call.args,
              ...rest,
            ],
          )
          .then((reply) => {
            // Redis ran it all: nothing is pending any more, whatever BullMQ's answer says.
            folding.done(jobId);
            const [moved, completed, stepError] = finishReplySchema.parse(reply);
            if (typeof stepError === "string") folding.onStepError?.(jobId, stepError);
            transitionOutcome(moved);
            return completed;
          });
      },
    });
    return lib;
  });
  return finish ? [...libs, finish] : libs;
}
