/**
 * The SQLite writer of the rollup tiers and the retention horizons (store/tiers.ts), used only inside
 * SqliteStore's transactions. A batch's inserted readings become one upsert per (series, bucket) and tier; the
 * horizons are kept in memory, read again whenever another connection has committed since (`PRAGMA data_version`,
 * read under the write lock), and forgotten after a failed transaction, which may have raised one.
 */
import type Database from "better-sqlite3";
import {
  bucketStart,
  type HorizonName,
  TIERS,
  type TierInput,
  type TierTable,
  tierUpsertSql,
} from "./tiers.js";

/** Key order of readings: device_id, sensor (by code unit, as SQLite compares), ts. */
const byReadingKey = (a: TierInput, b: TierInput): number =>
  a.device_id !== b.device_id
    ? a.device_id < b.device_id
      ? -1
      : 1
    : a.sensor !== b.sensor
      ? a.sensor < b.sensor
        ? -1
        : 1
      : a.ts - b.ts;

/** Where a tier's retention walk stands: series up to `after` hold nothing older than `cutoff`. */
interface Walk {
  readonly cutoff: number;
  after: readonly [device: string, sensor: string] | undefined;
  done: boolean;
}

/** The statements of one tier's table. */
interface TierStatements {
  readonly ms: number;
  readonly upsert: Database.Statement;
  /** The oldest row of the first series (`first`) or of the series after a key (`next`). */
  readonly first: Database.Statement<[], [string, string, number]>;
  readonly next: Database.Statement<[string, string], [string, string, number]>;
  /** The start of a series' old row `OFFSET` rows in: where a delete of at most that many rows stops. */
  readonly rangeEnd: Database.Statement<[string, string, number, number], number>;
  readonly deleteRange: Database.Statement<[string, string, number]>;
}

export class TierWriter {
  readonly #dataVersion: Database.Statement<[], number>;
  readonly #readHorizons: Database.Statement<[], [HorizonName, number]>;
  readonly #raise: Database.Statement<[number, HorizonName]>;
  readonly #tiers: ReadonlyMap<TierTable, TierStatements>;
  #horizons: Map<HorizonName, number> | undefined;
  #version = -1;
  /** Per tier, the retention walk under way, so each transaction goes on where the last one stopped. */
  readonly #walks = new Map<TierTable, Walk>();

  constructor(db: Database.Database) {
    this.#dataVersion = db.prepare<[], number>("PRAGMA data_version").pluck();
    this.#readHorizons = db.prepare<[], [HorizonName, number]>("SELECT name, ts FROM horizons").raw();
    this.#raise = db.prepare<[number, HorizonName]>("UPDATE horizons SET ts = max(ts, ?) WHERE name = ?");
    this.#tiers = new Map(
      TIERS.map((t) => {
        const keyed = `SELECT device_id, sensor, start FROM ${t.table}`;
        const statements: TierStatements = {
          ms: t.ms,
          upsert: db.prepare(tierUpsertSql(t.table, "sqlite")),
          first: db
            .prepare<[], [string, string, number]>(`${keyed} ORDER BY device_id, sensor, start LIMIT 1`)
            .raw(),
          next: db
            .prepare<[string, string], [string, string, number]>(
              `${keyed} WHERE (device_id, sensor) > (?, ?) ORDER BY device_id, sensor, start LIMIT 1`,
            )
            .raw(),
          rangeEnd: db
            .prepare<[string, string, number, number], number>(
              `SELECT start FROM ${t.table} WHERE device_id = ? AND sensor = ? AND start < ? ORDER BY start LIMIT 1 OFFSET ?`,
            )
            .pluck(),
          deleteRange: db.prepare<[string, string, number]>(
            `DELETE FROM ${t.table} WHERE device_id = ? AND sensor = ? AND start < ?`,
          ),
        };
        return [t.table, statements] as const;
      }),
    );
  }

  /**
   * Starts a transaction's use: the horizons read again if another connection committed since (a walk stays
   * good: no connection adds rows below a horizon). Returns the `readings` horizon.
   */
  begin(): number {
    const version = this.#dataVersion.get() as number;
    if (this.#horizons === undefined || version !== this.#version) {
      this.#horizons = new Map(this.#readHorizons.all());
      this.#version = version;
    }
    return this.horizon("readings");
  }

  /** The horizon of `name`, as {@link begin} read it. */
  horizon(name: HorizonName): number {
    if (this.#horizons === undefined) throw new Error("TierWriter used outside begin()");
    return this.#horizons.get(name) ?? 0;
  }

  /**
   * Adds a batch's inserted readings to every tier, leaving out those below a tier's horizon: one upsert per
   * (series, bucket), in key order: the rows `tierDeltas` (store/tiers.ts) gives, computed here from the readings
   * sorted once by key rather than by tierDeltas, which builds a key and two objects per reading and tier: on a fleet's batch
   * (a reading per series) that churn was a tenth of what the tiers cost the writer.
   */
  add(readings: readonly TierInput[]): void {
    if (readings.length === 0) return;
    const sorted = [...readings].sort(byReadingKey);
    for (const [table, t] of this.#tiers) {
      const horizon = this.horizon(table);
      let i = 0;
      while (i < sorted.length) {
        const first = sorted[i++] as TierInput;
        if (first.ts < horizon) continue;
        const start = bucketStart(first.ts, t.ms);
        let [count, min, max, sum, last] = [1, first.value, first.value, first.value, first];
        // The rest of this series' bucket follows, later readings after (sorted by ts, so none below the horizon).
        for (let n = sorted[i]; n !== undefined; n = sorted[++i]) {
          if (n.device_id !== first.device_id || n.sensor !== first.sensor || n.ts >= start + t.ms) break;
          count++;
          if (n.value < min) min = n.value;
          if (n.value > max) max = n.value;
          sum += n.value;
          last = n;
        }
        t.upsert.run(
          first.device_id,
          first.sensor,
          start,
          count,
          min,
          max,
          sum,
          first.ts,
          first.value,
          last.ts,
          last.value,
        );
      }
    }
  }

  /** Raises the horizon of `name` to `ts` (never lowers it), in the table and in memory. */
  raise(name: HorizonName, ts: number): void {
    const had = this.horizon(name);
    if (ts <= had) return;
    this.#raise.run(ts, name);
    this.#horizons?.set(name, ts);
  }

  /**
   * Deletes at most `limit` rows of `table` with `start < cutoff`, series by series along the primary key from
   * where the last call with this cutoff stopped, and raises the tier's horizon to the end of the last bucket that
   * may go (`cutoff` rounded up to the tier's width), so no late reading re-creates part of a deleted bucket.
   */
  deleteOlderThan(table: TierTable, cutoff: number, limit: number): number {
    const t = this.#statements(table);
    this.raise(table, Math.ceil(cutoff / t.ms) * t.ms);
    let walk = this.#walks.get(table);
    if (walk?.cutoff !== cutoff) {
      walk = { cutoff, after: undefined, done: false };
      this.#walks.set(table, walk);
    }
    let deleted = 0;
    while (!walk.done && deleted < limit) {
      const oldest = walk.after === undefined ? t.first.get() : t.next.get(...walk.after);
      if (oldest === undefined) {
        walk.done = true;
        break;
      }
      const [device, sensor, start] = oldest;
      if (start < cutoff) {
        const left = limit - deleted;
        const end = Math.min(cutoff, t.rangeEnd.get(device, sensor, cutoff, left) ?? cutoff);
        const n = t.deleteRange.run(device, sensor, end).changes;
        deleted += n;
        // Stopped by the limit inside this series: the next call starts with it again.
        if (end < cutoff) break;
      }
      walk.after = [device, sensor];
    }
    return deleted;
  }

  /** Forgets the horizons and walks (after a failed transaction): the next use reads the table again. */
  forget(): void {
    this.#horizons = undefined;
    this.#walks.clear();
  }

  #statements(table: TierTable): TierStatements {
    const t = this.#tiers.get(table);
    if (t === undefined) throw new Error(`${table} is not a rollup tier`);
    return t;
  }
}
