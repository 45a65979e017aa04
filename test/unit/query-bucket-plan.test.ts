import { describe, expect, it } from "vitest";
import { mulberry32 as random } from "../../simulators/model.js";
import {
  type BucketPart,
  type Horizons,
  mergeParts,
  NO_HORIZONS,
  narrowestTierAt,
  planBuckets,
} from "../../store/bucket-plan.js";
import { TIERS } from "../../store/tiers.js";

const S = 1_000;
const MIN = 60 * S;
const H = 60 * MIN;
const D = 24 * H;
const ALL = [Number.MIN_SAFE_INTEGER, Number.MAX_SAFE_INTEGER] as const;
const T0 = Date.UTC(2026, 0, 1);

const plan = (from: number, to: number, every: number, h: Partial<Horizons> = {}) =>
  planBuckets(from, to, every, { ...NO_HORIZONS, ...h }).map((s) => [s.source, s.from, s.to]);

describe("planBuckets: which source answers which part of a bucketed question", () => {
  it("answers whole buckets from the widest tier whose width divides the bucket, cut buckets from raw rows", () => {
    const from = T0 + 10 * H + 7 * MIN + 3 * S;
    const to = T0 + 3 * D + 5 * H;
    expect(plan(from, to, D)).toEqual([
      ["readings", from, T0 + D],
      ["rollup_1d", T0 + D, T0 + 3 * D],
      ["readings", T0 + 3 * D, to],
    ]);
    expect(plan(from, to, 15 * MIN)[1]).toEqual(["rollup_1m", T0 + 10 * H + 15 * MIN, T0 + 3 * D + 5 * H]);
    expect(plan(from, to, 2 * H)[1]).toEqual(["rollup_1h", T0 + 12 * H, T0 + 3 * D + 4 * H]);
  });

  it("answers buckets of less than a minute, or not a whole number of minutes, from raw rows alone", () => {
    expect(plan(T0, T0 + D, 30 * S)).toEqual([["readings", T0, T0 + D]]);
    expect(plan(T0, T0 + D, 90 * S)).toEqual([["readings", T0, T0 + D]]);
  });

  it("answers all time from the tier, raw rows only before the epoch and in the bucket of the end of time", () => {
    const end = ALL[1] - (ALL[1] % D);
    expect(plan(...ALL, D)).toEqual([
      ["readings", ALL[0], 0],
      ["rollup_1d", 0, end],
      ["readings", end, ALL[1]],
    ]);
  });

  it("answers buckets below the tier's horizon from raw rows while raw rows are all there", () => {
    expect(plan(T0, T0 + 4 * D, D, { rollup_1d: T0 + 2 * D + 1 })).toEqual([
      ["readings", T0, T0 + 3 * D],
      ["rollup_1d", T0 + 3 * D, T0 + 4 * D],
    ]);
  });

  it("beyond raw retention answers from the tiers, finer ones where a wider one is gone", () => {
    // Raw rows kept for a day (horizon mid-minute), the minute tier for a day too, the day tier for two, the hour
    // tier for three.
    const now = T0 + 10 * D + 10 * H + 30 * MIN + 5 * S;
    const h = { readings: now - D, rollup_1m: now - D, rollup_1d: now - 2 * D, rollup_1h: now - 3 * D };
    expect(plan(T0 + 6 * D, now, D, h)).toEqual([
      ["rollup_1h", T0 + 7 * D + 11 * H, T0 + 9 * D],
      ["rollup_1d", T0 + 9 * D, T0 + 10 * D],
      ["readings", T0 + 10 * D, now],
    ]);
  });

  it("answers the minute of the raw horizon from the minute tier, so nothing is lost or counted twice", () => {
    const h = { readings: T0 + 2 * D + 10 * H + 30 * MIN + 5 * S, rollup_1d: T0 + 3 * D };
    expect(plan(T0 + D, T0 + 3 * D, D, h)).toEqual([
      ["rollup_1h", T0 + D, T0 + 2 * D + 10 * H],
      ["rollup_1m", T0 + 2 * D + 10 * H, T0 + 2 * D + 10 * H + 31 * MIN],
      ["readings", T0 + 2 * D + 10 * H + 31 * MIN, T0 + 3 * D],
    ]);
  });

  it("rounds an edge beyond raw retention up to the width of the tier answering it", () => {
    const h = { readings: T0 + 5 * D };
    const from = T0 + D + 3 * H + 20 * MIN + 1;
    const to = T0 + 2 * D + 3 * H + 20 * MIN + 1;
    expect(plan(from, to, D, h)).toEqual([
      ["rollup_1m", T0 + D + 3 * H + 21 * MIN, T0 + D + 4 * H],
      ["rollup_1h", T0 + D + 4 * H, T0 + 2 * D + 3 * H],
      ["rollup_1m", T0 + 2 * D + 3 * H, T0 + 2 * D + 3 * H + 21 * MIN],
    ]);
  });

  it("leaves out what neither raw rows nor any tier still hold", () => {
    expect(
      plan(T0, T0 + 10 * D, D, {
        readings: T0 + 8 * D,
        rollup_1m: T0 + 8 * D,
        rollup_1h: T0 + 8 * D,
        rollup_1d: T0 + 5 * D,
      }),
    ).toEqual([["rollup_1d", T0 + 5 * D, T0 + 10 * D]]);
    expect(plan(T0, T0 + 10 * D, 30 * S, { readings: T0 + 8 * D })).toEqual([
      ["readings", T0 + 8 * D, T0 + 10 * D],
    ]);
  });
});

describe("narrowestTierAt", () => {
  it("names the narrowest tier still holding the whole minute, hour or day of a time", () => {
    const t = T0 + 5 * D + 3 * H + 20 * MIN + 7 * S;
    expect(narrowestTierAt(t, NO_HORIZONS)).toBe(MIN);
    expect(narrowestTierAt(t, { ...NO_HORIZONS, rollup_1m: t })).toBe(H);
    expect(narrowestTierAt(t, { ...NO_HORIZONS, rollup_1m: t - 7 * S })).toBe(MIN);
    expect(narrowestTierAt(t, { ...NO_HORIZONS, rollup_1m: t, rollup_1h: t })).toBe(D);
    expect(narrowestTierAt(t, { readings: 0, rollup_1m: t, rollup_1h: t, rollup_1d: t })).toBeUndefined();
  });
});

describe("mergeParts", () => {
  it("adds up the parts of a bucket and keeps the last value of the latest part", () => {
    const part = (start: number, count: number, min: number, max: number, last: number): BucketPart => ({
      start,
      count,
      min,
      max,
      sum: count * last,
      last,
    });
    const merged = [
      ...mergeParts([part(0, 1, 5, 5, 5), part(0, 2, 1, 3, 2), part(H, 1, 9, 9, 9), part(H, 1, 0, 0, 0)]),
    ];
    expect(merged).toEqual([
      { start: 0, count: 3, min: 1, max: 5, sum: 9, last: 2 },
      { start: H, count: 2, min: 0, max: 9, sum: 9, last: 0 },
    ]);
  });
});

/**
 * The plan carried out on a model store: readings with integer values (so sums are exact), tiers recomputed from
 * every reading, raw rows below the readings horizon and tier rows below a tier's horizon deleted.
 */
describe("planBuckets on a model store against a recomputation from every reading", () => {
  const rnd = random(27);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rnd() * xs.length)] as T;
  const readings = Array.from({ length: 3_000 }, () => ({
    ts: T0 + Math.floor(rnd() * 6 * D),
    value: Math.floor(rnd() * 100),
  }));
  const tierRows = new Map(
    TIERS.map((t) => {
      const rows = new Map<number, BucketPart>();
      for (const r of [...readings].sort((a, b) => a.ts - b.ts)) {
        const start = r.ts - (r.ts % t.ms);
        const had = rows.get(start);
        rows.set(start, {
          start,
          count: (had?.count ?? 0) + 1,
          min: Math.min(had?.min ?? r.value, r.value),
          max: Math.max(had?.max ?? r.value, r.value),
          sum: (had?.sum ?? 0) + r.value,
          last: r.value,
        });
      }
      return [t.table, rows] as const;
    }),
  );
  const buckets = (rs: readonly { ts: number; value: number }[], every: number) => [
    ...mergeParts(
      [...rs]
        .sort((a, b) => a.ts - b.ts)
        .map((r) => ({
          start: r.ts - (r.ts % every),
          count: 1,
          min: r.value,
          max: r.value,
          sum: r.value,
          last: r.value,
        })),
    ),
  ];
  const answer = (from: number, to: number, every: number, h: Horizons) => {
    const parts: BucketPart[] = [];
    for (const seg of planBuckets(from, to, every, h)) {
      if (seg.source === "readings") {
        const raw = readings.filter((r) => r.ts >= Math.max(seg.from, h.readings) && r.ts < seg.to);
        parts.push(...buckets(raw, every));
      } else {
        const rows = [...(tierRows.get(seg.source)?.values() ?? [])]
          .filter((r) => r.start >= Math.max(seg.from, h[seg.source]) && r.start < seg.to)
          .sort((a, b) => a.start - b.start);
        for (const r of rows) parts.push({ ...r, start: r.start - (r.start % every) });
      }
    }
    return [...mergeParts(parts)];
  };
  const time = () => T0 - D + Math.floor(rnd() * 8 * D);
  const EVERY = [30 * S, MIN, 5 * MIN, 15 * MIN, H, 2 * H, D, 2 * D];

  it("gives what raw rows give whenever they are all there, whatever the tiers' horizons", () => {
    for (let i = 0; i < 400; i++) {
      const [from, to] = [time(), time()].sort((a, b) => a - b) as [number, number];
      const every = pick(EVERY);
      const h: Horizons = {
        readings: rnd() < 0.5 ? 0 : from - Math.floor(rnd() * D),
        rollup_1m: time(),
        rollup_1h: time(),
        rollup_1d: time(),
      };
      expect(answer(from, to, every, h)).toEqual(
        buckets(
          readings.filter((r) => r.ts >= from && r.ts < to),
          every,
        ),
      );
    }
  });

  it("whatever the horizons, reads only rows that are there, each once, within the range rounded up", () => {
    for (let i = 0; i < 2_000; i++) {
      const [from, to] = [time(), time()].sort((a, b) => a - b) as [number, number];
      const every = pick(EVERY);
      const h: Horizons = { readings: time(), rollup_1m: time(), rollup_1h: time(), rollup_1d: time() };
      let at = from;
      for (const s of planBuckets(from, to, every, h)) {
        const ms = TIERS.find((t) => t.table === s.source)?.ms ?? 1;
        expect(s.from).toBeGreaterThanOrEqual(at);
        expect(s.to).toBeGreaterThan(s.from);
        expect(s.from).toBeGreaterThanOrEqual(h[s.source]);
        expect([s.from % ms, s.to % ms]).toEqual([0, 0]);
        if (s.source === "readings") expect(s.to).toBeLessThanOrEqual(to);
        else expect(s.to).toBeLessThan(to + ms);
        at = s.to;
      }
    }
  });

  it("beyond raw retention gives every reading ever stored from the edges rounded up to a minute", () => {
    for (let i = 0; i < 400; i++) {
      const [from, to] = [time(), time()].sort((a, b) => a - b) as [number, number];
      const every = pick(EVERY);
      const horizon = time();
      const h: Horizons = { ...NO_HORIZONS, readings: horizon };
      const rawFrom = every % MIN === 0 ? horizon + ((MIN - (horizon % MIN)) % MIN) : horizon;
      const round = (t: number) => (t < rawFrom && every % MIN === 0 ? t + ((MIN - (t % MIN)) % MIN) : t);
      const lo = every % MIN === 0 ? round(from) : Math.max(from, horizon);
      const expected = readings.filter((r) => r.ts >= lo && r.ts < round(to));
      expect(answer(from, to, every, h)).toEqual(buckets(expected, every));
    }
  });
});
