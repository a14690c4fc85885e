import { Redis } from "ioredis";
import type { ProviderConfig } from "@switchyard/core";
import { Keys } from "@switchyard/queue";
import { testRedisUrl, uniquePrefix } from "@switchyard/testing";
import { KeyPool, type ReserveResult } from "./key-pool";
import { denied, FREE, granted, PAID, provider, T0, type Tenant } from "./key-pool.test-util";

/**
 * Reservations asked for in the same turn of the event loop go to Redis as one call
 * (KeyPool.reserve, pool-reserve.lua's reserve_many): the same answers and the same state in
 * Redis as that many calls one after the other; one call per clock; failures per reservation.
 * Runs with the pool as a function library and as an EVAL script.
 */
describe.each(["function", "script"] as const)(
  "reservations asked for in the same turn (as a %s)",
  (mode) => {
    const redis = new Redis(testRedisUrl());
    afterAll(() => redis.disconnect());

    /** Every hash and zset under a prefix, named without it; a slot's member (its reservation's random id) left out. */
    async function stateUnder(p: string): Promise<Record<string, unknown>> {
      const out: Record<string, unknown> = {};
      for (const key of (await redis.keys(`${p}:kp:*`)).sort()) {
        const name = key.slice(p.length);
        const type = await redis.type(key);
        if (type === "hash") out[name] = await redis.hgetall(key);
        else if (type === "zset") {
          const scores = await redis.zrange(key, 0, -1, "WITHSCORES");
          out[name] = scores.filter((_, i) => i % 2 === 1);
        } else out[name] = type;
      }
      return out;
    }
    /** A pool on its own client that counts the script calls it sends. */
    function countedPool(p: string): {
      prefix: string;
      pool: KeyPool;
      scriptCalls: () => number;
      reset: () => void;
      done: () => void;
    } {
      const client = new Redis(testRedisUrl());
      let calls = 0;
      const send = client.sendCommand.bind(client);
      client.sendCommand = (command, stream) => {
        if (["fcall", "evalsha", "eval"].includes(command.name.toLowerCase())) calls++;
        return send(command, stream);
      };
      return {
        prefix: p,
        pool: new KeyPool(client, new Keys(p), mode),
        scriptCalls: () => calls,
        reset: () => (calls = 0),
        done: () => client.disconnect(),
      };
    }
    const shared = provider(
      [
        { id: "a", secret: "sk-a", rpm: 2 },
        { id: "b", secret: "sk-b", rpm: 3, max_concurrency: 2 },
      ],
      { shares: [{ tier: "free", fraction: 0.5 }] },
    );
    const perModel = provider([{ id: "k", secret: "sk-k", models: { m: { rpm: 2 }, n: { tpm: 50 } } }]);
    type Ask = { p: ProviderConfig; tenant: Tenant; model: string; tin: number; returning: boolean };
    const a = (p: ProviderConfig, tenant: Tenant, model: string, tin: number, returning = false): Ask => ({
      p,
      tenant,
      model,
      tin,
      returning,
    });
    // In this order: grants and denials on both providers, the free tier past its share.
    const asks: Ask[] = [
      a(shared, PAID, "m", 10),
      a(perModel, PAID, "n", 20),
      a(shared, FREE, "m", 10),
      a(shared, FREE, "m", 10),
      a(shared, FREE, "m", 10),
      a(perModel, PAID, "n", 20),
      a(shared, PAID, "m", 10, true),
      a(perModel, FREE, "m", 5),
      a(perModel, FREE, "m", 5),
      a(perModel, FREE, "m", 5),
      a(shared, PAID, "m", 10),
      a(shared, PAID, "m", 10),
    ];
    const ask = (on: KeyPool, x: Ask, now: number) =>
      on.reserve({
        provider: x.p,
        model: x.model,
        tenant: x.tenant,
        tokensIn: x.tin,
        tokensOut: 10,
        returning: x.returning,
        now,
      });
    /** What a caller sees of an answer (a reservation's id is random). */
    const seen = (r: ReserveResult) =>
      r.granted
        ? { ...r.reservation, key: r.reservation.key.id, id: undefined, provider: r.reservation.provider.id }
        : r;

    it("answers them in one script call, as that many calls one after the other would", async () => {
      // Several providers, models, tenants and shares in one call; grants and denials, with the
      // denials' appointments.
      const inTurn = countedPool(uniquePrefix());
      const inRow = countedPool(uniquePrefix());
      try {
        // Each pool's program loaded first (a first call loads it: a call more).
        const warm = provider([{ id: "w", secret: "sk-w" }]);
        for (const x of [inTurn, inRow]) {
          await ask(x.pool, a(warm, PAID, "m", 1), T0);
          x.reset();
        }
        const together = await Promise.all(asks.map((x) => ask(inTurn.pool, x, T0)));
        const apart: ReserveResult[] = [];
        for (const x of asks) apart.push(await ask(inRow.pool, x, T0));
        expect(inTurn.scriptCalls()).toBe(1);
        expect(inRow.scriptCalls()).toBe(asks.length);
        expect(together.map(seen)).toEqual(apart.map(seen));
        // Both kinds of answer are there, and the denials have their spaced appointments.
        expect(together.filter((r) => r.granted)).toHaveLength(7);
        const denials = together.flatMap((r) => (r.granted ? [] : [[r.reason, r.retryAt - T0]]));
        // The share's third and the n model's second (tpm 50) wait for the window; the shared
        // keys' last two get appointments a call's spacing apart (60 s / 5 rpm).
        expect(denials).toEqual([
          ["share", 61_500],
          ["limited", 61_500],
          ["limited", 61_500],
          ["limited", 91_500],
          ["limited", 103_500],
        ]);
        // And Redis holds the same windows, slots, books and states.
        expect(await stateUnder(inTurn.prefix)).toEqual(await stateUnder(inRow.prefix));
      } finally {
        inTurn.done();
        inRow.done();
      }
    });

    it("answers each by its own clock when their clocks differ", async () => {
      const x = countedPool(uniquePrefix());
      try {
        const one = provider([{ id: "a", secret: "sk-a", rpm: 1 }]);
        const at = (now: number) => ask(x.pool, a(one, PAID, "m", 1, true), now);
        granted(await at(T0));
        x.reset();
        const [early, late] = await Promise.all([at(T0 + 10), at(T0 + 61_500)]);
        expect(denied(early!).retryAt).toBe(T0 + 61_500);
        granted(late!);
        expect(x.scriptCalls()).toBe(2);
      } finally {
        x.done();
      }
    });

    it("fails only the reservation that fails in Redis, and makes the others", async () => {
      const x = countedPool(uniquePrefix());
      try {
        const one = provider([{ id: "a", secret: "sk-a", rpm: 10 }]);
        const other = provider([{ id: "b", secret: "sk-b", rpm: 10 }]);
        const at = (p: ProviderConfig) => ask(x.pool, a(p, PAID, "m", 1), T0);
        granted(await at(one));
        granted(await at(other));
        // Provider one's key state is no longer a hash: its reservation's HMGET fails.
        const state = new Keys(x.prefix).keyState("up", "a");
        await redis.del(state);
        await redis.set(state, "not a hash");
        x.reset();
        const settled = await Promise.allSettled([at(other), at(one), at(other)]);
        expect(x.scriptCalls()).toBe(1);
        expect(settled.map((r) => r.status)).toEqual(["fulfilled", "rejected", "fulfilled"]);
        const [before, failed, after] = settled;
        expect(failed?.status === "rejected" && String(failed.reason)).toMatch(/WRONGTYPE/);
        for (const r of [before, after])
          if (r?.status === "fulfilled") expect(granted(r.value).key.id).toBe("b");
        const [view] = await x.pool.inspect(other, T0 + 1);
        expect(view?.usage.requests).toBe(3);
      } finally {
        x.done();
      }
    });

    it("fails every reservation of a call that fails", async () => {
      const x = countedPool(uniquePrefix());
      const one = provider([{ id: "a", secret: "sk-a", rpm: 10 }]);
      const at = () => ask(x.pool, a(one, PAID, "m", 1), T0);
      granted(await at());
      x.done();
      const settled = await Promise.allSettled([at(), at(), at()]);
      expect(settled.map((r) => r.status)).toEqual(["rejected", "rejected", "rejected"]);
    });
  },
);
