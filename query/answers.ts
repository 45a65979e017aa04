/**
 * The query layer: each analysts' question asked of a {@link ReadingQueries} and handed back as an {@link Answer}
 * that any output format can render. The `query` command and `serve` both go through here, so the CLI and the
 * HTTP API answer alike.
 */
import type { DevicePage, ReadingQueries, ReadingsQuery, SeriesQuery, StatsQuery } from "../store/queries.js";
import { type Fill, fillBuckets } from "./fill.js";
import type { Answer } from "./format.js";
import { isSilent } from "./silent.js";

export const READING_COLUMNS = [
  "device_id",
  "sensor",
  "ts",
  "value",
  "unit",
  "seq",
  "quality",
  "tags",
] as const;
export const BUCKET_COLUMNS = [
  "device_id",
  "sensor",
  "start",
  "count",
  "min",
  "max",
  "mean",
  "last",
] as const;
/** `devices` in csv and table: one row per series. */
export const DEVICE_COLUMNS = [
  "device_id",
  "last_seen",
  "interval_ms",
  "silent",
  "sensor",
  "unit",
  "first_ts",
  "last_ts",
  "last_value",
  "count",
] as const;
const RAW_POINT_COLUMNS = ["ts", "value"] as const;
const BUCKET_POINT_COLUMNS = ["ts", "min", "max", "mean", "count"] as const;

/** When `devices` judges silence: at `at` (epoch ms), with `SILENT_MIN` as `min` (ms). */
export interface Silence {
  readonly min: number;
  readonly at: number;
}

/** The devices of a page with their series, each marked silent or not; csv and table print one row per series. */
export async function devicesAnswer(q: ReadingQueries, page: DevicePage, silence: Silence): Promise<Answer> {
  const devices = (await q.devices(page)).map(({ device_id, last_seen, interval_ms, sensors }) => ({
    device_id,
    last_seen,
    interval_ms,
    silent: isSilent({ last_seen, interval_ms }, silence.at, silence.min),
    sensors,
  }));
  // Written out: object rest and spread here cost 20 ms for 4,000 series where the whole answer's target is 5.
  const flat = devices.flatMap((d) =>
    d.sensors.map((s) => ({
      device_id: d.device_id,
      last_seen: d.last_seen,
      interval_ms: d.interval_ms,
      silent: d.silent,
      sensor: s.sensor,
      unit: s.unit,
      first_ts: s.first_ts,
      last_ts: s.last_ts,
      last_value: s.last_value,
      count: s.count,
    })),
  );
  return { rows: devices, flat, columns: DEVICE_COLUMNS };
}

/** The newest reading of every series of a page of devices, or of one device's. */
export async function latestAnswer(q: ReadingQueries, page: DevicePage, device?: string): Promise<Answer> {
  return { rows: await q.latest(device, page), columns: READING_COLUMNS };
}

/**
 * Where the page after this one starts: the last device of this page when more devices follow it, else
 * undefined. One more device than the page holds is read to know (from `latest`, which reads no rows but the
 * newest of each series).
 */
export async function nextAfter(
  q: ReadingQueries,
  page: DevicePage,
  device?: string,
): Promise<string | undefined> {
  if (page.limit === undefined) return undefined;
  const ids = [
    ...new Set((await q.latest(device, { ...page, limit: page.limit + 1 })).map((r) => r.device_id)),
  ];
  return ids.length > page.limit ? ids[page.limit - 1] : undefined;
}

/** Readings of a device in time order, streamed (in pages of columns for json, ndjson and csv). */
export function readingsAnswer(q: ReadingQueries, query: ReadingsQuery): Answer {
  // Both are generators that read nothing until asked, so only the one the format uses runs.
  return {
    rows: q.readings(query),
    pages: q.readingPages(query),
    columns: READING_COLUMNS,
  };
}

/** Buckets of a device's series, streamed, with the empty ones filled as `fill` says. */
export function statsAnswer(q: ReadingQueries, query: StatsQuery & { readonly fill: Fill }): Answer {
  return { rows: fillBuckets(q.stats(query), query), columns: BUCKET_COLUMNS };
}

/** Chart points of one series: raw readings, or min/max/mean/count per bucket. */
export async function seriesAnswer(q: ReadingQueries, query: SeriesQuery): Promise<Answer> {
  const points = await q.series(query);
  const bucketed = points[0] !== undefined && "min" in points[0];
  return { rows: points, columns: bucketed ? BUCKET_POINT_COLUMNS : RAW_POINT_COLUMNS };
}
