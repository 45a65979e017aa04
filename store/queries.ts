/**
 * What analysts ask of the store (docs/contract.md, "Queries"), whatever the backend: the `query` command and
 * `serve` call only {@link ReadingQueries}; store/sqlite/ answers it from the SQLite file, store/postgres-queries.ts
 * from PostgreSQL, alike. Field names are the contract's, so answers print as they are.
 */
import type { Running } from "../common/pipeline.js";
import type { Quality } from "../schemas/index.js";

/** One stored reading as the contract names its fields. */
export interface StoredReading {
  readonly device_id: string;
  readonly sensor: string;
  /** Time of measurement, epoch ms UTC. */
  readonly ts: number;
  readonly value: number;
  readonly unit: string | null;
  readonly seq: number | null;
  readonly quality: Quality;
  readonly tags: Readonly<Record<string, string>>;
}

/**
 * One stored reading as an array of the contract's fields in order (device_id, sensor, ts, value, unit, seq,
 * quality, tags), `tags` as JSON text (`{}` when it has none; `JSON.stringify` of the tags): how SQLite hands rows
 * over as JSON, and a row of a {@link ReadingPage} when tests compare them.
 */
export type ReadingRow = readonly [
  device_id: string,
  sensor: string,
  ts: number,
  value: number,
  unit: string | null,
  seq: number | null,
  quality: Quality,
  tags: string,
];

/** Tags stored as JSON text, read as an object: one shared empty object for the (common) empty case. */
const NO_TAGS: Readonly<Record<string, string>> = Object.freeze({});

/** Tags as stored (JSON text) as an object. */
export const tagsOf = (text: string): Readonly<Record<string, string>> =>
  text === "{}" ? NO_TAGS : (JSON.parse(text) as Record<string, string>);

/** The reading a {@link ReadingRow} stands for. */
export function readingOfRow(r: ReadingRow): StoredReading {
  return {
    device_id: r[0],
    sensor: r[1],
    ts: r[2],
    value: r[3],
    unit: r[4],
    seq: r[5],
    quality: r[6],
    tags: tagsOf(r[7]),
  };
}

/** The {@link ReadingRow} of a reading. */
export function rowOfReading(r: StoredReading): ReadingRow {
  return [r.device_id, r.sensor, r.ts, r.value, r.unit, r.seq, r.quality, JSON.stringify(r.tags)];
}

/**
 * What rows of a {@link ReadingPage} share: every field but ts, value and seq, `tags` as JSON text (`{}` when it
 * has none; `JSON.stringify` of the tags, so an answer prints alike either way).
 */
export interface ReadingKind {
  readonly device_id: string;
  readonly sensor: string;
  readonly unit: string | null;
  readonly quality: Quality;
  readonly tags: string;
}

/**
 * Readings in columns, what exports write from a page at a time: row `i` is `ts[i]`, `value[i]`, `seq[i]` and the
 * other fields of `kinds[kind[i]]`, or of `kinds[0]` when `kind` is undefined (a page of one series whose unit,
 * quality and tags do not change, as nearly all are). No array or object per row: an export of millions of rows
 * spends its time writing text rather than building and collecting rows.
 */
export interface ReadingPage {
  readonly length: number;
  readonly ts: readonly number[];
  readonly value: readonly number[];
  readonly seq: readonly (number | null)[];
  readonly kinds: readonly ReadingKind[];
  readonly kind: readonly number[] | undefined;
}

/** The rows of a page, in order, as {@link ReadingRow}s. */
export function rowsOfPage(page: ReadingPage): ReadingRow[] {
  return Array.from({ length: page.length }, (_, i): ReadingRow => {
    const k = page.kinds[page.kind === undefined ? 0 : (page.kind[i] as number)] as ReadingKind;
    return [
      k.device_id,
      k.sensor,
      page.ts[i] as number,
      page.value[i] as number,
      k.unit,
      page.seq[i] ?? null,
      k.quality,
      k.tags,
    ];
  });
}

/** `readings` from its pages: the same rows in the same order, one object each. */
export async function* readingsOfPages(pages: AsyncIterable<ReadingPage>): AsyncGenerator<StoredReading> {
  for await (const page of pages) {
    for (let i = 0; i < page.length; i++) {
      const k = page.kinds[page.kind === undefined ? 0 : (page.kind[i] as number)] as ReadingKind;
      yield {
        device_id: k.device_id,
        sensor: k.sensor,
        ts: page.ts[i] as number,
        value: page.value[i] as number,
        unit: k.unit,
        seq: page.seq[i] ?? null,
        quality: k.quality,
        tags: tagsOf(k.tags),
      };
    }
  }
}

/**
 * One page of `rows`, in their order, a kind per distinct (device, sensor, unit, quality, tags): for a page whose
 * unit, quality or tags change, for a store whose driver hands rows over as objects anyway, and for answers read
 * whole (`latest`).
 */
export function pageOfRows(rows: readonly ReadingRow[]): ReadingPage {
  const n = rows.length;
  const kinds: ReadingKind[] = [];
  const known = new Map<string, number>();
  const kind: number[] = new Array(n);
  const ts: number[] = new Array(n);
  const value: number[] = new Array(n);
  const seq: (number | null)[] = new Array(n);
  let last: ReadingKind | undefined;
  let k = 0;
  for (let i = 0; i < n; i++) {
    const [device_id, sensor, t, v, unit, s, quality, tags] = rows[i] as ReadingRow;
    // Rows of a kind mostly come together: the one of the row above is tried first.
    if (
      last === undefined ||
      last.sensor !== sensor ||
      last.device_id !== device_id ||
      last.unit !== unit ||
      last.quality !== quality ||
      last.tags !== tags
    ) {
      // JSON of the fields as the key: no separator could be confused with a character of a value.
      const key = JSON.stringify([device_id, sensor, unit, quality, tags]);
      const seen = known.get(key);
      if (seen === undefined) {
        k = kinds.push({ device_id, sensor, unit, quality, tags }) - 1;
        known.set(key, k);
      } else k = seen;
      last = kinds[k];
    }
    kind[i] = k;
    ts[i] = t;
    value[i] = v;
    seq[i] = s;
  }
  return { length: n, ts, value, seq, kinds, kind: kinds.length > 1 ? kind : undefined };
}

/** Pages of `readings` ({@link pageOfRows}) of at most `size` rows each, none empty. */
export async function* pagesOfReadings(
  readings: AsyncIterable<StoredReading>,
  size = 4_096,
): AsyncGenerator<ReadingPage> {
  let rows: ReadingRow[] = [];
  for await (const r of readings) {
    rows.push(rowOfReading(r));
    if (rows.length >= size) {
      yield pageOfRows(rows);
      rows = [];
    }
  }
  if (rows.length > 0) yield pageOfRows(rows);
}

/** One series of a device in `devices`: its unit and last value (of its newest reading), time span and size. */
export interface SensorSummary {
  readonly sensor: string;
  readonly unit: string | null;
  readonly first_ts: number;
  readonly last_ts: number;
  readonly last_value: number;
  /** Every reading of the series (an exact count). */
  readonly count: number;
}

/**
 * A device and its series, sensors ordered by name. `last_seen` is the latest gateway receive time of any of its
 * readings (epoch ms); `interval_ms` its usual reporting interval (the shortest of its series' learned intervals,
 * rounded to the ms), null while none is known (a single receive time so far).
 */
export interface DeviceSummary {
  readonly device_id: string;
  readonly last_seen: number;
  readonly interval_ms: number | null;
  readonly sensors: readonly SensorSummary[];
}

/** When a series was last seen and its learned interval (0: not known yet), as a store keeps them. */
export interface SeriesSeen {
  readonly last_seen: number;
  readonly interval: number;
}

/**
 * `devices()` from its `n` series in device order: series `i` belongs to `deviceAt(i)`, is `sensorAt(i)` and was
 * seen as `seenAt(i)` says. Every store's answer is grouped here.
 */
export function groupDevices(
  n: number,
  deviceAt: (i: number) => string,
  sensorAt: (i: number) => SensorSummary,
  seenAt: (i: number) => SeriesSeen,
): DeviceSummary[] {
  const out: {
    device_id: string;
    last_seen: number;
    interval_ms: number | null;
    sensors: SensorSummary[];
  }[] = [];
  for (let i = 0; i < n; i++) {
    const device_id = deviceAt(i);
    let device = out.at(-1);
    if (device?.device_id !== device_id) {
      device = { device_id, last_seen: Number.NEGATIVE_INFINITY, interval_ms: null, sensors: [] };
      out.push(device);
    }
    device.sensors.push(sensorAt(i));
    const { last_seen, interval } = seenAt(i);
    if (last_seen > device.last_seen) device.last_seen = last_seen;
    const ms = Math.round(interval);
    if (ms > 0 && (device.interval_ms === null || ms < device.interval_ms)) device.interval_ms = ms;
  }
  return out;
}

/**
 * A page of devices in device order (`devices`, `latest`): those after `after` (exclusive) whose id starts with
 * `match`, at most `limit` of them (`latest`: every series of each). Each field left out does not narrow.
 */
export interface DevicePage {
  readonly limit?: number | undefined;
  readonly after?: string | undefined;
  readonly match?: string | undefined;
}

/**
 * The ids a page may hold as a range: from `from` (inclusive, or exclusive when `fromExclusive`) up to `to`
 * (exclusive; undefined: no end). Ids are ASCII (schemas/rules.ts), so string order is the stores' byte order, and
 * the ids starting with a prefix are those from it up to the prefix with its last character stepped.
 */
export function pageRange(page: DevicePage): { from: string; fromExclusive: boolean; to?: string } {
  const match = page.match ?? "";
  const to =
    match === ""
      ? undefined
      : match.slice(0, -1) + String.fromCharCode(match.charCodeAt(match.length - 1) + 1);
  const afterWins = page.after !== undefined && page.after >= match;
  return {
    from: afterWins ? (page.after as string) : match,
    fromExclusive: afterWins,
    ...(to === undefined ? {} : { to }),
  };
}

/**
 * The readings of one series in `[start, start + width)`: `start` is aligned to the width from the epoch, so
 * whole minutes, hours and days are UTC's. A bucket with no readings (only produced by gap filling) has `count` 0
 * and the aggregates filled as asked, or null.
 */
export interface Bucket {
  readonly device_id: string;
  readonly sensor: string;
  readonly start: number;
  readonly count: number;
  readonly min: number | null;
  readonly max: number | null;
  readonly mean: number | null;
  /** Value of the bucket's newest reading. */
  readonly last: number | null;
}

/** A time range: `from` inclusive, `to` exclusive, epoch ms; either left out means unbounded on that side. */
export interface TimeRange {
  readonly from?: number | undefined;
  readonly to?: number | undefined;
}

/** `readings`: one device, one or every sensor, ordered by `ts` (then sensor name), at most `limit` rows. */
export interface ReadingsQuery extends TimeRange {
  readonly device: string;
  readonly sensor?: string | undefined;
  readonly limit?: number | undefined;
  readonly order: "asc" | "desc";
}

/** `stats`: buckets of `every` ms for one device, one or every sensor; only buckets holding readings. */
export interface StatsQuery extends TimeRange {
  readonly device: string;
  readonly sensor?: string | undefined;
  readonly every: number;
}

/** `series`: one series for a chart, at most about `points` points. */
export interface SeriesQuery extends TimeRange {
  readonly device: string;
  readonly sensor: string;
  readonly points: number;
}

/** A chart point: a raw reading. */
export interface RawPoint {
  readonly ts: number;
  readonly value: number;
}

/** A chart point standing for every reading of a bucket starting at `ts`, so a spike shows in `max`. */
export interface BucketPoint {
  readonly ts: number;
  readonly min: number;
  readonly max: number;
  readonly mean: number;
  readonly count: number;
}

export type SeriesPoint = RawPoint | BucketPoint;

/**
 * The analysts' questions, read-only, answered from what is committed at the time of asking; safe while a
 * processor writes. An unknown device or sensor is an empty answer, never an error. Streams (`readings`,
 * `stats`) read in pages and hold no transaction open between them, so a long export neither grows memory nor
 * keeps the writer's log from being checkpointed. `stop()` closes the connection; streams in progress end.
 */
export interface ReadingQueries extends Running {
  /**
   * The store's version: a token that differs from the last one this reader gave whenever anything was committed
   * in between (it may also change when nothing was), so an answer kept with the version it was asked under is
   * still the store's answer while the version stays (serve's answer cache). SQLite: the reading connection's
   * `PRAGMA data_version`; PostgreSQL: the server's current snapshot (store/postgres-queries.ts).
   */
  version(): Promise<string>;
  /** Every device of `page` with its series, ordered by device and sensor; `count` is exact. */
  devices(page?: DevicePage): Promise<DeviceSummary[]>;
  /**
   * The newest reading of every series (of `device` alone when given) of the devices of `page`, ordered by device
   * and sensor.
   */
  latest(device?: string, page?: DevicePage): Promise<StoredReading[]>;
  readings(q: ReadingsQuery): AsyncIterable<StoredReading>;
  /**
   * The rows of {@link readings} (the same, in the same order) in pages of columns: for exports, which write a
   * page as one string. Each page is read by one statement; pages are not empty.
   */
  readingPages(q: ReadingsQuery): AsyncIterable<ReadingPage>;
  /** Non-empty buckets, ordered by sensor then start; gap filling is the caller's (query/fill.ts). */
  stats(q: StatsQuery): AsyncIterable<Bucket>;
  /**
   * At most about `points` points in time order: the raw readings when no more than `points` are in range, else
   * one {@link BucketPoint} per non-empty bucket of the width {@link chartBucketWidth} picks for the data's span.
   */
  series(q: SeriesQuery): Promise<SeriesPoint[]>;
}

/** Bounds standing for "all time" in statements that always take a range. */
export const MIN_TIME = Number.MIN_SAFE_INTEGER;
export const MAX_TIME = Number.MAX_SAFE_INTEGER;

/** Bucket widths a chart uses, so bucket starts fall on round times. */
const CHART_WIDTHS_MS = [
  1, 2, 5, 10, 20, 50, 100, 200, 500, 1_000, 2_000, 5_000, 10_000, 15_000, 30_000, 60_000, 120_000, 300_000,
  600_000, 900_000, 1_800_000, 3_600_000, 7_200_000, 10_800_000, 21_600_000, 43_200_000, 86_400_000,
] as const;
const DAY_MS = 86_400_000;

/**
 * The smallest round bucket width that splits `spanMs` into at most `points` buckets (one more when the span
 * does not start on a bucket edge): from 1 ms up through seconds, minutes and hours to whole days.
 */
export function chartBucketWidth(spanMs: number, points: number): number {
  const least = Math.max(1, Math.ceil(spanMs / Math.max(1, points)));
  for (const w of CHART_WIDTHS_MS) if (w >= least) return w;
  return Math.ceil(least / DAY_MS) * DAY_MS;
}
