import { RecentIds } from "./recent-ids";

describe("RecentIds", () => {
  it("keeps an id for its time and hands it out once", () => {
    const ids = new RecentIds(10_000, 100);
    ids.add("a", 1_000);
    expect(ids.take("a", 11_000)).toBe(true);
    expect(ids.take("a", 11_000)).toBe(false);
    ids.add("b", 1_000);
    expect(ids.take("b", 11_001)).toBe(false);
    expect(ids.take("never", 1_000)).toBe(false);
  });

  it("drops what is older than its time, and the oldest beyond its count", () => {
    const ids = new RecentIds(10_000, 3);
    ids.add("old", 0);
    ids.add("x", 5_000);
    // "old" is past its time when "y" comes: it goes.
    ids.add("y", 10_001);
    expect(ids.size).toBe(2);
    expect(ids.take("old", 10_001)).toBe(false);
    ids.add("z", 10_002);
    // Added again, "x" is the newest: the count drops "y", the oldest, instead.
    ids.add("x", 10_003);
    ids.add("w", 10_004);
    expect(ids.size).toBe(3);
    expect(ids.take("y", 10_004)).toBe(false);
    for (const id of ["z", "x", "w"]) expect(ids.take(id, 10_004)).toBe(true);
    expect(ids.size).toBe(0);
  });
});
