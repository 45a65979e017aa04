import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import Database from "better-sqlite3";
import { afterEach, describe, expect, it } from "vitest";
import type { Reading } from "../../schemas/index.js";
import { MIGRATIONS, SqliteStore } from "../../store/sqlite.js";
import { readRollup } from "../../store/sqlite-rollup.js";

const TS0 = Date.UTC(2026, 0, 1);
const reading = (i: number, extra: Partial<Reading> = {}): Reading => ({
  device_id: "dev-1",
  sensor: "temperature",
  ts: TS0 + i,
  value: i / 4,
  unit: "C",
  seq: i,
  gateway_id: "gw",
  received_at: TS0 + i + 5,
  ...extra,
});

describe("the SQLite store", () => {
  const dirs: string[] = [];
  const stores: SqliteStore[] = [];
  afterEach(async () => {
    for (const s of stores.splice(0)) s.close();
    for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
  });
  const dbPath = () => {
    const dir = mkdtempSync(join(tmpdir(), "store-test-"));
    dirs.push(dir);
    return join(dir, "telemetry.db");
  };
  const open = (path: string) => {
    const store = new SqliteStore(path);
    stores.push(store);
    return store;
  };
  const rows = (store: SqliteStore) =>
    store.db.prepare("SELECT ts, quality, tags FROM readings ORDER BY ts").all() as {
      ts: number;
      quality: string;
      tags: string;
    }[];

  it("keeps the series rollup by default, and leaves it alone with rollups off (the benchmark's measure of its cost)", () => {
    const on = open(dbPath());
    const off = new SqliteStore(dbPath(), { rollups: false });
    stores.push(off);
    const batch = [reading(0), reading(1), reading(1), reading(2, { sensor: "humidity" })];
    for (const store of [on, off]) {
      expect(store.writeBatch(batch)).toEqual({ inserted: 3, duplicates: 1, conflicts: [], expired: 0 });
      expect(rows(store).map((r) => r.ts)).toEqual([TS0, TS0 + 1, TS0 + 2]);
    }
    const series = (store: SqliteStore) =>
      readRollup(store.db).map(({ sensor, count }) => ({ sensor, count }));
    expect(series(on)).toEqual([
      { sensor: "humidity", count: 1 },
      { sensor: "temperature", count: 2 },
    ]);
    expect(series(off)).toEqual([]);
  });

  it("stores quality and tags (JSON text), and the schema defaults for a reading without them", async () => {
    const store = open(dbPath());
    await store.writeBatch([
      reading(0, { quality: "uncertain", tags: { firmware: "2.1.0", site: "north" } }),
      reading(1, { quality: "good", tags: {} }),
      reading(2), // as decoded from nowhere: no quality, no tags
    ]);
    expect(rows(store)).toEqual([
      { ts: TS0, quality: "uncertain", tags: '{"firmware":"2.1.0","site":"north"}' },
      { ts: TS0 + 1, quality: "good", tags: "{}" },
      { ts: TS0 + 2, quality: "good", tags: "{}" },
    ]);
    const site = store.db.prepare("SELECT json_extract(tags, '$.site') AS site FROM readings WHERE ts = ?");
    expect(site.get(TS0)).toEqual({ site: "north" });
  });

  it("migration 2 adds quality and tags to a version 1 database without rewriting it; old rows read the defaults", async () => {
    const path = dbPath();
    const v1 = new Database(path);
    v1.pragma("journal_mode = WAL");
    v1.exec(MIGRATIONS[0]!.sql);
    v1.pragma("user_version = 1");
    const insert = v1.prepare(
      "INSERT INTO readings (device_id, sensor, ts, value, unit, seq, gateway_id, received_at, stored_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
    );
    v1.transaction(() => {
      for (let i = 0; i < 20_000; i++) insert.run("dev-1", "temperature", TS0 + i, i, "C", i, "gw", TS0, TS0);
    })();
    v1.pragma("wal_checkpoint(TRUNCATE)");
    const pagesBefore = v1.pragma("page_count", { simple: true }) as number;
    v1.close();

    const store = open(path);
    expect(store.db.pragma("user_version", { simple: true })).toBe(MIGRATIONS.at(-1)?.version);
    // A rewrite (new table, copy, drop) would at least double the pages or leave them on the free list. The four
    // pages more are the rollup of this one series: migration 4's generation counter and migration 5's `series`
    // (in migration 3's table's page), its index on `id`, and `series_numbers`; four more are migration 7's
    // `horizons` and its three tiers, a page each (20 s of readings: one bucket in each).
    expect(store.db.pragma("page_count", { simple: true })).toBe(pagesBefore + 8);
    expect(store.db.pragma("freelist_count", { simple: true })).toBe(0);
    expect(rows(store).at(-1)).toEqual({ ts: TS0 + 19_999, quality: "good", tags: "{}" });
    expect(
      store.db.prepare("SELECT count(*) AS n FROM readings WHERE quality = 'good' AND tags = '{}'").get(),
    ).toEqual({ n: 20_000 });

    await store.writeBatch([reading(20_000, { quality: "bad", tags: { a: "1" } })]);
    expect(rows(store).at(-1)).toEqual({ ts: TS0 + 20_000, quality: "bad", tags: '{"a":"1"}' });
  });

  it("opening a migrated database again changes nothing", async () => {
    const path = dbPath();
    await open(path).writeBatch([reading(0, { quality: "bad" })]);
    stores.pop()!.close();
    const again = open(path);
    expect(again.db.pragma("user_version", { simple: true })).toBe(MIGRATIONS.at(-1)!.version);
    expect(rows(again)).toEqual([{ ts: TS0, quality: "bad", tags: "{}" }]);
  });

  it("a resend with the same measurement is a duplicate; the same key with another measurement is a conflict and the first value stays", async () => {
    const store = open(dbPath());
    const first = reading(1, { value: 20.5, tags: { site: "north" } });
    await store.writeBatch([first]);
    // A redelivery may come from another gateway at another time: only the measurement decides.
    const resent = { ...first, gateway_id: "gw-2", received_at: first.received_at + 60_000 };
    expect(await store.writeBatch([resent])).toEqual({
      inserted: 0,
      duplicates: 1,
      conflicts: [],
      expired: 0,
    });

    const other = { ...first, value: 99.9 };
    const result = await store.writeBatch([reading(2), other, { ...first, tags: { site: "south" } }]);
    expect(result.inserted).toBe(1);
    expect(result.duplicates).toBe(0);
    expect(result.conflicts.map((c) => c.index)).toEqual([1, 2]);
    expect(result.conflicts[0]!.reason).toBe(
      `conflicting reading for dev-1/temperature at ${new Date(TS0 + 1).toISOString()} (${TS0 + 1}): ` +
        'stored value 20.5, unit C, seq 1, tags {"site":"north"}; this one value 99.9, unit C, seq 1, tags {"site":"north"}',
    );
    expect(result.conflicts[1]!.reason).toContain(
      'this one value 20.5, unit C, seq 1, tags {"site":"south"}',
    );
    expect(store.db.prepare("SELECT value, tags FROM readings WHERE ts = ?").get(TS0 + 1)).toEqual({
      value: 20.5,
      tags: '{"site":"north"}',
    });
  });
});
