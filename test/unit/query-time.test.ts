import { describe, expect, it } from "vitest";
import { parseBucket, parseTime, rangeProblem } from "../../query/time.js";

const NOW = Date.UTC(2026, 0, 31, 12, 0, 0);

describe("query times", () => {
  it("reads ISO-8601 with an offset, Z or hours, with or without seconds and fractions", () => {
    expect(parseTime("2026-01-31T12:00:00Z", NOW)).toBe(NOW);
    expect(parseTime("2026-01-31T14:00:00+02:00", NOW)).toBe(NOW);
    expect(parseTime("2026-01-31T07:00-0500", NOW)).toBe(NOW);
    expect(parseTime("2026-01-31T12:00:00.250Z", NOW)).toBe(NOW + 250);
  });

  it("reads a date alone as midnight UTC", () => {
    expect(parseTime("2026-01-31", NOW)).toBe(Date.UTC(2026, 0, 31));
  });

  it("reads epoch milliseconds", () => {
    expect(parseTime("1769860800000", NOW)).toBe(1_769_860_800_000);
    expect(parseTime("0", NOW)).toBe(0);
  });

  it("reads now and times relative to now", () => {
    expect(parseTime("now", NOW)).toBe(NOW);
    expect(parseTime("-15m", NOW)).toBe(NOW - 15 * 60_000);
    expect(parseTime("-24h", NOW)).toBe(NOW - 24 * 3_600_000);
    expect(parseTime("-7d", NOW)).toBe(NOW - 7 * 86_400_000);
    expect(parseTime("-30s", NOW)).toBe(NOW - 30_000);
    expect(parseTime("-2w", NOW)).toBe(NOW - 14 * 86_400_000);
  });

  it.each([
    ["a time without an offset, whose meaning depends on the reader's zone", "2026-01-31T12:00:00"],
    ["a date that does not exist", "2026-02-30"],
    ["words", "yesterday"],
    ["a relative time without a unit", "-15"],
    ["a relative time into the future", "+15m"],
    ["an empty string", ""],
    ["a negative epoch", "-1000"],
    ["an epoch past the last date JavaScript holds", "9999999999999999"],
  ])("refuses %s", (_what, raw) => {
    expect(() => parseTime(raw, NOW)).toThrow(/ISO-8601/);
  });

  it("complains about a range that ends before it starts, and accepts an empty one", () => {
    expect(rangeProblem(NOW, NOW - 1)).toMatch(/is after/);
    expect(rangeProblem(NOW, NOW)).toBeUndefined();
    expect(rangeProblem(undefined, NOW)).toBeUndefined();
  });
});

describe("bucket widths", () => {
  it("reads the contract's widths", () => {
    expect(["1m", "5m", "15m", "1h", "1d"].map(parseBucket)).toEqual([
      60_000, 300_000, 900_000, 3_600_000, 86_400_000,
    ]);
  });

  it("accepts other widths that divide a day", () => {
    expect(parseBucket("30m")).toBe(1_800_000);
    expect(parseBucket("6h")).toBe(21_600_000);
  });

  it.each(["7m", "5h", "2d", "0m", "1s", "1", "hour", "", "1.5h"])("refuses %j", (raw) => {
    expect(() => parseBucket(raw)).toThrow(/divide a day/);
  });
});
