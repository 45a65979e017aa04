/**
 * `stats` and `series` of one series as both stores answer them: the plan (store/bucket-plan.ts) says which source
 * answers which span of time, a store's {@link BucketReader} reads each span, and the parts are added up here.
 */
import {
  type BucketPart,
  type Horizons,
  mergePartsAsync,
  narrowestTierAt,
  planBuckets,
  type Source,
} from "./bucket-plan.js";
import {
  type BucketPoint,
  chartBucketWidth,
  MAX_TIME,
  MIN_TIME,
  type RawPoint,
  type SeriesPoint,
  type SeriesQuery,
} from "./queries.js";

const DAY_MS = 86_400_000;
/** The narrowest tier's width. */
const MINUTE_MS = 60_000;

/** What a store reads for a bucketed question of one series. */
export interface BucketReader {
  /** The `horizons` table as it is now. */
  horizons(): Promise<Horizons> | Horizons;
  /**
   * Buckets of `every` ms of one source's rows (raw rows with `ts`, tier rows with `start` in [from, to)), in
   * start order, each holding only what that source has in the span.
   */
  parts(
    source: Source,
    device: string,
    sensor: string,
    from: number,
    to: number,
    every: number,
  ): AsyncIterable<BucketPart> | Iterable<BucketPart>;
  /** The first and last reading's ts among the source's rows in [from, to) as above; undefined when none. */
  span(
    source: Source,
    device: string,
    sensor: string,
    from: number,
    to: number,
  ): Promise<{ lo: number; hi: number } | undefined> | { lo: number; hi: number } | undefined;
  /** At most `limit` raw readings of the series in [from, to), in ts order. */
  rawPoints(
    device: string,
    sensor: string,
    from: number,
    to: number,
    limit: number,
  ): Promise<RawPoint[]> | RawPoint[];
}

async function* partsOf(
  reader: BucketReader,
  device: string,
  sensor: string,
  from: number,
  to: number,
  every: number,
  horizons: Horizons,
): AsyncGenerator<BucketPart> {
  for (const s of planBuckets(from, to, every, horizons))
    yield* reader.parts(s.source, device, sensor, s.from, s.to, every);
}

/** The non-empty buckets of `every` ms of one series in [from, to), in order, each added up from its parts. */
export async function* seriesBuckets(
  reader: BucketReader,
  device: string,
  sensor: string,
  every: number,
  from = MIN_TIME,
  to = MAX_TIME,
): AsyncGenerator<BucketPart> {
  yield* mergePartsAsync(partsOf(reader, device, sensor, from, to, every, await reader.horizons()));
}

/**
 * `series` of {@link ReadingQueries}: the raw readings when no more than `points` are in range and raw rows are all
 * there, else buckets of the width {@link chartBucketWidth} picks for the data's span (where raw rows are gone, at
 * least the width of the tier holding the first reading, so that the tiers answer).
 */
export async function seriesPoints(reader: BucketReader, q: SeriesQuery): Promise<SeriesPoint[]> {
  const horizons = await reader.horizons();
  const from = q.from ?? MIN_TIME;
  const to = q.to ?? MAX_TIME;
  // The data's bounds: from raw rows when they are all there, else from whichever source holds each span (a plan of
  // day buckets reaches every source).
  let lo: number | undefined;
  let hi: number | undefined;
  const spans =
    horizons.readings <= 0 || from >= horizons.readings
      ? [{ source: "readings" as const, from, to }]
      : planBuckets(from, to, DAY_MS, horizons);
  for (const s of spans) {
    const span = await reader.span(s.source, q.device, q.sensor, s.from, s.to);
    if (span === undefined) continue;
    lo ??= span.lo;
    hi = span.hi;
  }
  if (lo === undefined || hi === undefined) return [];
  if (horizons.readings <= 0 || lo >= horizons.readings) {
    const raw = await reader.rawPoints(q.device, q.sensor, lo, hi + 1, q.points + 1);
    if (raw.length <= q.points) return raw;
    return bucketPoints(reader, q, chartBucketWidth(hi + 1 - lo, q.points), lo, hi + 1);
  }
  // The first reading is beyond raw retention: the buckets start at the start of the narrowest tier row holding it
  // (the plan keeps it whole) and are at least that tier's width (chart widths that wide are multiples of it).
  const tierMs = narrowestTierAt(lo, horizons) ?? MINUTE_MS;
  const width = Math.max(chartBucketWidth(hi + 1 - lo, q.points), tierMs);
  return bucketPoints(reader, q, width, lo - (lo % tierMs), hi + 1);
}

async function bucketPoints(
  reader: BucketReader,
  q: SeriesQuery,
  width: number,
  from: number,
  to: number,
): Promise<BucketPoint[]> {
  const out: BucketPoint[] = [];
  for await (const b of seriesBuckets(reader, q.device, q.sensor, width, from, to)) {
    out.push({ ts: b.start, min: b.min, max: b.max, mean: b.sum / b.count, count: b.count });
  }
  return out;
}
