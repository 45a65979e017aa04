/**
 * `readings` on the SQLite file, in pages of columns (what exports write from). A series is a contiguous range of
 * the primary key (device_id, sensor, ts), so a page is one index seek and a scan of exactly its rows; the
 * sensors of a device are merged in time order from one such walk each, without sorting the device's rows.
 */
import type Database from "better-sqlite3";
import type { Quality } from "../../schemas/index.js";
import {
  MAX_TIME,
  MIN_TIME,
  pageOfRows,
  type ReadingKind,
  type ReadingPage,
  type ReadingRow,
  type ReadingsQuery,
} from "../queries.js";
import { sensorsOf } from "./keys.js";

/** Rows of a series read per statement while streaming: the first page is small so `--limit 10` reads little. */
const FIRST_PAGE = 256;
/** Larger pages make more garbage live at once, which V8 promotes and keeps: 1,024 rows kept an export of 10M rows near 110 MiB peak RSS (8,192: 170 MiB). */
const MAX_PAGE = 1_024;

const EMPTY_PAGE: ReadingPage = { length: 0, ts: [], value: [], seq: [], kinds: [], kind: undefined };

type Fetch = (from: number, to: number, limit: number) => ReadingPage;

/** Rows `[from, to)` of a page. */
function slicePage(page: ReadingPage, from: number, to: number): ReadingPage {
  return {
    length: to - from,
    ts: page.ts.slice(from, to),
    value: page.value.slice(from, to),
    seq: page.seq.slice(from, to),
    kinds: page.kinds,
    kind: page.kind?.slice(from, to),
  };
}

/**
 * Where a paged walk of one series stands: its current page and the bound of the next. Each page is one statement
 * (its own read transaction), so a long walk holds no snapshot open between pages.
 */
class SeriesCursor {
  page: ReadingPage = EMPTY_PAGE;
  /** Rows of `page` handed on already. */
  at = 0;
  /** Where the kinds of `page` start in the kinds of the merged page being built; -1 when not there yet. */
  base = -1;
  #size = FIRST_PAGE;
  #done = false;

  constructor(
    private readonly fetch: Fetch,
    private from: number,
    private to: number,
    private readonly asc: boolean,
  ) {}

  /** Reads the next page into `page`; false at the end of the series. */
  load(): boolean {
    this.at = 0;
    this.base = -1;
    this.page = this.#done ? EMPTY_PAGE : this.fetch(this.from, this.to, this.#size);
    if (this.page.length < this.#size) this.#done = true;
    this.#size = Math.min(this.#size * 2, MAX_PAGE);
    const last = this.page.ts[this.page.length - 1];
    if (last === undefined) return false;
    // The key is unique per series, so the next page starts strictly after the last row read.
    if (this.asc) this.from = last + 1;
    else this.to = last;
    return true;
  }
}

/**
 * One page of a series as columns: ts, value and seq as one JSON array each (numbers parse far faster than an
 * array per row with its strings), and unit, quality and tags once when the page holds one of each, as a series
 * almost always does (each row compared with the page's first); a page where one changes is read as rows.
 */
function pageReader(db: Database.Database, order: "ASC" | "DESC") {
  type Range = { device: string; sensor: string; from: number; to: number; limit: number };
  const where = `FROM readings WHERE device_id = @device AND sensor = @sensor AND ts >= @from AND ts < @to ORDER BY ts ${order}`;
  const KIND = "unit, quality, tags";
  const ROW = "device_id, sensor, ts, value, unit, seq, quality, tags";
  const columns = db
    .prepare<Range, [string, string, string, number, string | null]>(
      `SELECT json_group_array(ts), json_group_array(value), json_group_array(seq), total(odd),
              (SELECT json_array(${KIND}) ${where} LIMIT 1)
       FROM (SELECT ts, value, seq, ((${KIND}) IS NOT (SELECT ${KIND} ${where} LIMIT 1)) AS odd
             ${where} LIMIT @limit)`,
    )
    .raw();
  const rows = db
    .prepare<Range, string>(
      `SELECT json_group_array(json_array(${ROW})) FROM (SELECT ${ROW} ${where} LIMIT @limit)`,
    )
    .pluck();
  return (range: Range): ReadingPage => {
    const c = columns.get(range);
    if (c === undefined || c[0] === "[]") return EMPTY_PAGE;
    const [tsText, valueText, seqText, odd, first] = c;
    if (odd !== 0 || first === null) return pageOfRows(JSON.parse(rows.get(range) ?? "[]") as ReadingRow[]);
    const [unit, quality, tags] = JSON.parse(first) as [string | null, Quality, string];
    const ts = JSON.parse(tsText) as number[];
    return {
      length: ts.length,
      ts,
      value: JSON.parse(valueText) as number[],
      seq: JSON.parse(seqText) as (number | null)[],
      kinds: [{ device_id: range.device, sensor: range.sensor, unit, quality, tags }],
      kind: undefined,
    };
  };
}

/** `readingPages` of {@link ReadingQueries}: pages in time order, none empty, at most `limit` rows in all. */
export function readingPagesQuery(db: Database.Database): (q: ReadingsQuery) => AsyncGenerator<ReadingPage> {
  const pageAsc = pageReader(db, "ASC");
  const pageDesc = pageReader(db, "DESC");
  const sensors = sensorsOf(db);

  return async function* readingPages(q) {
    const asc = q.order === "asc";
    const page = asc ? pageAsc : pageDesc;
    const cursors = (q.sensor === undefined ? sensors(q.device) : [q.sensor]).map(
      (sensor) =>
        new SeriesCursor(
          (from, to, limit) => page({ device: q.device, sensor, from, to, limit }),
          q.from ?? MIN_TIME,
          q.to ?? MAX_TIME,
          asc,
        ),
    );
    let left = q.limit ?? Number.POSITIVE_INFINITY;
    // Ties in time go to the sensor first by name (`open` keeps the cursors in sensor order). A merged page takes
    // the kinds of the series pages its rows come from.
    let open = cursors.filter((c) => c.load());
    while (left > 0 && open.length > 0) {
      const only = open.length === 1 ? open[0] : undefined;
      if (only !== undefined) {
        // One series left: its pages go on as they are read.
        const rest = only.at === 0 ? only.page : slicePage(only.page, only.at, only.page.length);
        const kept = rest.length > left ? slicePage(rest, 0, left) : rest;
        left -= kept.length;
        yield kept;
        if (left <= 0 || !only.load()) return;
        continue;
      }
      const size = Math.min(left, MAX_PAGE);
      const ts: number[] = [];
      const value: number[] = [];
      const seq: (number | null)[] = [];
      const kind: number[] = [];
      const kinds: ReadingKind[] = [];
      for (const c of open) c.base = -1;
      while (ts.length < size && open.length > 1) {
        let best = open[0] as SeriesCursor;
        for (const c of open) {
          const t = c.page.ts[c.at] as number;
          const bestTs = best.page.ts[best.at] as number;
          if (asc ? t < bestTs : t > bestTs) best = c;
        }
        const p = best.page;
        const i = best.at;
        if (best.base < 0) {
          best.base = kinds.length;
          kinds.push(...p.kinds);
        }
        ts.push(p.ts[i] as number);
        value.push(p.value[i] as number);
        seq.push(p.seq[i] ?? null);
        kind.push(best.base + (p.kind === undefined ? 0 : (p.kind[i] as number)));
        best.at = i + 1;
        if (best.at === p.length && !best.load()) {
          const done = best;
          open = open.filter((c) => c !== done);
        }
      }
      left -= ts.length;
      yield { length: ts.length, ts, value, seq, kinds, kind: kinds.length > 1 ? kind : undefined };
    }
  };
}
