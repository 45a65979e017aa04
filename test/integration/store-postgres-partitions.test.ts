/**
 * PostgreSQL's `readings` partitioned by day (store/postgres-partitions.ts): partitions created ahead and on demand,
 * retention by dropping whole days (never a row-by-row delete), the lock timeouts that keep a long query from
 * holding writers back, the tiers' retention, and the migration of an unpartitioned database.
 */
import pg from "pg";
import { describe, expect, it } from "vitest";
import { PG_MIGRATIONS } from "../../store/postgres-migrations.js";
import { postgresStatus } from "../../store/postgres-status.js";
import { TIERS, tierFromReadingsSql } from "../../store/tiers.js";
import { type PgDatabase, postgresStores } from "../helpers/postgres.js";
import { reading } from "../helpers/query-db.js";

const DAY = 86_400_000;
const D0 = Date.UTC(2026, 2, 1); // a Sunday in March, far from today
const dayName = (ts: number) => `readings_${new Date(ts).toISOString().slice(0, 10).replaceAll("-", "")}`;
const LIST = `SELECT c.relname AS name FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
  WHERE i.inhparent = 'readings'::regclass ORDER BY 1`;

/** `n` readings on each of `days` days from D0, over two series, from 06:00. */
const daysOfReadings = (days: number, n: number) =>
  Array.from({ length: days }, (_, d) =>
    Array.from({ length: n }, (_, i) =>
      reading("dev", `s${i % 2}`, D0 + d * DAY + 6 * 3_600_000 + i * 1_000, i),
    ),
  ).flat();

describe("PostgreSQL day partitions", () => {
  const { database, open } = postgresStores();
  /** A session of an analyst's: a transaction that has read `readings` and stays open until `end()`. */
  const longQuery = async (db: PgDatabase) => {
    const client = new pg.Client({ connectionString: db.url });
    await client.connect();
    await client.query("BEGIN");
    await client.query("SELECT count(*) FROM readings");
    const end = async () => {
      await client.query("COMMIT");
      await client.end();
    };
    return { end };
  };

  it("creates today's and tomorrow's partitions at open, a new day's when a batch needs it, once across stores", async () => {
    const db = await database("parts_create");
    const [a, b] = await Promise.all([open(db), open(db)]);
    const today = Date.now() - (Date.now() % DAY);
    expect((await db.query<{ name: string }>(LIST)).map((r) => r.name)).toEqual([
      dayName(today),
      dayName(today + DAY),
    ]);
    // Both stores meet the same new days at once: each batch is stored, each day has one partition.
    const batch = daysOfReadings(3, 20);
    const results = await Promise.all([a.writeBatch(batch), b.writeBatch(batch)]);
    expect(results.map((r) => r.inserted).sort()).toEqual([0, 60]);
    expect((await db.query<{ name: string }>(LIST)).map((r) => r.name)).toEqual([
      dayName(D0),
      dayName(D0 + DAY),
      dayName(D0 + 2 * DAY),
      dayName(today),
      dayName(today + DAY),
    ]);
    expect(await db.query(`SELECT count(*)::int AS n FROM ${dayName(D0 + DAY)}`)).toEqual([{ n: 20 }]);
    expect((await postgresStatus(db.url)).bytes).toBeGreaterThan(0);
  });

  it("retention drops whole days, oldest first, a day or more per call, and deletes no row one by one", async () => {
    const db = await database("parts_drop");
    const store = await open(db);
    // Any row deleted by DELETE fails the statement: a partition dropped deletes no row.
    await db.query(`CREATE FUNCTION no_delete() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN RAISE EXCEPTION 'row deleted one by one'; END $$`);
    await db.query(
      "CREATE TRIGGER no_row_delete BEFORE DELETE ON readings FOR EACH ROW EXECUTE FUNCTION no_delete()",
    );
    await store.writeBatch(daysOfReadings(5, 200));
    await expect(db.query("DELETE FROM readings WHERE ts = $1", [D0 + 6 * 3_600_000])).rejects.toThrow(
      /row deleted one by one/,
    );
    const cutoff = D0 + 3 * DAY + 12 * 3_600_000; // noon of the fourth day
    // A day's 200 rows are more than the 150 asked for: one day per call.
    expect(await store.deleteOlderThan(cutoff, 150)).toBe(200);
    expect(await store.deleteOlderThan(cutoff, 150)).toBe(200);
    expect(await store.deleteOlderThan(cutoff, 1_000)).toBe(200);
    expect(await store.deleteOlderThan(cutoff, 1_000)).toBe(0);
    const names = (await db.query<{ name: string }>(LIST)).map((r) => r.name);
    expect(names.slice(0, 2)).toEqual([dayName(D0 + 3 * DAY), dayName(D0 + 4 * DAY)]);
    expect(await db.query("SELECT count(*)::int AS n FROM readings")).toEqual([{ n: 400 }]);
    expect(await db.query("SELECT ts FROM horizons WHERE name = 'readings'")).toEqual([
      { ts: String(D0 + 3 * DAY) },
    ]);
    const stats = await db.query<{ n: number }>(
      "SELECT coalesce(sum(n_tup_del), 0)::int AS n FROM pg_stat_user_tables WHERE relname LIKE 'readings_%'",
    );
    expect(stats).toEqual([{ n: 0 }]);
  });

  it("two processors dropping at once count each dropped row once", async () => {
    const db = await database("parts_drop_two");
    const [a, b] = await Promise.all([open(db), open(db)]);
    await a.writeBatch(daysOfReadings(4, 50));
    const cutoff = D0 + 3 * DAY;
    const counts = await Promise.all([a.deleteOlderThan(cutoff, 60), b.deleteOlderThan(cutoff, 60)]);
    const rest = [await a.deleteOlderThan(cutoff, 1_000), await b.deleteOlderThan(cutoff, 1_000)];
    expect([...counts, ...rest].reduce((n, c) => n + c, 0)).toBe(150);
    expect(await db.query("SELECT count(*)::int AS n FROM readings")).toEqual([{ n: 50 }]);
  });

  it("a drop gives up after the lock timeout while a query reads readings, and the next pass drops the day", async () => {
    const db = await database("parts_drop_wait");
    const store = await open(db);
    await store.writeBatch(daysOfReadings(2, 10));
    const query = await longQuery(db);
    try {
      await expect(store.deleteOlderThan(D0 + DAY, 1_000)).rejects.toThrow(/lock timeout/);
      expect(await db.query("SELECT count(*)::int AS n FROM readings")).toEqual([{ n: 20 }]);
      // The horizon is raised already: the day is closed to late readings, so its count stays what it dropped.
      expect(await store.writeBatch([reading("dev", "late", D0 + 1, 1)])).toMatchObject({ expired: 1 });
    } finally {
      await query.end();
    }
    expect(await store.deleteOlderThan(D0 + DAY, 1_000)).toBe(10);
    expect(await db.query("SELECT count(*)::int AS n FROM readings")).toEqual([{ n: 10 }]);
  });

  it("a batch needing a new partition fails while a query reads readings, stores nothing, and goes in when retried", async () => {
    const db = await database("parts_create_wait");
    const store = await open(db);
    await store.writeBatch(daysOfReadings(1, 10));
    const query = await longQuery(db);
    const batch = [
      reading("dev", "s0", D0 + 6 * 3_600_000 + 99_000, 5),
      reading("dev", "s0", D0 + 7 * DAY, 7),
    ];
    try {
      await expect(store.writeBatch(batch)).rejects.toThrow(/lock timeout/);
      // A batch whose days all have partitions is not held back by the query.
      expect(await store.writeBatch([reading("dev", "s1", D0 + 6 * 3_600_000 + 98_000, 1)])).toMatchObject({
        inserted: 1,
      });
    } finally {
      await query.end();
    }
    expect(await db.query("SELECT count(*)::int AS n FROM readings")).toEqual([{ n: 11 }]);
    expect(await store.writeBatch(batch)).toMatchObject({ inserted: 2, expired: 0 });
  });

  it("a tier's retention deletes at most the asked rows before the cutoff and later readings leave those buckets be", async () => {
    const db = await database("parts_tiers");
    const store = await open(db);
    await store.writeBatch(daysOfReadings(1, 240)); // 06:00 to 06:04, two series: 10 rows of rollup_1m
    const cutoff = D0 + 6 * 3_600_000 + 150_000; // inside the third minute
    expect(await store.deleteTierOlderThan("rollup_1m", cutoff, 3)).toBe(3);
    expect(await store.deleteTierOlderThan("rollup_1m", cutoff, 100)).toBe(3);
    expect(await store.deleteTierOlderThan("rollup_1m", cutoff, 100)).toBe(0);
    expect(await db.query("SELECT ts FROM horizons WHERE name = 'rollup_1m'")).toEqual([
      { ts: String(cutoff) },
    ]);
    // Late readings in the deleted minutes, and after the cutoff in the minute holding it, re-create no row there;
    // the hour tier counts them.
    await store.writeBatch([
      reading("dev", "s0", D0 + 6 * 3_600_000 + 500, 1),
      reading("dev", "s0", cutoff + 500, 2),
    ]);
    expect(
      await db.query("SELECT count(*)::int AS n FROM rollup_1m WHERE start < $1", [
        D0 + 6 * 3_600_000 + 180_000,
      ]),
    ).toEqual([{ n: 0 }]);
    expect(await db.query("SELECT sum(count)::int AS n FROM rollup_1h")).toEqual([{ n: 242 }]);
  });

  for (const version of [3, 4]) {
    it(`migrates an unpartitioned version ${version} database: its rows move into day partitions, the tiers count them`, async () => {
      const db = await database(`parts_v${version}`);
      await db.query(
        "CREATE TABLE schema_migrations (version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())",
      );
      const rows = daysOfReadings(3, 30);
      for (const m of PG_MIGRATIONS.filter((m) => m.version <= version)) {
        await db.query(m.sql);
        await db.query("INSERT INTO schema_migrations (version) VALUES ($1)", [m.version]);
        if (m.version !== 2) continue;
        for (const r of rows) {
          await db.query(
            `INSERT INTO readings (device_id, sensor, ts, value, unit, seq, gateway_id, received_at, stored_at, quality)
             VALUES ($1, $2, $3, $4, NULL, NULL, 'gw', $3, $3, 'uncertain')`,
            [r.device_id, r.sensor, r.ts, r.value],
          );
        }
      }
      const store = await open(db);
      expect(await db.query("SELECT relkind FROM pg_class WHERE relname = 'readings'")).toEqual([
        { relkind: "p" },
      ]);
      expect((await db.query<{ name: string }>(LIST)).map((r) => r.name).slice(0, 3)).toEqual(
        [0, 1, 2].map((d) => dayName(D0 + d * DAY)),
      );
      expect(await db.query("SELECT count(*)::int AS n, min(quality) AS q FROM readings")).toEqual([
        { n: 90, q: "uncertain" },
      ]);
      expect(await db.query("SELECT to_regclass('readings_unpartitioned') AS t")).toEqual([{ t: null }]);
      // A resend of a migrated row is a duplicate (the key holds across partitions); tiers equal the rows.
      expect(await store.writeBatch([{ ...(rows[0] as (typeof rows)[0]), gateway_id: "gw" }])).toMatchObject({
        inserted: 0,
      });
      for (const t of TIERS) {
        expect(await db.query(`SELECT * FROM ${t.table} ORDER BY device_id, sensor, start`), t.table).toEqual(
          await db.query(tierFromReadingsSql(t.ms)),
        );
      }
    });
  }
});
