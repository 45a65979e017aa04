import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import Database from "better-sqlite3";
import { afterEach, describe, expect, it } from "vitest";
import type { Reading } from "../../schemas/index.js";
import { mulberry32 as prng } from "../../simulators/model.js";
import type { ReadingQueries } from "../../store/queries.js";
import { MIGRATIONS, SqliteStore, seriesFromReadings } from "../../store/sqlite.js";
import { openSqliteQueries } from "../../store/sqlite-queries.js";
import { readRollup } from "../../store/sqlite-rollup.js";

const TS0 = Date.UTC(2026, 0, 1);

type SeriesRow = {
  device_id: string;
  sensor: string;
  unit: string | null;
  first_ts: number;
  last_ts: number;
  last_value: number;
  last_seq: number | null;
  last_quality: string;
  last_tags: string;
  count: number;
};

/** The rollup as the store keeps it (its sums; `text_gen`, a change marker, is tested on its own). */
const rollup = (db: Database.Database): SeriesRow[] =>
  readRollup(db).map((s) => ({
    device_id: s.device_id,
    sensor: s.sensor,
    unit: s.unit,
    first_ts: s.first_ts,
    last_ts: s.last_ts,
    last_value: s.last_value,
    last_seq: s.last_seq,
    last_quality: s.last_quality,
    last_tags: s.last_tags,
    count: s.count,
  }));

/** The rollup recomputed from the rows, the way an analyst would write it: the newest row's columns by lookup. */
const recomputed = (db: Database.Database) =>
  db
    .prepare(
      `SELECT g.device_id, g.sensor, r.unit, g.first_ts, g.last_ts, r.value AS last_value, r.seq AS last_seq,
              r.quality AS last_quality, r.tags AS last_tags, g.count
       FROM (SELECT device_id, sensor, min(ts) AS first_ts, max(ts) AS last_ts, count(*) AS count
             FROM readings GROUP BY device_id, sensor) AS g
       JOIN readings AS r ON r.device_id = g.device_id AND r.sensor = g.sensor AND r.ts = g.last_ts
       ORDER BY g.device_id, g.sensor`,
    )
    .all() as SeriesRow[];

/** A file as an older processor left it: the migrations up to `version` (SQL only: 1 to 4). */
const fileAtVersion = (path: string, version: number) => {
  const db = new Database(path);
  db.pragma("journal_mode = WAL");
  for (const m of MIGRATIONS.filter((m) => m.version <= version)) db.exec(m.sql);
  db.pragma(`user_version = ${version}`);
  return db;
};

describe("the per-series rollup", () => {
  const dirs: string[] = [];
  const closers: (() => unknown)[] = [];
  afterEach(async () => {
    for (const c of closers.splice(0).reverse()) await c();
    for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
  });
  const dbPath = () => {
    const dir = mkdtempSync(join(tmpdir(), "rollup-test-"));
    dirs.push(dir);
    return join(dir, "telemetry.db");
  };
  const open = (path: string) => {
    const store = new SqliteStore(path);
    closers.push(() => store.close());
    return store;
  };
  const queries = async (path: string) => {
    const q = await openSqliteQueries(path);
    closers.push(() => q.stop());
    return q;
  };

  /**
   * Random batches as a processor sees them: a few devices and sensors, timestamps out of order and repeated,
   * readings resent in later batches (duplicates), the same key with another value (conflicts), units that change.
   */
  function randomBatch(random: () => number, sent: Reading[]): Reading[] {
    const size = 1 + Math.floor(random() * 60);
    const batch: Reading[] = [];
    for (let i = 0; i < size; i++) {
      const old = sent[Math.floor(random() * sent.length)];
      const roll = random();
      if (old && roll < 0.2)
        batch.push(old); // redelivered
      else if (old && roll < 0.25)
        batch.push({ ...old, value: old.value + 1 }); // conflicting resend
      else {
        const r: Reading = {
          device_id: `dev-${Math.floor(random() * 4)}`,
          sensor: ["t", "h", "p"][Math.floor(random() * 3)] as string,
          ts: TS0 + Math.floor(random() * 500), // small range: many collisions, any order
          value: Math.round(random() * 1_000) / 10,
          unit: random() < 0.1 ? null : random() < 0.5 ? "C" : "F",
          seq: random() < 0.2 ? null : i,
          ...(random() < 0.3 ? { quality: "uncertain" as const, tags: { site: `s${i % 3}` } } : {}),
          gateway_id: "gw",
          received_at: TS0,
        };
        batch.push(r);
        sent.push(r);
      }
    }
    return batch;
  }

  it("always equals a GROUP BY over readings, through random batches with duplicates, conflicts, out-of-order timestamps and deletions", () => {
    for (const seed of [1, 2, 3, 42, 2_026]) {
      const random = prng(seed);
      const store = open(dbPath());
      const sent: Reading[] = [];
      for (let b = 0; b < 150; b++) {
        store.writeBatch(randomBatch(random, sent));
        if (random() < 0.15) {
          // Retention with a random cutoff and a batch size that often stops mid-series.
          const cutoff = TS0 + Math.floor(random() * 300);
          const limit = 1 + Math.floor(random() * 40);
          const before = store.db.prepare("SELECT count(*) AS n FROM readings WHERE ts < ?").get(cutoff) as {
            n: number;
          };
          expect(store.deleteOlderThan(cutoff, limit), `seed ${seed} batch ${b}`).toBe(
            Math.min(limit, before.n),
          );
        }
        expect(rollup(store.db), `seed ${seed} after batch ${b}`).toEqual(recomputed(store.db));
      }
      expect(rollup(store.db).length).toBeGreaterThan(6);
    }
  });

  it("a batch of a whole fleet (more series than one upsert statement takes) keeps the rollup equal to the rows", () => {
    const store = open(dbPath());
    const random = prng(99);
    const fleet = (round: number): Reading[] =>
      Array.from({ length: 250 }, (_, i) => ({
        device_id: `dev-${i % 70}`,
        sensor: `s${Math.floor(i / 70)}`,
        // Late, newer and equal times across rounds, so each upsert takes every branch.
        ts: TS0 + round * 10 + Math.floor(random() * 30) - 10,
        value: Math.round(random() * 1_000) / 10,
        unit: random() < 0.5 ? "C" : null,
        seq: round,
        ...(random() < 0.3 ? { quality: "bad" as const } : {}),
        gateway_id: "gw",
        received_at: TS0,
      }));
    for (let round = 0; round < 6; round++) {
      store.writeBatch(fleet(round));
      expect(rollup(store.db), `round ${round}`).toEqual(recomputed(store.db));
    }
    expect(rollup(store.db).length).toBe(250);
  });

  it("two writers on one file (two processors) keep it exact: each reads the rollup again when the other committed", () => {
    for (const seed of [3, 17]) {
      const path = dbPath();
      const writers = [open(path), open(path)];
      const random = prng(seed);
      const sent: Reading[] = [];
      for (let b = 0; b < 80; b++) {
        const store = writers[Math.floor(random() * 2)] as SqliteStore;
        store.writeBatch(randomBatch(random, sent));
        if (random() < 0.1)
          store.deleteOlderThan(TS0 + Math.floor(random() * 300), 1 + Math.floor(random() * 40));
        expect(rollup(store.db), `seed ${seed} batch ${b}`).toEqual(recomputed(store.db));
      }
    }
  });

  it("a batch that fails midway changes nothing, and the rollup stays exact after it", () => {
    const store = open(dbPath());
    const random = prng(31);
    const sent: Reading[] = [];
    for (let b = 0; b < 30; b++) {
      store.writeBatch(randomBatch(random, sent));
      if (b % 5 !== 4) continue;
      // Rows inserted and series added in memory before a row SQLite refuses (NaN is stored as NULL; value is
      // NOT NULL): the transaction rolls back, and the writer's copy of the rollup with it.
      const before = recomputed(store.db);
      const bad = [
        ...randomBatch(random, []),
        { ...(sent[0] as Reading), device_id: `new-${b}`, ts: TS0 + 9_999, value: Number.NaN },
      ];
      expect(() => store.writeBatch(bad)).toThrow(/NOT NULL/);
      expect(recomputed(store.db)).toEqual(before);
      expect(rollup(store.db), `after the failed batch ${b}`).toEqual(before);
    }
    expect(rollup(store.db)).toEqual(recomputed(store.db));
  });

  /** Every series' newest row as `latest` should answer it, straight from the rows. */
  const newestRows = (db: Database.Database) =>
    db
      .prepare(
        `SELECT r.device_id, r.sensor, r.ts, r.value, r.unit, r.seq, r.quality, json(r.tags) AS tags FROM readings AS r
         WHERE r.ts = (SELECT max(ts) FROM readings AS x WHERE x.device_id = r.device_id AND x.sensor = r.sensor)
         ORDER BY r.device_id, r.sensor`,
      )
      .all();
  const summariesOf = (devices: Awaited<ReturnType<ReadingQueries["devices"]>>) =>
    devices.flatMap((d) => d.sensors.map((s) => ({ device_id: d.device_id, ...s })));
  /** What `devices` answers for one rollup row. */
  const toSummary = ({ device_id, sensor, unit, first_ts, last_ts, last_value, count }: SeriesRow) => ({
    device_id,
    sensor,
    unit,
    first_ts,
    last_ts,
    last_value,
    count,
  });
  const expectedSummaries = (db: Database.Database) => recomputed(db).map(toSummary);

  it("devices and latest answer from the rollup exactly what the rows say", async () => {
    const path = dbPath();
    const store = open(path);
    const random = prng(7);
    const sent: Reading[] = [];
    for (let b = 0; b < 40; b++) store.writeBatch(randomBatch(random, sent));
    const q: ReadingQueries = await queries(path);

    expect(summariesOf(await q.devices())).toEqual(expectedSummaries(store.db));
    const latest = await q.latest();
    expect(latest.map((r) => ({ ...r, tags: JSON.stringify(r.tags) }))).toEqual(newestRows(store.db));
    expect(latest.some((r) => r.quality === "uncertain" && r.tags.site !== undefined)).toBe(true);
    expect((await q.latest("dev-2")).map((r) => r.sensor)).toEqual(
      recomputed(store.db)
        .filter((s) => s.device_id === "dev-2")
        .map((s) => s.sensor),
    );
    expect(await q.latest("no-such-device")).toEqual([]);
  });

  it("a reader kept open answers latest and devices as the rows say after every batch and deletion, and its version changes with each", async () => {
    for (const seed of [5, 11, 2_027]) {
      const path = dbPath();
      const store = open(path);
      const random = prng(seed);
      const sent: Reading[] = [];
      store.writeBatch(randomBatch(random, sent));
      const q = await queries(path);
      for (let b = 0; b < 120; b++) {
        const version = await q.version();
        const { inserted } = store.writeBatch(randomBatch(random, sent));
        // serve's answer cache keeps an answer while the version stays: every commit that stored a row changes it.
        if (inserted > 0) expect(await q.version(), `seed ${seed} batch ${b}`).not.toBe(version);
        if (random() < 0.15)
          store.deleteOlderThan(TS0 + Math.floor(random() * 400), 1 + Math.floor(random() * 40));
        const latest = (await q.latest()).map((r) => ({ ...r, tags: JSON.stringify(r.tags) }));
        expect(latest, `seed ${seed} batch ${b}`).toEqual(newestRows(store.db));
        expect(summariesOf(await q.devices()), `seed ${seed} batch ${b}`).toEqual(
          expectedSummaries(store.db),
        );
      }
    }
  });

  it("a reader kept open sees a unit, quality or tags change, and a series gone while another appears, between two questions", async () => {
    const path = dbPath();
    const store = open(path);
    const reading = (device_id: string, ts: number, more: Partial<Reading> = {}): Reading => ({
      device_id,
      sensor: "t",
      ts: TS0 + ts,
      value: ts,
      unit: "C",
      seq: ts,
      gateway_id: "gw",
      received_at: TS0,
      ...more,
    });
    store.writeBatch([reading("a", 1), reading("b", 100)]);
    const q = await queries(path);
    const brief = async () =>
      (await q.latest()).map(
        (r) => `${r.device_id} ${r.ts - TS0} ${r.unit} ${r.quality} ${JSON.stringify(r.tags)}`,
      );
    expect(await brief()).toEqual(["a 1 C good {}", "b 100 C good {}"]);
    store.writeBatch([reading("a", 2), reading("b", 101)]);
    expect(await brief()).toEqual(["a 2 C good {}", "b 101 C good {}"]);
    // A newer reading with another unit, then quality, then tags; each is seen at once.
    store.writeBatch([reading("a", 3, { unit: "F" })]);
    expect(await brief()).toEqual(["a 3 F good {}", "b 101 C good {}"]);
    store.writeBatch([reading("b", 102, { quality: "bad" })]);
    expect(await brief()).toEqual(["a 3 F good {}", "b 102 C bad {}"]);
    store.writeBatch([reading("b", 103, { quality: "bad", tags: { site: "x" } })]);
    expect(await brief()).toEqual(["a 3 F good {}", 'b 103 C bad {"site":"x"}']);
    // A late reading with another unit changes nothing the answer shows.
    store.writeBatch([reading("a", 0, { unit: "K" })]);
    expect(await brief()).toEqual(["a 3 F good {}", 'b 103 C bad {"site":"x"}']);
    // Series `a` deleted whole and `c` added: the same number of series as before.
    expect(store.deleteOlderThan(TS0 + 50, 100)).toBe(4);
    store.writeBatch([reading("c", 200)]);
    expect(await brief()).toEqual(['b 103 C bad {"site":"x"}', "c 200 C good {}"]);
    expect(summariesOf(await q.devices())).toEqual(expectedSummaries(store.db));
  });

  it("migration 3 builds the rollup from the rows a version 2 database already holds", () => {
    const path = dbPath();
    const v2 = fileAtVersion(path, 2);
    const insert = v2.prepare(
      "INSERT INTO readings (device_id, sensor, ts, value, unit, seq, gateway_id, received_at, stored_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
    );
    v2.transaction(() => {
      for (let i = 0; i < 3_000; i++)
        insert.run(`dev-${i % 7}`, `s-${i % 3}`, TS0 + ((i * 7_919) % 10_000), i, `u${i}`, i, "gw", TS0, TS0);
    })();
    v2.close();

    const store = open(path);
    expect(store.db.pragma("user_version", { simple: true })).toBe(MIGRATIONS.at(-1)?.version);
    const built = rollup(store.db);
    expect(built).toHaveLength(21);
    expect(built).toEqual(recomputed(store.db));
    expect(built.reduce((n, s) => n + s.count, 0)).toBe(3_000);
  });

  it("a query on a file of an older version migrates it when it opens it, then answers from the rollup", async () => {
    const path = dbPath();
    const v2 = fileAtVersion(path, 2);
    v2.prepare(
      "INSERT INTO readings (device_id, sensor, ts, value, unit, seq, gateway_id, received_at, stored_at) VALUES ('d', 's', ?, ?, 'C', NULL, 'gw', 0, 0)",
    ).run(TS0, 1.5);
    v2.prepare(
      "INSERT INTO readings (device_id, sensor, ts, value, unit, seq, gateway_id, received_at, stored_at) VALUES ('d', 's', ?, ?, 'K', NULL, 'gw', 0, 0)",
    ).run(TS0 + 10, 2.5);
    v2.close();

    const q = await queries(path);
    expect(await q.devices()).toEqual([
      {
        device_id: "d",
        last_seen: 0,
        interval_ms: null,
        sensors: [{ sensor: "s", unit: "K", first_ts: TS0, last_ts: TS0 + 10, last_value: 2.5, count: 2 }],
      },
    ]);
    expect((await q.latest()).map((r) => [r.ts, r.value, r.unit])).toEqual([[TS0 + 10, 2.5, "K"]]);
    const check = new Database(path, { readonly: true });
    expect(check.pragma("user_version", { simple: true })).toBe(MIGRATIONS.at(-1)?.version);
    check.close();
  });

  it("migration 5 moves a version 4 file's rollup into series and series_numbers unchanged, run by the first reader or writer to open it", async () => {
    const path = dbPath();
    const v4 = fileAtVersion(path, 4);
    const insert = v4.prepare(
      "INSERT INTO readings (device_id, sensor, ts, value, unit, seq, gateway_id, received_at, stored_at, quality, tags) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    );
    v4.transaction(() => {
      for (let i = 0; i < 2_000; i++)
        insert.run(
          `dev-${i % 90}`,
          `s-${Math.floor(i / 90) % 2}`,
          TS0 + ((i * 7_919) % 10_000),
          i / 3,
          i % 5 ? "C" : null,
          i % 4 ? i : null,
          "gw",
          TS0,
          TS0,
          i % 3 ? "good" : "bad",
          i % 7 ? "{}" : '{"a":"b"}',
        );
      // Version 4's rollup as its writer kept it: built from the rows, as migration 3 does.
      v4.exec("DELETE FROM series");
      v4.exec(
        `INSERT INTO series (device_id, sensor, unit, first_ts, last_ts, last_value, last_seq, last_quality, last_tags, count) ${seriesFromReadings()}`,
      );
    })();
    v4.close();
    const check = new Database(path, { readonly: true });
    const expected = recomputed(check);
    check.close();
    expect(expected).toHaveLength(180);

    const before = await queries(path); // migrates the file to version 5 and on
    expect(summariesOf(await before.devices())).toEqual(expected.map(toSummary));
    expect((await before.latest("dev-3")).map((r) => [r.sensor, r.ts, r.value])).toEqual(
      expected.filter((s) => s.device_id === "dev-3").map((s) => [s.sensor, s.last_ts, s.last_value]),
    );

    const store = open(path);
    expect(store.db.pragma("user_version", { simple: true })).toBe(MIGRATIONS.at(-1)?.version);
    expect(rollup(store.db)).toEqual(expected);
    expect(store.db.pragma("freelist_count", { simple: true })).toBe(0);
    // And the writer goes on from it.
    store.writeBatch([
      {
        device_id: "dev-3",
        sensor: "s-0",
        ts: TS0 + 20_000,
        value: 1,
        unit: "K",
        seq: 1,
        gateway_id: "gw",
        received_at: TS0,
      },
    ]);
    expect(rollup(store.db)).toEqual(recomputed(store.db));
    const after = await queries(path);
    expect((await after.latest("dev-3")).map((r) => [r.sensor, r.ts, r.unit])).toEqual([
      ["s-0", TS0 + 20_000, "K"],
      [
        "s-1",
        expected.find((s) => s.device_id === "dev-3" && s.sensor === "s-1")?.last_ts,
        expected.find((s) => s.device_id === "dev-3" && s.sensor === "s-1")?.unit,
      ],
    ]);
  });

  it("deleting old readings takes at most the batch size, keeps the newer rows, and removes a series left empty", () => {
    const store = open(dbPath());
    const rows: Reading[] = [];
    for (let i = 0; i < 100; i++) {
      for (const sensor of ["a", "b"]) {
        rows.push({
          device_id: "d",
          sensor,
          ts: TS0 + i,
          value: i,
          unit: "C",
          seq: i,
          gateway_id: "gw",
          received_at: TS0,
        });
      }
    }
    rows.push({
      device_id: "gone",
      sensor: "x",
      ts: TS0,
      value: 1,
      unit: null,
      seq: null,
      gateway_id: "gw",
      received_at: TS0,
    });
    store.writeBatch(rows);

    expect(store.deleteOlderThan(TS0 + 60, 50)).toBe(50);
    expect(store.deleteOlderThan(TS0 + 60, 50)).toBe(50);
    expect(store.deleteOlderThan(TS0 + 60, 50)).toBe(21); // fewer than the batch: nothing older is left
    expect(store.deleteOlderThan(TS0 + 60, 50)).toBe(0);
    expect(rollup(store.db)).toEqual(
      ["a", "b"].map((sensor) => ({
        device_id: "d",
        sensor,
        unit: "C",
        first_ts: TS0 + 60,
        last_ts: TS0 + 99,
        last_value: 99,
        last_seq: 99,
        last_quality: "good",
        last_tags: "{}",
        count: 40,
      })),
    );
    expect(store.db.prepare("SELECT min(ts) AS lo, count(*) AS n FROM readings").get()).toEqual({
      lo: TS0 + 60,
      n: 80,
    });
  });
});
