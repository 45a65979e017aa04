import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import Database from "better-sqlite3";
import { afterEach, describe, expect, it } from "vitest";
import type { Reading } from "../../schemas/index.js";
import { SqliteStore } from "../../store/sqlite.js";
import {
  type HorizonName,
  TIERS,
  type TierRow,
  type TierTable,
  tierFromReadingsSql,
} from "../../store/tiers.js";

const TS0 = Date.UTC(2026, 0, 1);
const MINUTE = 60_000;
const HOUR = 3_600_000;
const DAY = 86_400_000;

/** A seeded generator (xorshift32), floats in [0, 1): the same rounds on every run. */
function seeded(seed: number): () => number {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    return x / 4_294_967_296;
  };
}

const keyOf = (r: Pick<Reading, "device_id" | "sensor" | "ts">) =>
  `${r.device_id}\u0000${r.sensor}\u0000${r.ts}`;

/**
 * What the store should hold, kept beside it: every reading ever stored (what `inserted` counted, whether or not
 * retention deleted its row since), in a table of its own so that `tierFromReadingsSql` recomputes the tiers, and
 * the horizons as retention raised them.
 */
class Shadow {
  readonly db = new Database(":memory:");
  readonly stored = new Set<string>();
  readonly horizons = new Map<HorizonName, number>([
    ["readings", 0],
    ["rollup_1m", 0],
    ["rollup_1h", 0],
    ["rollup_1d", 0],
  ]);
  readonly #insert;

  constructor() {
    this.db.exec(
      "CREATE TABLE readings (device_id TEXT, sensor TEXT, ts INTEGER, value REAL, PRIMARY KEY (device_id, sensor, ts))",
    );
    this.#insert = this.db.prepare("INSERT INTO readings VALUES (?, ?, ?, ?)");
  }

  /** What a batch should do: each reading inserted unless expired or its key was stored before. */
  write(batch: readonly Reading[]): { inserted: number; duplicates: number; expired: number } {
    const horizon = this.horizons.get("readings") as number;
    let [inserted, expired] = [0, 0];
    for (const r of batch) {
      if (r.ts < horizon) expired++;
      else if (!this.stored.has(keyOf(r))) {
        this.stored.add(keyOf(r));
        this.#insert.run(r.device_id, r.sensor, r.ts, r.value);
        inserted++;
      }
    }
    return { inserted, duplicates: batch.length - inserted - expired, expired };
  }

  raise(name: HorizonName, ts: number): void {
    this.horizons.set(name, Math.max(this.horizons.get(name) as number, ts));
  }

  /** The tier recomputed from every reading stored, from the tier's horizon on. */
  tier(table: TierTable, ms: number): TierRow[] {
    return this.db
      .prepare(tierFromReadingsSql(ms, `WHERE ts >= ${this.horizons.get(table)}`))
      .all() as TierRow[];
  }
}

const tierRows = (db: Database.Database, table: TierTable) =>
  db.prepare(`SELECT * FROM ${table} ORDER BY device_id, sensor, start`).all() as TierRow[];

/**
 * Each row equal to the recomputed one: count, min, max, first and last exactly; `sum` is a float sum added in
 * another order (per batch, then per upsert), so within a relative 1e-9.
 */
function expectSameTier(actual: TierRow[], expected: TierRow[], where: string): void {
  expect(actual.length, where).toBe(expected.length);
  actual.forEach((a, i) => {
    const e = expected[i] as TierRow;
    expect({ ...a, sum: 0 }, where).toEqual({ ...e, sum: 0 });
    expect(
      Math.abs(a.sum - e.sum),
      `${where}: sum of ${a.device_id}/${a.sensor}@${a.start}`,
    ).toBeLessThanOrEqual(1e-9 * Math.max(1, Math.abs(e.sum)));
  });
}

describe("the rollup tiers on SQLite", () => {
  const dirs: string[] = [];
  const closers: (() => void)[] = [];
  afterEach(() => {
    for (const c of closers.splice(0).reverse()) c();
    for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
  });
  const open = (path?: string) => {
    let file = path;
    if (file === undefined) {
      const dir = mkdtempSync(join(tmpdir(), "tiers-test-"));
      dirs.push(dir);
      file = join(dir, "telemetry.db");
    }
    const store = new SqliteStore(file);
    closers.push(() => store.close());
    return store;
  };

  /**
   * A batch as a processor sees them over three days: new readings at any time (so late and out of order against
   * what came before and below the horizons retention raises), resends of stored readings (duplicates), the same
   * key with another value (conflicts); values with decimals, so sums are float sums.
   */
  function randomBatch(random: () => number, sent: Reading[]): Reading[] {
    const batch: Reading[] = [];
    const size = 1 + Math.floor(random() * 40);
    for (let i = 0; i < size; i++) {
      const old = sent[Math.floor(random() * sent.length)];
      const roll = random();
      if (old && roll < 0.2) batch.push(old);
      else if (old && roll < 0.3) batch.push({ ...old, value: old.value + 0.5 });
      else {
        const r: Reading = {
          device_id: `dev-${Math.floor(random() * 3)}`,
          sensor: ["t", "h"][Math.floor(random() * 2)] as string,
          ts: TS0 + Math.floor(random() * 3 * 24 * 60) * MINUTE + Math.floor(random() * 4) * 15_000,
          value: Math.round((random() - 0.3) * 10_000) / 100,
          unit: "C",
          seq: null,
          gateway_id: "gw",
          received_at: TS0,
        };
        batch.push(r);
        sent.push(r);
      }
    }
    return batch;
  }

  const expectExact = (store: SqliteStore, shadow: Shadow, where: string) => {
    for (const t of TIERS)
      expectSameTier(tierRows(store.db, t.table), shadow.tier(t.table, t.ms), `${where}: ${t.table}`);
    const horizons = store.db.prepare("SELECT name, ts FROM horizons").all() as {
      name: HorizonName;
      ts: number;
    }[];
    expect(new Map(horizons.map((h) => [h.name, h.ts])), where).toEqual(shadow.horizons);
  };

  it("stay equal to a recomputation from every reading ever stored, through duplicates, conflicts, late readings, replays and both retentions", () => {
    let rounds = 0;
    for (const seed of [1, 7, 42, 2_026, 31_337]) {
      const random = seeded(seed);
      const store = open();
      // A thousand commits: durability is not what this checks, and an fsync each would take minutes.
      store.db.pragma("synchronous = OFF");
      const shadow = new Shadow();
      const sent: Reading[] = [];
      const batches: Reading[][] = [];
      for (let step = 0; step < 200; step++, rounds++) {
        const where = `seed ${seed} step ${step}`;
        const roll = random();
        if (roll < 0.6 || batches.length === 0) {
          const batch =
            roll < 0.08 && batches.length > 0
              ? (batches[Math.floor(random() * batches.length)] as Reading[])
              : randomBatch(random, sent);
          batches.push(batch);
          const expected = shadow.write(batch);
          const result = store.writeBatch(batch);
          expect({ ...result, conflicts: result.conflicts.length }, where).toMatchObject({
            inserted: expected.inserted,
            expired: expected.expired,
          });
          expect(result.duplicates + result.conflicts.length, where).toBe(expected.duplicates);
        } else if (roll < 0.75) {
          // Raw retention at a random cutoff (often below the horizon already), a limit that often stops midway.
          const cutoff = TS0 + Math.floor(random() * 1.5 * DAY);
          const limit = 1 + Math.floor(random() * 30);
          const before = store.db
            .prepare("SELECT count(*) AS n FROM readings WHERE ts < ?")
            .pluck()
            .get(cutoff) as number;
          expect(store.deleteOlderThan(cutoff, limit), where).toBe(Math.min(limit, before));
          shadow.raise("readings", cutoff);
        } else {
          // A tier's retention run to the end in small transactions, batches written between them; the cutoff is
          // not always on a bucket boundary: the store deletes whole buckets from their start.
          const t = TIERS[Math.floor(random() * TIERS.length)] as (typeof TIERS)[number];
          const cutoff = TS0 + Math.floor(random() * 2 * DAY);
          const limit = 1 + Math.floor(random() * 40);
          let n = limit;
          while (n === limit) {
            n = store.deleteTierOlderThan(t.table, cutoff, limit);
            expect(n, where).toBeLessThanOrEqual(limit);
            if (random() < 0.3) {
              const batch = randomBatch(random, sent);
              shadow.write(batch);
              store.writeBatch(batch);
            }
          }
          shadow.raise(t.table, Math.ceil(cutoff / t.ms) * t.ms);
          const left = store.db
            .prepare(`SELECT count(*) FROM ${t.table} WHERE start < ?`)
            .pluck()
            .get(cutoff);
          expect(left, `${where}: ${t.table} rows left before ${cutoff}`).toBe(0);
        }
        expectExact(store, shadow, where);
      }
      // The rounds reached every case: rows in each tier, and readings refused or left out by a horizon.
      for (const t of TIERS) expect(tierRows(store.db, t.table).length, `seed ${seed}`).toBeGreaterThan(0);
      expect(shadow.horizons.get("readings"), `seed ${seed}`).toBeGreaterThan(TS0 + DAY / 2);
      expect(shadow.horizons.get("rollup_1m"), `seed ${seed}`).toBeGreaterThan(TS0 + DAY / 2);
    }
    expect(rounds).toBe(1_000);
  }, 180_000);

  it("a reading below the readings horizon is refused as expired: not stored, not counted, even as a replay of one stored before", () => {
    const store = open();
    const at = (ts: number, value: number): Reading => ({
      device_id: "d",
      sensor: "s",
      ts,
      value,
      unit: null,
      seq: null,
      gateway_id: "gw",
      received_at: ts,
    });
    const old = at(TS0 + 10 * MINUTE, 1);
    expect(store.writeBatch([old, at(TS0 + 2 * HOUR, 2)])).toMatchObject({ inserted: 2, expired: 0 });
    expect(store.deleteOlderThan(TS0 + HOUR, 100)).toBe(1);
    const result = store.writeBatch([old, at(TS0 + 30 * MINUTE, 3), at(TS0 + 3 * HOUR, 4)]);
    expect(result).toEqual({ inserted: 1, duplicates: 0, conflicts: [], expired: 2, horizon: TS0 + HOUR });
    expect(store.db.prepare("SELECT ts FROM readings ORDER BY ts").pluck().all()).toEqual([
      TS0 + 2 * HOUR,
      TS0 + 3 * HOUR,
    ]);
    // The day still counts the reading retention deleted, once, and nothing of the refused ones.
    expect(tierRows(store.db, "rollup_1d")).toEqual([
      {
        device_id: "d",
        sensor: "s",
        start: TS0,
        count: 3,
        min: 1,
        max: 4,
        sum: 7,
        first_ts: TS0 + 10 * MINUTE,
        first_value: 1,
        last_ts: TS0 + 3 * HOUR,
        last_value: 4,
      },
    ]);
    // A batch with none expired says nothing of the horizon.
    expect(store.writeBatch([at(TS0 + 4 * HOUR, 5)])).toEqual({
      inserted: 1,
      duplicates: 0,
      conflicts: [],
      expired: 0,
    });
  });

  it("a failed retention transaction leaves no raised horizon behind in memory", () => {
    const store = open();
    const at = (ts: number): Reading => ({
      device_id: "d",
      sensor: "s",
      ts,
      value: 1.5,
      unit: null,
      seq: null,
      gateway_id: "gw",
      received_at: ts,
    });
    store.writeBatch([at(TS0), at(TS0 + DAY)]);
    // Each delete fails after the transaction raised its horizon (a trigger refuses the rows' deletion).
    store.db.exec(`CREATE TEMP TRIGGER no_raw BEFORE DELETE ON readings BEGIN SELECT RAISE(ABORT, 'refused'); END;
      CREATE TEMP TRIGGER no_tier BEFORE DELETE ON rollup_1m BEGIN SELECT RAISE(ABORT, 'refused'); END;`);
    expect(() => store.deleteOlderThan(TS0 + HOUR, 10)).toThrow(/refused/);
    expect(() => store.deleteTierOlderThan("rollup_1m", TS0 + HOUR, 10)).toThrow(/refused/);
    store.db.exec("DROP TRIGGER no_raw; DROP TRIGGER no_tier");
    // Both horizons are still 0, in the table and for the writer: a reading below the cutoffs is stored and counted.
    expect(store.writeBatch([at(TS0 + MINUTE)])).toMatchObject({ inserted: 1, expired: 0 });
    expect(store.db.prepare("SELECT ts FROM horizons").pluck().all()).toEqual([0, 0, 0, 0]);
    expect(store.db.prepare("SELECT start FROM rollup_1m ORDER BY start").pluck().all()).toEqual([
      TS0,
      TS0 + MINUTE,
      TS0 + DAY,
    ]);
  });

  it("two writers on one file see each other's horizons: a reading the other's retention made expired is refused", () => {
    const dir = mkdtempSync(join(tmpdir(), "tiers-test-"));
    dirs.push(dir);
    const path = join(dir, "telemetry.db");
    const [a, b] = [open(path), open(path)];
    const at = (ts: number): Reading => ({
      device_id: "d",
      sensor: "s",
      ts,
      value: 2,
      unit: null,
      seq: null,
      gateway_id: "gw",
      received_at: ts,
    });
    a.writeBatch([at(TS0 + DAY)]);
    b.writeBatch([at(TS0 + 2 * DAY)]);
    b.deleteOlderThan(TS0 + DAY / 2, 10);
    b.deleteTierOlderThan("rollup_1h", TS0 + DAY + HOUR / 2, 10);
    expect(a.writeBatch([at(TS0), at(TS0 + DAY + MINUTE)])).toMatchObject({ inserted: 1, expired: 1 });
    // Stored raw, but the hour it falls in is below rollup_1h's horizon (rounded up to the hour): left out there.
    expect(a.db.prepare("SELECT start, count FROM rollup_1h ORDER BY start").raw().all()).toEqual([
      [TS0 + 2 * DAY, 1],
    ]);
    expect(a.db.prepare("SELECT start, count FROM rollup_1m ORDER BY start").raw().all()).toEqual([
      [TS0 + DAY, 1],
      [TS0 + DAY + MINUTE, 1],
      [TS0 + 2 * DAY, 1],
    ]);
  });

  it("with rollups off (the benchmark's baseline) the tiers are left alone", () => {
    const batch = [
      {
        device_id: "d",
        sensor: "s",
        ts: TS0,
        value: 1,
        unit: null,
        seq: null,
        gateway_id: "gw",
        received_at: TS0,
      },
    ];
    const dir = mkdtempSync(join(tmpdir(), "tiers-test-"));
    dirs.push(dir);
    const store = new SqliteStore(join(dir, "t.db"), { rollups: false });
    closers.push(() => store.close());
    store.writeBatch(batch);
    for (const t of TIERS) expect(tierRows(store.db, t.table), t.table).toEqual([]);
    // Tiers off alone (the benchmark's measure of the tiers): the series rollup is kept, the tiers are not.
    const seriesOnly = new SqliteStore(join(dir, "s.db"), { tiers: false });
    closers.push(() => seriesOnly.close());
    seriesOnly.writeBatch(batch);
    expect(seriesOnly.db.prepare("SELECT count(*) FROM series").pluck().get()).toBe(1);
    for (const t of TIERS) expect(tierRows(seriesOnly.db, t.table), t.table).toEqual([]);
  });
});
