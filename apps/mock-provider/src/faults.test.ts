import { complete, promptTokens } from "./completion";
import { FaultCounter, parseFault, parseStandingFault } from "./faults";

describe("mock faults", () => {
  it("parses markers", () => {
    expect(parseFault("hi [[mock:status=500,times=2,id=x]] there")).toEqual({
      status: 500,
      times: 2,
      id: "x",
    });
    expect(parseFault("[[mock:hang]]")).toEqual({ hang: true });
    expect(parseFault("[[mock:status=429,retry_after=2]]")).toEqual({ status: 429, retryAfter: 2 });
    expect(parseFault("[[mock:status=429,retry_after=3,hint=body]]")).toEqual({
      status: 429,
      retryAfter: 3,
      hint: "body",
    });
    expect(parseFault("[[mock:truncated]]")).toEqual({ truncated: true });
    expect(parseFault("no marker")).toBeUndefined();
  });
  it("parses standing faults and names what is wrong", () => {
    expect(parseStandingFault({ format: "anthropic", fault: "status=529" })).toEqual({
      format: "anthropic",
      fault: { status: 529 },
    });
    expect(parseStandingFault({ format: "bedrock", fault: "status=500" })).toMatch(/format must be one of/);
    expect(parseStandingFault({ format: "openai" })).toMatch(/fault must be a spec string/);
  });
  it("fires a times-limited fault only that many times per id", () => {
    const c = new FaultCounter();
    const f = { status: 500, times: 2, id: "x" };
    expect([c.shouldFire(f), c.shouldFire(f), c.shouldFire(f)]).toEqual([true, true, false]);
    expect(c.shouldFire({ status: 500 })).toBe(true);
  });
  it("answers deterministically and counts tokens", () => {
    const msgs = [
      { role: "system", text: "be brief" },
      { role: "user", text: "[[mock:delay=5]] a b c" },
    ];
    expect(complete(msgs)).toEqual({ text: "Echo: a b c", finishReason: "stop", outputTokens: 4 });
    expect(complete(msgs, 2)).toEqual({ text: "Echo: a", finishReason: "length", outputTokens: 2 });
    expect(promptTokens([{ role: "user", text: "12345678" }])).toBe(6);
  });
});
