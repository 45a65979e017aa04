import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import type { Reading } from "../../schemas/index.js";
import { PostgresStore } from "../../store/postgres.js";
import { PG_MIGRATIONS } from "../../store/postgres-migrations.js";
import { SqliteStore } from "../../store/sqlite.js";
import { postgresStores } from "../helpers/postgres.js";
import { reading } from "../helpers/query-db.js";

const T0 = Date.UTC(2026, 0, 31, 9);
const DAY_MS = 86_400_000;
const LATEST = PG_MIGRATIONS.at(-1)?.version ?? 0;

describe("the PostgreSQL store", () => {
  const { database, open, cleanup } = postgresStores();

  it("stores a reading once and tells resends of the same measurement from conflicting ones, as SQLite does", async () => {
    const db = await database("store_dupes");
    const pgStore = await open(db);
    const dir = mkdtempSync(join(tmpdir(), "store-pg-"));
    const sqlite = new SqliteStore(join(dir, "t.db"));
    cleanup(async () => {
      sqlite.close();
      rmSync(dir, { recursive: true, force: true });
    });
    const first = [
      reading("dev-a", "temperature", T0, 20.5, { seq: 1 }),
      reading("dev-a", "temperature", T0 + 1_000, 20.6, {
        seq: 2,
        quality: "uncertain",
        tags: { site: "n" },
      }),
      reading("dev-b", "humidity", T0, 55),
    ];
    const second: Reading[] = [
      reading("dev-b", "humidity", T0 + 1_000, 56),
      first[1] as Reading, // a redelivery: the same measurement
      reading("dev-a", "temperature", T0, 99.9, { seq: 1 }), // the same key, another value
      reading("dev-b", "humidity", T0 + 1_000, 57), // conflicts with the new row earlier in this batch
      reading("dev-a", "temperature", T0 + 1_000, 20.6, {
        seq: 2,
        quality: "uncertain",
        tags: { site: "s" },
      }),
    ];
    for (const batch of [first, second]) {
      const got = await pgStore.writeBatch(batch);
      expect(got).toEqual(sqlite.writeBatch(batch));
    }
    const again = await pgStore.writeBatch(second);
    expect(again.inserted).toBe(0);
    expect(again.duplicates).toBe(2);
    expect(again.conflicts.map((c) => c.index)).toEqual([2, 3, 4]);
    expect(again.conflicts[0]?.reason).toBe(
      `conflicting reading for dev-a/temperature at ${new Date(T0).toISOString()} (${T0}): ` +
        "stored value 20.5, unit C, seq 1; this one value 99.9, unit C, seq 1",
    );
    expect(again.conflicts[2]?.reason).toMatch(
      /stored value 20\.6.*tags \{"site":"n"\}; this one .*\{"site":"s"\}/,
    );
    const rows = await db.query<{
      device_id: string;
      ts: string;
      value: number;
      quality: string;
      tags: string;
    }>("SELECT device_id, ts, value, quality, tags FROM readings ORDER BY device_id, sensor, ts");
    expect(rows.map((r) => [r.device_id, Number(r.ts) - T0, r.value, r.quality, r.tags])).toEqual([
      ["dev-a", 0, 20.5, "good", "{}"],
      ["dev-a", 1_000, 20.6, "uncertain", '{"site":"n"}'],
      ["dev-b", 0, 55, "good", "{}"],
      ["dev-b", 1_000, 56, "good", "{}"],
    ]);
  });

  it("applies the numbered migrations once, records them, and refuses a database newer than it knows", async () => {
    const db = await database("store_migrations");
    // Processors starting together: the advisory lock lets one migrate, the others find it done.
    await Promise.all([open(db), open(db), open(db)]);
    const applied = await db.query<{ version: number }>(
      "SELECT version FROM schema_migrations ORDER BY version",
    );
    expect(applied.map((r) => r.version)).toEqual(PG_MIGRATIONS.map((m) => m.version));
    await open(db);
    expect(await db.query("SELECT version FROM schema_migrations")).toHaveLength(PG_MIGRATIONS.length);
    await db.query("INSERT INTO schema_migrations (version) VALUES ($1)", [LATEST + 1]);
    await expect(PostgresStore.open(db.url)).rejects.toThrow(
      new RegExp(`^cannot open PostgreSQL postgres://.*: database schema version ${LATEST + 1} is newer`),
    );
  });

  it("migrates a version 1 database: the rows stored before read quality good and tags {}", async () => {
    const db = await database("store_v1");
    await db.query(
      "CREATE TABLE schema_migrations (version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())",
    );
    await db.query(PG_MIGRATIONS[0]?.sql ?? "");
    await db.query("INSERT INTO schema_migrations (version) VALUES (1)");
    await db.query(
      `INSERT INTO readings (device_id, sensor, ts, value, unit, seq, gateway_id, received_at, stored_at)
       VALUES ('old', 't', $1, 1.5, NULL, NULL, 'gw', $1, $1)`,
      [T0],
    );
    const store = await open(db);
    expect(await store.writeBatch([reading("old", "t", T0, 1.5)])).toEqual({
      inserted: 0,
      duplicates: 1,
      conflicts: [],
      expired: 0,
    });
    expect(await db.query("SELECT quality, tags FROM readings")).toEqual([{ quality: "good", tags: "{}" }]);
  });

  it("never deadlocks two writers of overlapping batches in opposite orders, and stores each key once", async () => {
    const db = await database("store_overlap");
    const [a, b] = await Promise.all([open(db), open(db)]);
    const batch = Array.from({ length: 400 }, (_, i) => reading(`dev-${i % 7}`, `s${i % 3}`, T0 + i, i));
    const reversed = [...batch].reverse();
    const results = await Promise.all(
      Array.from({ length: 10 }, (_, i) => (i % 2 === 0 ? a.writeBatch(batch) : b.writeBatch(reversed))),
    );
    expect(results.reduce((n, r) => n + r.inserted, 0)).toBe(batch.length);
    expect(results.reduce((n, r) => n + r.duplicates, 0)).toBe(9 * batch.length);
    expect(results.every((r) => r.conflicts.length === 0)).toBe(true);
    expect(await db.query("SELECT count(*)::int AS n FROM readings")).toEqual([{ n: batch.length }]);
  });

  it("retention drops whole days before the cutoff, keeps the day holding it, and refuses readings below them", async () => {
    const db = await database("store_retention");
    const store = await open(db);
    // 100 readings on each of three days, from 09:00.
    const days = [0, 1, 2].map((d) => T0 + d * DAY_MS);
    await store.writeBatch(
      days.flatMap((day) =>
        Array.from({ length: 100 }, (_, i) => reading(`d${i % 5}`, `s${i % 2}`, day + i, i)),
      ),
    );
    const cutoff = days[1] as number; // 09:00 on the second day: only the first day is wholly before it
    expect(await store.deleteOlderThan(cutoff, 1_000)).toBe(100);
    expect(await store.deleteOlderThan(cutoff, 1_000)).toBe(0);
    const left = await db.query<{ n: number; lo: string }>(
      "SELECT count(*)::int AS n, min(ts) AS lo FROM readings",
    );
    expect(left).toEqual([{ n: 200, lo: String(cutoff) }]);
    const dropped = Date.UTC(2026, 1, 1);
    expect(await db.query("SELECT ts FROM horizons WHERE name = 'readings'")).toEqual([
      { ts: String(dropped) },
    ]);
    // A late reading of the dropped day is refused; one of the day holding the cutoff is stored.
    expect(
      await store.writeBatch([reading("d0", "s0", T0 + 500, 1), reading("d0", "s0", dropped + 1, 2)]),
    ).toEqual({ inserted: 1, duplicates: 0, conflicts: [], expired: 1 });
    // The tiers keep what was dropped from raw: the first day still counts its 100 readings.
    expect(
      await db.query("SELECT sum(count)::int AS n FROM rollup_1d WHERE start = $1", [T0 - (T0 % DAY_MS)]),
    ).toEqual([{ n: 100 }]);
  });

  it("refuses in one line, password masked, a server it cannot reach", async () => {
    await expect(PostgresStore.open("postgres://postgres:hunter2@127.0.0.1:1/nothing")).rejects.toThrow(
      /^cannot open PostgreSQL postgres:\/\/postgres:\*\*\*@127\.0\.0\.1:1\/nothing: .*ECONNREFUSED/,
    );
  });
});
