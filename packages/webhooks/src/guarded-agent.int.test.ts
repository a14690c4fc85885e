import { request } from "undici";
import { Receiver } from "@switchyard/testing";
import { AddressPolicy } from "./address-policy";
import { BlockedTargetError, guardedAgent, type Resolver } from "./guarded-agent";

/** Real connections to a real local server: the guard must stop them before the server sees anything. */
describe("guarded agent (connect-time address check)", () => {
  let receiver: Receiver;
  let port: string;
  beforeAll(async () => {
    receiver = await Receiver.start();
    port = new URL(receiver.url).port;
  });
  afterAll(() => receiver.close());

  const post = async (url: string, policy: AddressPolicy, resolver?: Resolver) => {
    const agent = guardedAgent(policy, { connectTimeoutMs: 2_000, ...(resolver ? { resolver } : {}) });
    try {
      const res = await request(url, { method: "POST", body: "{}", dispatcher: agent });
      await res.body.dump();
      return res.statusCode;
    } catch (err) {
      const cause = (err as { cause?: unknown }).cause;
      return cause instanceof BlockedTargetError ? cause : err;
    } finally {
      await agent.close();
    }
  };

  it("refuses loopback by IP literal and by host name, and the server never hears of it", async () => {
    const before = receiver.requests.length;
    const literal = await post(`http://127.0.0.1:${port}/a`, new AddressPolicy());
    expect(literal).toBeInstanceOf(BlockedTargetError);
    const named = await post(`http://localhost:${port}/a`, new AddressPolicy());
    expect(named).toBeInstanceOf(BlockedTargetError);
    expect(String(named)).toMatch(/localhost resolves to/);
    expect(receiver.requests.length).toBe(before);
  });

  it("connects when the allowlist permits the address", async () => {
    expect(await post(`http://127.0.0.1:${port}/ok`, AddressPolicy.fromEnv("127.0.0.1/32"))).toBe(200);
    expect(receiver.received("/ok")).toHaveLength(1);
  });

  it("connects to exactly the address it checked (pinned), and refuses a name that resolves inside", async () => {
    // "rebind.test" exists only in this resolver: reaching the server proves the socket used the
    // checked answer, not a second lookup of its own.
    const toLoopback: Resolver = async () => [{ address: "127.0.0.1", family: 4 }];
    const allow = AddressPolicy.fromEnv("127.0.0.1/32");
    expect(await post(`http://rebind.test:${port}/pinned`, allow, toLoopback)).toBe(200);
    expect(receiver.received("/pinned")).toHaveLength(1);
    const mixed: Resolver = async () => [
      { address: "93.184.216.34", family: 4 },
      { address: "127.0.0.1", family: 4 },
    ];
    expect(await post(`http://rebind.test:${port}/mixed`, new AddressPolicy(), mixed)).toBeInstanceOf(
      BlockedTargetError,
    );
    expect(receiver.received("/mixed")).toHaveLength(0);
  });

  it("refuses IPv4-embedding IPv6 answers and literals at connect time", async () => {
    for (const address of ["::7f00:1", "::ffff:7f00:1", "64:ff9b::7f00:1", "2002:7f00:1::1"]) {
      const embedding: Resolver = async () => [{ address, family: 6 }];
      const refused = await post(`http://embed.test:${port}/embed`, new AddressPolicy(), embedding);
      expect(refused).toBeInstanceOf(BlockedTargetError);
    }
    expect(await post(`http://[::127.0.0.1]:${port}/embed`, new AddressPolicy())).toBeInstanceOf(
      BlockedTargetError,
    );
    expect(receiver.received("/embed")).toHaveLength(0);
  });
});
