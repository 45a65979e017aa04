/**
 * Gap filling for `stats` (`--fill`): the store answers only buckets that hold readings; this adds the empty ones
 * of the asked range, streaming, so a long range of small buckets never sits in memory.
 */
import type { Bucket } from "../store/queries.js";

/** The contract's fill modes, in the order `--help` lists them. */
export const FILLS = ["none", "null", "prev", "linear"] as const;

/**
 * - `none`: only buckets with readings;
 * - `null`: every bucket of the range, the empty ones with `count` 0 and null aggregates;
 * - `prev`: empty buckets carry the aggregates of the last bucket before them (null before the first);
 * - `linear`: empty buckets interpolate each aggregate, by time, between the buckets on either side (null where a
 *   side is missing).
 */
export type Fill = (typeof FILLS)[number];

export interface FillOptions {
  readonly fill: Fill;
  /** Bucket width, ms. */
  readonly every: number;
  /** The asked range; where a side is left out, a series' range ends at its own first or last bucket. */
  readonly from?: number | undefined;
  readonly to?: number | undefined;
}

type Aggregates = Pick<Bucket, "min" | "max" | "mean" | "last">;
const NULLS: Aggregates = Object.freeze({ min: null, max: null, mean: null, last: null });

function lerp(a: number | null, b: number | null, share: number): number | null {
  return a === null || b === null ? null : a + (b - a) * share;
}

/** The aggregates of the empty bucket at `start`, between the filled buckets `before` and `after` (either absent). */
function gapValues(fill: Fill, start: number, before?: Bucket, after?: Bucket): Aggregates {
  if (fill === "prev") {
    return before === undefined
      ? NULLS
      : { min: before.min, max: before.max, mean: before.mean, last: before.last };
  }
  if (fill !== "linear" || before === undefined || after === undefined) return NULLS;
  const share = (start - before.start) / (after.start - before.start);
  return {
    min: lerp(before.min, after.min, share),
    max: lerp(before.max, after.max, share),
    mean: lerp(before.mean, after.mean, share),
    last: lerp(before.last, after.last, share),
  };
}

const alignDown = (t: number, every: number) => t - (((t % every) + every) % every);

/**
 * Passes `buckets` (non-empty ones, grouped by series, each series in time order) through and, unless the mode is
 * `none`, adds an empty bucket for every start of the range that has none. Each series gets its own range: from
 * the bucket holding `from` (else its first bucket) to the one holding `to - 1` (else its last bucket). A series
 * without buckets in the range stays absent.
 */
export async function* fillBuckets(
  buckets: AsyncIterable<Bucket>,
  opts: FillOptions,
): AsyncGenerator<Bucket> {
  if (opts.fill === "none") {
    yield* buckets;
    return;
  }
  const { every, fill } = opts;
  const first = opts.from === undefined ? undefined : alignDown(opts.from, every);
  const last = opts.to === undefined ? undefined : alignDown(opts.to - 1, every);
  let previous: Bucket | undefined;

  function* gap(
    series: Pick<Bucket, "device_id" | "sensor">,
    from: number,
    until: number,
    before?: Bucket,
    after?: Bucket,
  ): Generator<Bucket> {
    for (let start = from; start < until; start += every) {
      yield {
        device_id: series.device_id,
        sensor: series.sensor,
        start,
        count: 0,
        ...gapValues(fill, start, before, after),
      };
    }
  }

  for await (const b of buckets) {
    const sameSeries = previous?.device_id === b.device_id && previous.sensor === b.sensor;
    if (!sameSeries) {
      if (previous !== undefined && last !== undefined)
        yield* gap(previous, previous.start + every, last + every, previous);
      previous = undefined;
      if (first !== undefined) yield* gap(b, first, b.start, undefined, b);
    } else if (previous !== undefined) {
      yield* gap(b, previous.start + every, b.start, previous, b);
    }
    yield b;
    previous = b;
  }
  if (previous !== undefined && last !== undefined)
    yield* gap(previous, previous.start + every, last + every, previous);
}
