import { comparedSeries } from "./prometheus";

describe("comparedSeries", () => {
  it("turns every comparison into a bool comparison, outside label matchers and strings", () => {
    expect(comparedSeries('max by (q) (x{a=~"b|c", d!="e"}) > 1000')).toBe(
      'max by (q) (x{a=~"b|c", d!="e"}) > bool 1000',
    );
    expect(comparedSeries("a / b >= 0.9")).toBe("a / b >= bool 0.9");
    expect(comparedSeries("max(x) == 2")).toBe("max(x) == bool 2");
    expect(comparedSeries("a > on (t) b and c != 0")).toBe("a > bool on (t) b and c != bool 0");
    expect(comparedSeries("a / max(b > 0) < 1")).toBe("a / max(b > bool 0) < bool 1");
    expect(comparedSeries('x{l="a>b"} > bool 1')).toBe('x{l="a>b"} > bool 1');
  });
});
