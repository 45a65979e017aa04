/**
 * The query layer: each analysts' question asked of a {@link ReadingQueries} and handed back as an {@link Answer}
 * that any output format can render. The `query` command and `serve` both go through here, so the CLI and the
 * HTTP API answer alike.
 */
import type { ReadingQueries, ReadingsQuery, SeriesQuery, StatsQuery } from "../store/queries.js";
import { type Fill, fillBuckets } from "./fill.js";
import type { Answer } from "./format.js";

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
  "sensor",
  "unit",
  "first_ts",
  "last_ts",
  "last_value",
  "count",
] as const;
const RAW_POINT_COLUMNS = ["ts", "value"] as const;
const BUCKET_POINT_COLUMNS = ["ts", "min", "max", "mean", "count"] as const;

/** Every device with its series; csv and table print one row per series. */
export async function devicesAnswer(q: ReadingQueries): Promise<Answer> {
  const devices = await q.devices();
  const flat = devices.flatMap((d) => d.sensors.map((s) => ({ device_id: d.device_id, ...s })));
  return { rows: devices, flat, columns: DEVICE_COLUMNS };
}

/** The newest reading of every series, or of one device's. */
export async function latestAnswer(q: ReadingQueries, device?: string): Promise<Answer> {
  return { rows: await q.latest(device), columns: READING_COLUMNS };
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
