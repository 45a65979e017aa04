import { describe, expect, it } from "vitest";
import { type Fill, fillBuckets } from "../../query/fill.js";
import type { Bucket } from "../../store/queries.js";

const H = 3_600_000;

function bucket(sensor: string, hour: number, value: number): Bucket {
  return {
    device_id: "d",
    sensor,
    start: hour * H,
    count: 2,
    min: value - 1,
    max: value + 1,
    mean: value,
    last: value,
  };
}

async function* from<T>(items: readonly T[]): AsyncGenerator<T> {
  yield* items;
}

async function fill(buckets: readonly Bucket[], mode: Fill, range: { from?: number; to?: number } = {}) {
  const out: Bucket[] = [];
  for await (const b of fillBuckets(from(buckets), { fill: mode, every: H, ...range })) out.push(b);
  return out;
}

const summary = (bs: readonly Bucket[]) => bs.map((b) => [b.sensor, b.start / H, b.count, b.mean]);

describe("gap filling", () => {
  const data = [bucket("a", 1, 10), bucket("a", 4, 40), bucket("b", 2, 7)];

  it("none passes the buckets with readings through, and nothing else", async () => {
    expect(await fill(data, "none", { from: 0, to: 6 * H })).toEqual(data);
  });

  it("null adds an empty bucket for every start of the range, per series", async () => {
    const out = await fill(data, "null", { from: 0, to: 6 * H });
    expect(summary(out)).toEqual([
      ["a", 0, 0, null],
      ["a", 1, 2, 10],
      ["a", 2, 0, null],
      ["a", 3, 0, null],
      ["a", 4, 2, 40],
      ["a", 5, 0, null],
      ["b", 0, 0, null],
      ["b", 1, 0, null],
      ["b", 2, 2, 7],
      ["b", 3, 0, null],
      ["b", 4, 0, null],
      ["b", 5, 0, null],
    ]);
    expect(out[0]).toEqual({
      device_id: "d",
      sensor: "a",
      start: 0,
      count: 0,
      min: null,
      max: null,
      mean: null,
      last: null,
    });
  });

  it("without a range, a series runs from its first bucket to its last", async () => {
    expect(summary(await fill(data, "null"))).toEqual([
      ["a", 1, 2, 10],
      ["a", 2, 0, null],
      ["a", 3, 0, null],
      ["a", 4, 2, 40],
      ["b", 2, 2, 7],
    ]);
  });

  it("the range starts at the bucket holding from and ends at the one holding to - 1", async () => {
    const out = await fill([bucket("a", 2, 5)], "null", { from: 1.5 * H, to: 3 * H + 1 });
    expect(summary(out).map(([, hour]) => hour)).toEqual([1, 2, 3]);
  });

  it("prev carries the aggregates of the bucket before, and nothing before the first", async () => {
    const out = await fill([bucket("a", 1, 10), bucket("a", 3, 30)], "prev", { from: 0, to: 5 * H });
    expect(out.map((b) => [b.start / H, b.count, b.min, b.max, b.mean, b.last])).toEqual([
      [0, 0, null, null, null, null],
      [1, 2, 9, 11, 10, 10],
      [2, 0, 9, 11, 10, 10],
      [3, 2, 29, 31, 30, 30],
      [4, 0, 29, 31, 30, 30],
    ]);
  });

  it("linear interpolates each aggregate by time between its neighbours, null where one is missing", async () => {
    const out = await fill([bucket("a", 1, 10), bucket("a", 4, 40)], "linear", { from: 0, to: 6 * H });
    expect(out.map((b) => [b.start / H, b.count, b.min, b.mean, b.last])).toEqual([
      [0, 0, null, null, null],
      [1, 2, 9, 10, 10],
      [2, 0, 19, 20, 20],
      [3, 0, 29, 30, 30],
      [4, 2, 39, 40, 40],
      [5, 0, null, null, null],
    ]);
  });

  it("never mixes series: a gap is filled from the same series only", async () => {
    const out = await fill([bucket("a", 1, 10), bucket("b", 3, 30)], "prev", { from: 0, to: 4 * H });
    expect(out.filter((b) => b.sensor === "b").map((b) => b.mean)).toEqual([null, null, null, 30]);
  });

  it("streams a long gap without building it first", async () => {
    const gen = fillBuckets(from([bucket("a", 0, 1), bucket("a", 10_000_000, 2)]), {
      fill: "null",
      every: H,
    });
    let n = 0;
    for await (const _ of gen) if (++n === 1_000) break;
    expect(n).toBe(1_000);
  });
});
