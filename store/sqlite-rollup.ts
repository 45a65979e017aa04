/**
 * The per-series rollup of a SQLite file from schema version 5 on: what `devices` and `latest` read instead of the
 * rows. Each series has a row in `series` (its key, a numeric `id`, and the text of its newest reading: unit,
 * quality, tags) and seven numbers (first_ts, last_ts, last_value, last_seq, count, last_seen, interval) kept in
 * `series_numbers`, 64 series to a row, as float64 in one BLOB (a slot of `id`: row `id >> 6`, offset
 * `(id & 63) * 7`; files of schema version 5 had the first five, migration 6 widened them).
 *
 * `last_seen` is the latest gateway receive time (`received_at`) of the series' readings, and `interval` its usual
 * reporting interval: an exponentially weighted mean of the gaps between successive receive times, each new gap
 * weighing {@link INTERVAL_WEIGHT}. A gap of 0 (readings of one batch message) and a reading received before
 * `last_seen` (late, or from another processor's older batch) leave it as it is; 0 means not known yet (one
 * receive time so far). PostgreSQL computes the same mean from the rows at the question (store/postgres-queries.ts).
 *
 * Why not a row of numbers per series (versions 3 and 4): a batch of a whole fleet touches one series per reading,
 * and rewriting one SQLite row per series cost the processor about a fifth of its rate, whatever the statement's
 * shape. Here the writer keeps every series' numbers in memory, changes them as it inserts rows, and writes back
 * only the blobs it touched: a batch of 500 readings over 500 series rewrites 8 to 63 rows, not 500. The text
 * rows change only when a series is new, when its newest reading's unit, quality or tags differ, or when it is gone.
 *
 * Every number is a float64, which holds each exactly: epoch ms and counts are integers far below 2^53, values are
 * the REAL the rows hold. `last_seq` null is NaN. The bytes are the machine's (little-endian on every platform
 * Node runs on; {@link assertLittleEndian} refuses others rather than misread a file).
 */
import { endianness } from "node:os";
import type Database from "better-sqlite3";
import type { Reading } from "../schemas/index.js";
import type { StoredMeasurement } from "./measurement.js";

/** Series per row of `series_numbers`. */
export const SERIES_PER_ROW = 64;
const SHIFT = 6;
/** The numbers of one series, in this order. */
const FIRST = 0;
const LAST = 1;
const VALUE = 2;
const SEQ = 3;
const COUNT = 4;
const SEEN = 5;
const INTERVAL = 6;
const NUMBERS = 7;
/** How much a new gap weighs in the interval's mean: after a change of rate, 4 gaps move it most of the way. */
export const INTERVAL_WEIGHT = 0.25;
const ROW_FLOATS = SERIES_PER_ROW * NUMBERS;

export function assertLittleEndian(): void {
  if (endianness() !== "LE")
    throw new Error("the SQLite rollup (series_numbers) needs a little-endian machine");
}

/** One series' numbers, as the rollup holds them. */
export interface SeriesNumbers {
  readonly first_ts: number;
  readonly last_ts: number;
  readonly last_value: number;
  readonly last_seq: number | null;
  readonly count: number;
  /** Latest receive time of the series' readings, epoch ms. */
  readonly last_seen: number;
  /** Its usual reporting interval in ms; 0 when not known yet. */
  readonly interval: number;
}

/** The interval after a reading received at `at` of a series last seen at `seen` whose interval was `interval`. */
export function nextInterval(interval: number, seen: number, at: number): number {
  const gap = at - seen;
  if (!(gap > 0)) return interval;
  return interval === 0 ? gap : interval + (gap - interval) * INTERVAL_WEIGHT;
}

/**
 * A row of `series_numbers` as floats (a copy when SQLite's buffer is not 8-byte aligned); `numbers` per series
 * other than the current ones only for migration 6, which reads version 5's rows.
 */
export function floatsOf(data: Buffer, numbers = NUMBERS): Float64Array {
  const floats = SERIES_PER_ROW * numbers;
  if (data.length !== floats * 8)
    throw new Error(`series_numbers row of ${data.length} bytes, not ${floats * 8}: is the file migrated?`);
  if (data.byteOffset % 8 === 0) return new Float64Array(data.buffer, data.byteOffset, floats);
  return new Float64Array(Uint8Array.from(data).buffer);
}

/** A number row as the BLOB it is stored as (no copy). */
function bytesOf(f: Float64Array): Buffer {
  return Buffer.from(f.buffer, f.byteOffset, f.byteLength);
}

/** Reads every row of `series_numbers` into floats, by row number (rows never written stay undefined). */
export function readNumberRows(db: Database.Database, numbers = NUMBERS): Float64Array[] {
  const rows: Float64Array[] = [];
  for (const [chunk, data] of db
    .prepare<[], [number, Buffer]>("SELECT chunk, data FROM series_numbers")
    .raw()
    .all())
    rows[chunk] = floatsOf(data, numbers);
  return rows;
}

/** The numbers of series `id` in `rows` (from {@link readNumberRows}). */
export function numbersOf(rows: readonly (Float64Array | undefined)[], id: number): SeriesNumbers {
  const f = rows[id >> SHIFT];
  if (f === undefined)
    throw new Error(`series ${id} has no numbers (series_numbers row ${id >> SHIFT} missing)`);
  const o = (id & (SERIES_PER_ROW - 1)) * NUMBERS;
  const seq = f[o + SEQ] as number;
  return {
    first_ts: f[o + FIRST] as number,
    last_ts: f[o + LAST] as number,
    last_value: f[o + VALUE] as number,
    last_seq: Number.isNaN(seq) ? null : seq,
    count: f[o + COUNT] as number,
    last_seen: f[o + SEEN] as number,
    interval: f[o + INTERVAL] as number,
  };
}

/** Where the numbers of series `id` sit: the row and the offset of its first float. */
export function slotOf(id: number): { row: number; at: number } {
  return { row: id >> SHIFT, at: (id & (SERIES_PER_ROW - 1)) * NUMBERS };
}
export const SLOT = { FIRST, LAST, VALUE, SEQ, COUNT, SEEN, INTERVAL } as const;

/**
 * Writes the number rows of the given series (migrations 5 and 6): [id, first_ts, last_ts, last_value, last_seq,
 * count, last_seen, interval], replacing every row there was.
 */
export function fillNumberRows(
  db: Database.Database,
  series: readonly (readonly [number, number, number, number, number | null, number, number, number])[],
): void {
  db.exec("DELETE FROM series_numbers");
  const rows: Float64Array[] = [];
  for (const [id, first, last, value, seq, count, seen, interval] of series) {
    const f = rows[id >> SHIFT] ?? new Float64Array(ROW_FLOATS);
    rows[id >> SHIFT] = f;
    const o = (id & (SERIES_PER_ROW - 1)) * NUMBERS;
    f[o + FIRST] = first;
    f[o + LAST] = last;
    f[o + VALUE] = value;
    f[o + SEQ] = seq ?? Number.NaN;
    f[o + COUNT] = count;
    f[o + SEEN] = seen;
    f[o + INTERVAL] = interval;
  }
  const insert = db.prepare("INSERT INTO series_numbers (chunk, data) VALUES (?, ?)");
  rows.forEach((f, n) => {
    insert.run(n, bytesOf(f));
  });
}

/** A whole series of the rollup, in the columns the tests and the benchmark compare with the rows. */
export interface SeriesRollupRow extends SeriesNumbers {
  readonly device_id: string;
  readonly sensor: string;
  readonly unit: string | null;
  readonly last_quality: string;
  readonly last_tags: string;
}

/** The whole rollup of a version 5 file, ordered by device and sensor (one read transaction). */
export function readRollup(db: Database.Database): SeriesRollupRow[] {
  return db.transaction(() => {
    const rows = readNumberRows(db);
    const texts = db
      .prepare<[], [string, string, number, string | null, string, string]>(
        "SELECT device_id, sensor, id, unit, last_quality, last_tags FROM series ORDER BY device_id, sensor",
      )
      .raw()
      .all();
    return texts.map(([device_id, sensor, id, unit, last_quality, last_tags]) => {
      const n = numbersOf(rows, id);
      return { device_id, sensor, unit, ...n, last_quality, last_tags };
    });
  })();
}

/** The text a series' newest reading carries. */
interface SeriesText {
  unit: string | null;
  quality: string;
  tags: string;
}

/** What an inserted row adds: its key, time and receive time, and the measurement as the row holds it. */
export type RollupInput = Pick<Reading, "device_id" | "sensor" | "ts" | "received_at"> & StoredMeasurement;

/**
 * The writer's side: every series' id, text and numbers in memory, read from the file when first needed and again
 * whenever another connection has committed since (`PRAGMA data_version`, read under the write lock, so nothing
 * can change between the check and the commit). A transaction that fails forgets the copy, which was changed for a
 * write that did not happen. Used only inside the store's write transactions.
 */
export class RollupWriter {
  readonly #db: Database.Database;
  readonly #dataVersion: Database.Statement<[], number>;
  readonly #insertText: Database.Statement;
  readonly #updateText: Database.Statement;
  readonly #deleteText: Database.Statement;
  readonly #writeRow: Database.Statement;
  readonly #nextGen: Database.Statement<[], number>;
  #state: State | undefined;

  constructor(db: Database.Database) {
    assertLittleEndian();
    this.#db = db;
    this.#dataVersion = db.prepare<[], number>("PRAGMA data_version").pluck();
    this.#insertText = db.prepare(
      "INSERT INTO series (device_id, sensor, id, unit, last_quality, last_tags, text_gen) VALUES (?, ?, ?, ?, ?, ?, ?)",
    );
    this.#updateText = db.prepare(
      "UPDATE series SET unit = ?, last_quality = ?, last_tags = ?, text_gen = ? WHERE device_id = ? AND sensor = ?",
    );
    this.#deleteText = db.prepare("DELETE FROM series WHERE device_id = ? AND sensor = ?");
    this.#writeRow = db.prepare(
      "INSERT INTO series_numbers (chunk, data) VALUES (?, ?) ON CONFLICT (chunk) DO UPDATE SET data = excluded.data",
    );
    this.#nextGen = db.prepare<[], number>("UPDATE series_gen SET gen = gen + 1 RETURNING gen").pluck();
  }

  /** Starts a change inside a write transaction: the copy, read again if the file changed under it. */
  begin(): void {
    const version = this.#dataVersion.get() as number;
    if (this.#state === undefined || this.#state.dataVersion !== version) this.#state = this.#load(version);
    this.#state.touched.clear();
    this.#state.newIds.length = 0;
    this.#state.textChanged.clear();
  }

  /** Forgets the copy (after a failed transaction): the next change reads the file again. */
  forget(): void {
    this.#state = undefined;
  }

  /** Adds one inserted row. */
  add(r: RollupInput): void {
    const s = this.#current();
    let sensors = s.ids.get(r.device_id);
    if (sensors === undefined) {
      sensors = new Map();
      s.ids.set(r.device_id, sensors);
    }
    let id = sensors.get(r.sensor);
    let f: Float64Array;
    let o: number;
    if (id === undefined) {
      id = s.nextId++;
      sensors.set(r.sensor, id);
      s.keys[id] = [r.device_id, r.sensor];
      s.texts[id] = { unit: r.unit, quality: r.quality, tags: r.tags };
      s.newIds.push(id);
      f = s.row(id >> SHIFT);
      o = (id & (SERIES_PER_ROW - 1)) * NUMBERS;
      f[o + FIRST] = r.ts;
      f[o + LAST] = r.ts;
      f[o + VALUE] = r.value;
      f[o + SEQ] = r.seq ?? Number.NaN;
      f[o + COUNT] = 1;
      f[o + SEEN] = r.received_at;
      f[o + INTERVAL] = 0;
    } else {
      f = s.row(id >> SHIFT);
      o = (id & (SERIES_PER_ROW - 1)) * NUMBERS;
      // A newly inserted ts never equals the stored last_ts (that row exists), so ">" decides which is newer.
      if (r.ts > (f[o + LAST] as number)) {
        f[o + LAST] = r.ts;
        f[o + VALUE] = r.value;
        f[o + SEQ] = r.seq ?? Number.NaN;
        const t = s.texts[id] as SeriesText;
        if (t.unit !== r.unit || t.quality !== r.quality || t.tags !== r.tags) {
          t.unit = r.unit;
          t.quality = r.quality;
          t.tags = r.tags;
          s.textChanged.add(id);
        }
      }
      if (r.ts < (f[o + FIRST] as number)) f[o + FIRST] = r.ts;
      f[o + COUNT] = (f[o + COUNT] as number) + 1;
      const seen = f[o + SEEN] as number;
      if (r.received_at > seen) {
        f[o + INTERVAL] = nextInterval(f[o + INTERVAL] as number, seen, r.received_at);
        f[o + SEEN] = r.received_at;
      }
    }
    s.touched.add(id >> SHIFT);
  }

  /** The ids of series whose oldest reading is before `cutoff`, at most `limit`, with their keys. */
  olderThan(cutoff: number, limit: number): [id: number, device: string, sensor: string][] {
    const s = this.#current();
    const found: [number, string, string][] = [];
    for (let id = 0; id < s.nextId && found.length < limit; id++) {
      const key = s.keys[id];
      if (key === undefined) continue;
      const f = s.row(id >> SHIFT);
      if ((f[(id & (SERIES_PER_ROW - 1)) * NUMBERS + FIRST] as number) < cutoff)
        found.push([id, key[0], key[1]]);
    }
    return found;
  }

  /** `n` rows of series `id` deleted: its oldest is now `first`, or it has none left (`undefined`) and is gone. */
  shrink(id: number, n: number, first: number | undefined): void {
    const s = this.#current();
    const f = s.row(id >> SHIFT);
    const o = (id & (SERIES_PER_ROW - 1)) * NUMBERS;
    s.touched.add(id >> SHIFT);
    if (first !== undefined) {
      f[o + FIRST] = first;
      f[o + COUNT] = (f[o + COUNT] as number) - n;
      return;
    }
    f.fill(0, o, o + NUMBERS);
    const [device, sensor] = s.keys[id] as [string, string];
    s.ids.get(device)?.delete(sensor);
    s.keys[id] = undefined;
    s.texts[id] = undefined;
    this.#deleteText.run(device, sensor);
  }

  /** Writes what this change touched: new and changed text rows (with a new generation), then the number rows. */
  commit(): void {
    const s = this.#current();
    if (s.newIds.length > 0 || s.textChanged.size > 0) {
      const gen = this.#nextGen.get() as number;
      for (const id of s.newIds) {
        const [device, sensor] = s.keys[id] as [string, string];
        const t = s.texts[id] as SeriesText;
        this.#insertText.run(device, sensor, id, t.unit, t.quality, t.tags, gen);
      }
      for (const id of s.textChanged) {
        if (s.newIds.includes(id)) continue;
        const [device, sensor] = s.keys[id] as [string, string];
        const t = s.texts[id] as SeriesText;
        this.#updateText.run(t.unit, t.quality, t.tags, gen, device, sensor);
      }
    }
    for (const row of s.touched) {
      const f = s.row(row);
      this.#writeRow.run(row, bytesOf(f));
    }
  }

  #current(): State {
    if (this.#state === undefined) throw new Error("RollupWriter used outside begin()");
    return this.#state;
  }

  #load(dataVersion: number): State {
    const rows = readNumberRows(this.#db);
    const state = new State(dataVersion, rows);
    const texts = this.#db
      .prepare<[], [string, string, number, string | null, string, string]>(
        "SELECT device_id, sensor, id, unit, last_quality, last_tags FROM series",
      )
      .raw()
      .all();
    for (const [device, sensor, id, unit, quality, tags] of texts) {
      let sensors = state.ids.get(device);
      if (sensors === undefined) {
        sensors = new Map();
        state.ids.set(device, sensors);
      }
      sensors.set(sensor, id);
      state.keys[id] = [device, sensor];
      state.texts[id] = { unit, quality, tags };
      if (id >= state.nextId) state.nextId = id + 1;
    }
    return state;
  }
}

class State {
  readonly ids = new Map<string, Map<string, number>>();
  readonly keys: ([string, string] | undefined)[] = [];
  readonly texts: (SeriesText | undefined)[] = [];
  nextId = 0;
  readonly touched = new Set<number>();
  readonly newIds: number[] = [];
  readonly textChanged = new Set<number>();

  constructor(
    readonly dataVersion: number,
    readonly rows: Float64Array[],
  ) {}

  /** Number row `n`, a new one of zeros (no series) when the file has none yet. */
  row(n: number): Float64Array {
    let f = this.rows[n];
    if (f === undefined) {
      f = new Float64Array(ROW_FLOATS);
      this.rows[n] = f;
    }
    return f;
  }
}
