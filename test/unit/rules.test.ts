import { describe, expect, it } from "vitest";
import {
  ID_PATTERN,
  ISO_WITH_OFFSET,
  idFrom,
  MIN_TS,
  parseTimestamp,
  type Reading,
  readingProblem,
} from "../../schemas/index.js";

const GOOD: Reading = {
  device_id: "greenhouse-7",
  sensor: "temperature",
  ts: Date.UTC(2026, 0, 15),
  value: 21.5,
  unit: "°C",
  seq: 7,
  gateway_id: "gw-1",
  received_at: Date.UTC(2026, 0, 15),
};

describe("a decoded reading the contract forbids", () => {
  it("is accepted when its ids and value keep the rules, at the edges of the id rules", () => {
    expect(readingProblem(GOOD)).toBeUndefined();
    expect(readingProblem({ ...GOOD, device_id: "a", sensor: "A.b_c-d:9" })).toBeUndefined();
    expect(readingProblem({ ...GOOD, device_id: "d".repeat(128), value: -0 })).toBeUndefined();
  });

  it.each([
    ["an empty device id", { device_id: "" }, "device_id breaks the id rules"],
    ["a device id of 129 characters", { device_id: "d".repeat(129) }, "device_id breaks the id rules"],
    ["a device id with a slash", { device_id: "a/b" }, "device_id breaks the id rules"],
    ["a device id with a space", { device_id: "green house" }, "device_id breaks the id rules"],
    ["a device id ending in a newline", { device_id: "gh-7\n" }, "device_id breaks the id rules"],
    ["an empty sensor", { sensor: "" }, "sensor breaks the id rules"],
    ["a sensor with an MQTT wildcard", { sensor: "temp+" }, "sensor breaks the id rules"],
    ["a sensor of 129 characters", { sensor: "s".repeat(129) }, "sensor breaks the id rules"],
    ["a NaN value", { value: Number.NaN }, "value is not a finite number"],
    ["an infinite value", { value: Number.POSITIVE_INFINITY }, "value is not a finite number"],
    ["a negative infinite value", { value: Number.NEGATIVE_INFINITY }, "value is not a finite number"],
    [
      "a unit holding a NUL",
      { unit: "C\u0000" },
      "unit contains a NUL character (U+0000), which the stores cannot keep",
    ],
    [
      "a tag value holding a NUL",
      { tags: { site: "a\u0000b" } },
      "tag site contains a NUL character (U+0000), which the stores cannot keep",
    ],
  ])("is refused for %s, with the reason", (_name, change, reason) => {
    expect(readingProblem({ ...GOOD, ...change })).toBe(reason);
  });

  it("is refused for its device id first when several rules are broken", () => {
    expect(readingProblem({ ...GOOD, device_id: "", sensor: "", value: Number.NaN })).toBe(
      "device_id breaks the id rules",
    );
    expect(readingProblem({ ...GOOD, sensor: "", value: Number.NaN })).toBe("sensor breaks the id rules");
  });
});

describe("ids", () => {
  it("are 1 to 128 of letters, digits, . _ - :", () => {
    for (const id of ["a", "Z9", "gh-7.north_2:a", "x".repeat(128)]) expect(ID_PATTERN.test(id)).toBe(true);
    for (const id of ["", "x".repeat(129), "a b", "a/b", "a#", "é", "a\n"]) {
      expect(ID_PATTERN.test(id)).toBe(false);
    }
  });
});

describe("a time of measurement", () => {
  it("is epoch milliseconds as a safe integer, or ISO-8601 with an offset", () => {
    expect(parseTimestamp(1_764_072_000_000)).toBe(1_764_072_000_000);
    expect(parseTimestamp("2026-11-25T11:00:00Z")).toBe(Date.UTC(2026, 10, 25, 11));
    expect(parseTimestamp("2026-11-25T13:00:00.250+02:00")).toBe(Date.UTC(2026, 10, 25, 11, 0, 0, 250));
    expect(parseTimestamp("2026-11-25T06:00-0500")).toBe(Date.UTC(2026, 10, 25, 11));
  });

  it.each([
    ["a fraction of a millisecond", 1.5, /must be an integer/],
    ["an unsafe integer", 2 ** 53, /must be an integer/],
    ["a boolean", true, /must be an integer/],
    ["an object", { ms: 1 }, /must be an integer/],
    ["digits in a string", "1764072000000", /string must be ISO-8601 with a UTC offset/],
    ["an ISO time without offset", "2026-11-25T11:00:00", /string must be ISO-8601 with a UTC offset/],
    ["a date alone", "2026-11-25", /string must be ISO-8601 with a UTC offset/],
    ["a month 13", "2026-13-45T11:00:00Z", /^"2026-13-45T11:00:00Z" names month 13, which does not exist/],
  ])("is refused for %s, with a reason that follows the field name", (_name, raw, reason) => {
    expect(parseTimestamp(raw)).toMatch(reason);
  });

  it.each([
    [
      "30 February",
      "2025-02-30T12:00:00Z",
      /names 2025-02-30, a day that does not exist \(2025-02 has 28 days\)/,
    ],
    [
      "31 April",
      "2025-04-31T00:00:00Z",
      /names 2025-04-31, a day that does not exist \(2025-04 has 30 days\)/,
    ],
    [
      "29 February of a year that is not a leap year",
      "2025-02-29T00:00:00Z",
      /2025-02-29, a day that does not/,
    ],
    [
      "29 February of 1900 (divisible by 100, not 400)",
      "1900-02-29T00:00:00Z",
      /1900-02-29, a day that does not/,
    ],
    ["day 00", "2025-05-00T00:00:00Z", /2025-05-00, a day that does not exist/],
    ["month 00", "2025-00-10T00:00:00Z", /names month 00, which does not exist/],
    ["hour 24", "2025-06-15T24:00:00Z", /names hour 24, which does not exist \(00 to 23\)/],
    ["minute 60", "2025-06-15T10:60:00Z", /names minute 60, which does not exist/],
    ["second 60 (a leap second)", "2016-12-31T23:59:60Z", /names second 60, which does not exist/],
    ["an offset of 24 hours", "2025-06-15T10:00:00+24:00", /has an offset that does not exist/],
    ["an offset minute 60", "2025-06-15T10:00:00+01:60", /has an offset that does not exist/],
    [
      "a tenth of a millisecond",
      "2025-06-15T10:00:00.1234Z",
      /has \.1234: fractional seconds finer than milli/,
    ],
    ["a nanosecond", "2025-06-15T10:00:00.000000001Z", /has \.000000001: fractional seconds finer than/],
  ])("is refused, never shifted, when it names %s", (_name, raw, reason) => {
    const answer = parseTimestamp(raw);
    expect(answer).toMatch(reason);
    expect(answer).toMatch(
      new RegExp(`^${JSON.stringify(raw).replaceAll(".", "\\.").replaceAll("+", "\\+")} `),
    );
  });

  it.each([
    ["29 February of a leap year", "2024-02-29T00:00:00Z", Date.UTC(2024, 1, 29)],
    ["29 February of 2000 (divisible by 400)", "2000-02-29T12:00:00Z", Date.UTC(2000, 1, 29, 12)],
    ["31 December at 23:59:59.999", "2025-12-31T23:59:59.999Z", Date.UTC(2025, 11, 31, 23, 59, 59, 999)],
    [
      "milliseconds written with a trailing zero",
      "2025-06-15T10:00:00.1230Z",
      Date.UTC(2025, 5, 15, 10, 0, 0, 123),
    ],
    [
      "milliseconds written as microseconds",
      "2025-06-15T10:00:00.123000Z",
      Date.UTC(2025, 5, 15, 10, 0, 0, 123),
    ],
    [
      "nanoseconds that are whole milliseconds",
      "2025-06-15T12:00:00.120000000+02:00",
      Date.UTC(2025, 5, 15, 10, 0, 0, 120),
    ],
    ["a tenth of a second", "2025-06-15T10:00:00.5Z", Date.UTC(2025, 5, 15, 10, 0, 0, 500)],
    ["an offset of 23:59", "2025-06-15T23:59:00+23:59", Date.UTC(2025, 5, 15, 0, 0, 0)],
  ])("is accepted for %s", (_name, raw, ts) => {
    expect(parseTimestamp(raw)).toBe(ts);
  });

  it("has the ISO pattern that the parser uses, and 2000-01-01 as the earliest bound", () => {
    expect(ISO_WITH_OFFSET.test("2026-11-25T11:00Z")).toBe(true);
    expect(ISO_WITH_OFFSET.test("2026-11-25 11:00Z")).toBe(false);
    expect(MIN_TS).toBe(Date.parse("2000-01-01T00:00:00Z"));
  });
});

describe("an id made from a free text, such as a host name", () => {
  it("keeps a text that is already an id", () => {
    expect(idFrom("gw-1.north:a_b")).toBe("gw-1.north:a_b");
  });

  it("replaces each character the id rules refuse with - and cuts it to 128 characters", () => {
    expect(idFrom("my host/é#1")).toBe("my-host---1");
    const long = idFrom(`${"h".repeat(200)} x`);
    expect(long).toBe("h".repeat(128));
    expect(ID_PATTERN.test(long)).toBe(true);
  });

  it("is empty for an empty text, so the caller picks a fallback", () => {
    expect(idFrom("")).toBe("");
  });
});
