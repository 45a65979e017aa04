/**
 * Which rows answer which part of a bucketed question (`stats`, a chart's buckets), on both stores. The rollup
 * tiers (store/tiers.ts) hold a row per series and minute, hour or day, exact from their horizon on; raw rows are
 * all there from the readings horizon on. A question of buckets of `every` ms over [from, to) is planned as
 * segments of time, each answered by one source:
 *
 * - whole buckets inside [from, to) at or above the horizon of the widest tier whose width divides `every` come
 *   from that tier (a day bucket from one `rollup_1d` row, a 15-minute bucket from fifteen `rollup_1m` rows);
 * - the rest (buckets cut by `from` or `to`, buckets below that tier's horizon) from raw rows, where raw rows are
 *   all there;
 * - below the readings horizon, from whatever tier is still exact there, widest first; a cut edge there is rounded
 *   up to the width of the tier that answers it, so a tier row counts when its `start` is in [from, to). Where no
 *   tier is exact either, nothing answers: that part of the answer is empty.
 *
 * A bucket may so be answered by several segments in turn (a cut bucket by a finer tier and raw rows): each gives
 * its part of the bucket and {@link mergeParts} adds them up. Whenever every raw row of [from, to) is there, the
 * answer is what raw rows alone give, the mean aside: a sum of sums may differ from the sum of the values in the
 * last bits.
 */
import { TIERS, type TierTable } from "./tiers.js";

/** Where a segment is answered from: raw rows or a tier. */
export type Source = "readings" | TierTable;

/** A span of time [from, to), epoch ms, answered by one source. A tier's segment is made of whole tier rows. */
export interface Segment {
  readonly source: Source;
  readonly from: number;
  readonly to: number;
}

/** The `horizons` table: per source, the time below which retention may have deleted rows (0: none deleted). */
export type Horizons = Readonly<Record<Source, number>>;

/** Nothing deleted anywhere: raw rows answer whatever no tier does. */
export const NO_HORIZONS: Horizons = { readings: 0, rollup_1m: 0, rollup_1h: 0, rollup_1d: 0 };

/** Horizons from the `horizons` table's (name, ts) rows; a name missing is 0. */
export function horizonsOf(rows: Iterable<readonly [string, number]>): Horizons {
  const h: Record<Source, number> = { ...NO_HORIZONS };
  for (const [name, ts] of rows) if (name in h) h[name as Source] = ts;
  return h;
}

/** The width of the narrowest tier still exact at `t` (holding the whole minute, hour or day of `t`), if any. */
export function narrowestTierAt(t: number, horizons: Horizons): number | undefined {
  return TIERS.find((tier) => floorTo(t, tier.ms) >= exactFrom(horizons[tier.table], tier.ms))?.ms;
}

interface Tier {
  readonly table: TierTable;
  readonly ms: number;
  readonly exactFrom: number;
}

const floorTo = (t: number, ms: number): number => t - (((t % ms) + ms) % ms);
const ceilTo = (t: number, ms: number): number => {
  const down = floorTo(t, ms);
  return down === t ? t : down + ms;
};
/** The first time from which a tier is exact: its first whole row at or above its horizon, never below 0. */
const exactFrom = (horizon: number, ms: number): number => Math.max(0, ceilTo(horizon, ms));

/**
 * The segments answering buckets of `every` ms over [from, to) (either may be the safe-integer bounds standing for
 * all time), in time order, none empty, none overlapping. Parts no source can answer are left out.
 */
export function planBuckets(from: number, to: number, every: number, horizons: Horizons): Segment[] {
  // Widest first. Tier buckets start at multiples of their width from the epoch: negative times stay raw.
  const tiers: Tier[] = TIERS.filter((t) => every % t.ms === 0)
    .map((t) => ({ table: t.table, ms: t.ms, exactFrom: exactFrom(horizons[t.table], t.ms) }))
    .reverse();
  /** `t` rounded up to the width of the finest tier exact at `t`; `t` itself where none is. */
  const roundUp = (t: number): number => {
    for (let i = tiers.length - 1; i >= 0; i--) {
      const tier = tiers[i] as Tier;
      if (floorTo(t, tier.ms) >= tier.exactFrom) return ceilTo(t, tier.ms);
    }
    return t;
  };
  // Raw rows are all there from the readings horizon on. A horizon inside a tier row is moved up to that row's
  // end, the row answering below it: no reading is lost between the two.
  const rawFrom = horizons.readings > 0 ? roundUp(horizons.readings) : Number.NEGATIVE_INFINITY;

  /** [a, b) from the tiers alone, widest first, each where it covers whole rows of its own and is exact. */
  const fromTiers = (a: number, b: number, i: number): Segment[] => {
    const tier = tiers[i];
    if (a >= b || tier === undefined) return [];
    const lo = Math.max(ceilTo(a, tier.ms), tier.exactFrom);
    const hi = floorTo(b, tier.ms);
    if (lo >= hi) return fromTiers(a, b, i + 1);
    return [...fromTiers(a, lo, i + 1), { source: tier.table, from: lo, to: hi }, ...fromTiers(hi, b, i + 1)];
  };
  /** [a, b) from raw rows where they are all there, from the tiers below that, edges rounded up. */
  const rest = (a: number, b: number): Segment[] => {
    if (a >= b) return [];
    if (a >= horizons.readings) return [{ source: "readings", from: a, to: b }];
    const rawPart: Segment[] =
      Math.max(a, rawFrom) < b ? [{ source: "readings", from: Math.max(a, rawFrom), to: b }] : [];
    return [...fromTiers(roundUp(a), Math.min(b < rawFrom ? roundUp(b) : b, rawFrom), 0), ...rawPart];
  };

  const widest = tiers[0];
  if (widest === undefined) return rest(from, to);
  const lo = Math.max(ceilTo(from, every), ceilTo(widest.exactFrom, every));
  const hi = floorTo(to, every);
  if (lo >= hi) return rest(from, to);
  return [...rest(from, lo), { source: widest.table, from: lo, to: hi }, ...rest(hi, to)];
}

/** One source's part of a bucket: its readings' count, min, max, sum and newest value. */
export interface BucketPart {
  readonly start: number;
  readonly count: number;
  readonly min: number;
  readonly max: number;
  readonly sum: number;
  readonly last: number;
}

/**
 * Parts of buckets, read segment after segment of a plan (so in time order, the parts of one bucket one after the
 * other), as whole buckets: counts, minima, maxima and sums added up; `last` from the latest part, whose readings
 * are all newer.
 */
export function* mergeParts(parts: Iterable<BucketPart>): Generator<BucketPart> {
  let cur: BucketPart | undefined;
  for (const p of parts) {
    if (cur !== undefined && cur.start === p.start) cur = merged(cur, p);
    else {
      if (cur !== undefined) yield cur;
      cur = p;
    }
  }
  if (cur !== undefined) yield cur;
}

/** {@link mergeParts} of parts read asynchronously (PostgreSQL). */
export async function* mergePartsAsync(parts: AsyncIterable<BucketPart>): AsyncGenerator<BucketPart> {
  let cur: BucketPart | undefined;
  for await (const p of parts) {
    if (cur !== undefined && cur.start === p.start) cur = merged(cur, p);
    else {
      if (cur !== undefined) yield cur;
      cur = p;
    }
  }
  if (cur !== undefined) yield cur;
}

const merged = (a: BucketPart, b: BucketPart): BucketPart => ({
  start: a.start,
  count: a.count + b.count,
  min: Math.min(a.min, b.min),
  max: Math.max(a.max, b.max),
  sum: a.sum + b.sum,
  last: b.last,
});
