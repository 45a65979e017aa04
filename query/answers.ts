/**
 * The query layer: each analysts' question asked of a {@link ReadingQueries} and handed back as an {@link Answer}
 * that any output format can render. The `query` command and `serve` both go through here, so the CLI and the
 * HTTP API answer alike.
 */
import {
  type DeviceSummary,
  devicesOfPage,
  pageOfReadings,
  type ReadingQueries,
  type ReadingsQuery,
  readingOfRow,
  rowOfPage,
  type SeriesQuery,
  type StatsQuery,
} from "../store/queries.js";
import { devicesBytes } from "./devices-text.js";
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

/** `devices` as csv and table print it: one row per series. */
const flatDevices = (devices: () => Iterable<DeviceSummary>): Iterable<object> => ({
  *[Symbol.iterator]() {
    for (const d of devices()) for (const s of d.sensors) yield { device_id: d.device_id, ...s };
  },
});

/**
 * Every device with its series. From a store that hands them over in columns, json, ndjson and csv are written
 * from those (query/devices-text.ts) and objects are made only for a table.
 */
export async function devicesAnswer(q: ReadingQueries): Promise<Answer> {
  if (q.devicesPage !== undefined) {
    const page = await q.devicesPage();
    const devices = () => devicesOfPage(page);
    return {
      rows: { [Symbol.iterator]: () => devices()[Symbol.iterator]() },
      flat: flatDevices(devices),
      columns: DEVICE_COLUMNS,
      whole: (format) => devicesBytes(page, format, DEVICE_COLUMNS.join(",")),
    };
  }
  const devices = await q.devices();
  return { rows: devices, flat: flatDevices(() => devices), columns: DEVICE_COLUMNS };
}

/** The newest reading of every series, or of one device's (as one page: thousands of rows print faster so). */
export async function latestAnswer(q: ReadingQueries, device?: string): Promise<Answer> {
  if (device === undefined && q.latestPage !== undefined) {
    const page = await q.latestPage();
    // Objects only for a table, which prints from them; json, ndjson and csv print the page.
    const rows = {
      *[Symbol.iterator]() {
        for (let i = 0; i < page.length; i++) yield readingOfRow(rowOfPage(page, i));
      },
    };
    return { rows, pages: [page], columns: READING_COLUMNS };
  }
  const rows = await q.latest(device);
  return { rows, pages: [pageOfReadings(rows)], columns: READING_COLUMNS };
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
