/**
 * `stats` and `series` answered from the rollup tiers and raw rows together (store/bucket-plan.ts), on a real
 * SQLite file and the real PostgreSQL, against a recomputation from every reading written.
 */
import { spawnSync } from "node:child_process";
import Database from "better-sqlite3";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Reading } from "../../schemas/index.js";
import { mulberry32 as random } from "../../simulators/model.js";
import { openQueries } from "../../store/index.js";
import { type Bucket, chartBucketWidth, type ReadingQueries, type SeriesPoint } from "../../store/queries.js";
import { TIERS, tierFromReadingsSql } from "../../store/tiers.js";
import { reading } from "../helpers/query-db.js";
import { STORE_KINDS, type TestStore, testStore } from "../helpers/stores.js";

const MIN = 60_000;
const H = 60 * MIN;
const D = 24 * H;
const T0 = Date.UTC(2026, 2, 1);
const SENSORS = ["rh", "t"];
/** Plus "p", whose readings all fall in the first day (every third hour): retention deletes all its raw rows. */
const ALL_SENSORS = ["p", ...SENSORS];
const EVERY = [MIN, 5 * MIN, 15 * MIN, H, D];

/** Runs statements on the store's own database, as an analyst's SQL tool or retention would. */
async function sqlOf(store: TestStore): Promise<{ run(sql: string): Promise<void>; close(): Promise<void> }> {
  if (store.kind === "SQLite") {
    const db = new Database(store.config.dbPath);
    return {
      run: async (sql) => void db.exec(sql),
      close: async () => void db.close(),
    };
  }
  const client = new pg.Client({ connectionString: store.config.databaseUrl });
  await client.connect();
  return {
    run: async (sql) => void (await client.query(sql)),
    close: () => client.end(),
  };
}

/** The tiers recomputed from the rows stored: what the writers keep them equal to. */
const refillTiers = (sql: { run(sql: string): Promise<void> }) =>
  Promise.all(
    TIERS.map((t) =>
      sql.run(
        `DELETE FROM ${t.table}; INSERT INTO ${t.table} (device_id, sensor, start, count, min, max, sum, first_ts, first_value, last_ts, last_value) ${tierFromReadingsSql(t.ms)}`,
      ),
    ),
  );

async function all<T>(it: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const x of it) out.push(x);
  return out;
}

/** The buckets of the readings (one series, in ts order) in [from, to), computed from every row. */
function rawBuckets(
  rows: readonly Reading[],
  every: number,
  from: number,
  to: number,
  sensor: string,
): Bucket[] {
  const out: Bucket[] = [];
  for (const r of rows) {
    if (r.ts < from || r.ts >= to) continue;
    const start = r.ts - (r.ts % every);
    const b = out.at(-1);
    if (b?.start === start) {
      out[out.length - 1] = {
        ...b,
        count: b.count + 1,
        min: Math.min(b.min as number, r.value),
        max: Math.max(b.max as number, r.value),
        mean: (b.mean as number) + r.value,
        last: r.value,
      };
    } else
      out.push({
        device_id: "d",
        sensor,
        start,
        count: 1,
        min: r.value,
        max: r.value,
        mean: r.value,
        last: r.value,
      });
  }
  return out.map((b) => ({ ...b, mean: (b.mean as number) / b.count }));
}

/** Buckets with the mean to 9 significant digits: a sum of sums may differ from a sum of values in the last bits. */
const rounded = <T extends { mean: number | null }>(bs: readonly T[]) =>
  bs.map((b) => ({ ...b, mean: b.mean === null ? null : Number(b.mean.toPrecision(9)) }));

describe.each(STORE_KINDS)("%s: stats and series from the tiers and raw rows", (kind) => {
  let store: TestStore;
  let sql: Awaited<ReturnType<typeof sqlOf>>;
  let q: ReadingQueries;
  /** Per sensor, the readings stored, in ts order. */
  const rows = new Map<string, Reading[]>();
  const rnd = random(2027);
  const time = () => T0 - 2 * H + Math.floor(rnd() * 4 * D);

  beforeAll(async () => {
    store = await testStore(kind, "query-tiers");
    sql = await sqlOf(store);
    const stored = new Map<string, Reading>();
    for (let batch = 0; batch < 10; batch++) {
      const batchRows: Reading[] = [];
      for (let i = 0; i < 400; i++) {
        const sensor = SENSORS[Math.floor(rnd() * SENSORS.length)] as string;
        // Bursts within a minute and gaps of hours, so some buckets are dense and some empty.
        const ts = rnd() < 0.5 ? time() : T0 + 30 * H + Math.floor(rnd() * 20 * MIN);
        batchRows.push(reading("d", sensor, ts, Math.round((rnd() * 200 - 100) * 100) / 100 || 0));
      }
      for (const r of batchRows) {
        const key = `${r.sensor}|${r.ts}`;
        if (!stored.has(key)) stored.set(key, r);
      }
      await store.write(batchRows);
    }
    const old = Array.from({ length: 300 }, () =>
      // Every third hour of the first day: gaps for --fill.
      reading(
        "d",
        "p",
        T0 + 3 * H * Math.floor(rnd() * 7) + Math.floor(rnd() * H),
        Math.round(rnd() * 1_000) / 10,
      ),
    );
    for (const r of old) if (!stored.has(`p|${r.ts}`)) stored.set(`p|${r.ts}`, r);
    await store.write(old);
    for (const sensor of ALL_SENSORS) {
      rows.set(
        sensor,
        [...stored.values()].filter((r) => r.sensor === sensor).sort((a, b) => a.ts - b.ts),
      );
    }
    await refillTiers(sql);
    q = await openQueries(store.config);
  });

  afterAll(async () => {
    await q?.stop();
    await sql?.close();
    await store?.dispose();
  });

  const stats = async (every: number, from?: number, to?: number, sensor?: string) =>
    rounded(await all(q.stats({ device: "d", sensor, every, from, to })));
  const expected = (every: number, from = Number.MIN_SAFE_INTEGER, to = Number.MAX_SAFE_INTEGER) =>
    rounded(ALL_SENSORS.flatMap((s) => rawBuckets(rows.get(s) ?? [], every, from, to, s)));

  it("stats over all time, and over random ranges cutting buckets, are what the raw rows give", async () => {
    for (const every of EVERY) expect(await stats(every)).toEqual(expected(every));
    for (let i = 0; i < 40; i++) {
      const [from, to] = [time(), time()].sort((a, b) => a - b) as [number, number];
      const every = EVERY[i % EVERY.length] as number;
      expect(await stats(every, from, to)).toEqual(expected(every, from, to));
    }
  });

  it("a chart's buckets are what the raw rows give, and a chart that fits is the raw readings", async () => {
    for (let i = 0; i < 30; i++) {
      const [from, to] = [time(), time()].sort((a, b) => a - b) as [number, number];
      const points = [20, 100, 400, 5_000][i % 4] as number;
      const inRange = (rows.get("t") ?? []).filter((r) => r.ts >= from && r.ts < to);
      const got = await q.series({ device: "d", sensor: "t", from, to, points });
      const first = inRange[0];
      const last = inRange.at(-1);
      if (first === undefined || last === undefined) {
        expect(got).toEqual([]);
        continue;
      }
      let want: SeriesPoint[];
      if (inRange.length <= points) want = inRange.map((r) => ({ ts: r.ts, value: r.value }));
      else {
        const width = chartBucketWidth(last.ts + 1 - first.ts, points);
        want = rawBuckets(inRange, width, from, to, "t").map((b) => ({
          ts: b.start,
          min: b.min as number,
          max: b.max as number,
          mean: Number((b.mean as number).toPrecision(9)),
          count: b.count,
        }));
      }
      const gotRounded = got.map((p) => ("mean" in p ? { ...p, mean: Number(p.mean.toPrecision(9)) } : p));
      expect(gotRounded).toEqual(want);
    }
  });

  it("hourly and daily stats over three days stay exact after raw rows older than a day are deleted", async () => {
    const newest = Math.max(...ALL_SENSORS.map((s) => (rows.get(s)?.at(-1)?.ts ?? 0) + 1));
    const from = newest - 3 * D;
    const before = await Promise.all([H, D].map((every) => stats(every, from, newest)));
    const days = await stats(D);
    expect(before[0]).toEqual(expected(H, from, newest));
    // RETENTION=1d: rows older than a day go, the readings horizon is raised (mid-minute, as retention does): just
    // after a reading, so that its minute holds readings on both sides of the horizon.
    const seam = ALL_SENSORS.flatMap((s) => rows.get(s) ?? [])
      .filter((r) => r.ts >= newest - D && r.ts % MIN < MIN - 1)
      .sort((a, b) => a.ts - b.ts)[0];
    const cutoff = (seam?.ts ?? newest - D) + 1;
    await sql.run(
      `DELETE FROM readings WHERE ts < ${cutoff}; UPDATE horizons SET ts = ${cutoff} WHERE name = 'readings'`,
    );
    const left = await all(q.readings({ device: "d", order: "asc" }));
    expect(left.length).toBeGreaterThan(0);
    expect(Math.min(...left.map((r) => r.ts))).toBeGreaterThanOrEqual(cutoff);
    // `from` is mid-hour and beyond raw retention: rounded up to the minute tier's width.
    const roundedFrom = from + ((MIN - (from % MIN)) % MIN);
    expect(await Promise.all([H, D].map((every) => stats(every, roundedFrom, newest)))).toEqual(
      [H, D].map((every) => expected(every, roundedFrom, newest)),
    );
    expect(await stats(H, from, newest)).toEqual(expected(H, roundedFrom, newest));
    // The hour of the horizon cut just after it: from the minute tier up to the end of the horizon's minute, which
    // only the tier holds whole, so an edge inside it is rounded up too.
    const seamEnd = cutoff + 1 + ((MIN - ((cutoff + 1) % MIN)) % MIN);
    expect(await stats(H, roundedFrom, cutoff + 1)).toEqual(expected(H, roundedFrom, seamEnd));
    expect(await stats(H, roundedFrom, seamEnd + 1)).toEqual(expected(H, roundedFrom, seamEnd + 1));
    expect(before[1]).toEqual(expected(D, from, newest));
    expect(await stats(D)).toEqual(days);
    // `telemetry query stats --fill null` (the built CLI) over "p", all of whose raw rows are gone: every hour from
    // its first bucket to its last, the empty ones filled.
    const cli = spawnSync(
      process.execPath,
      ["dist/cli/telemetry.js", "query", "stats", ...store.cliArgs, "--device", "d", "--sensor", "p"].concat([
        "--every",
        "1h",
        "--fill",
        "null",
        "--format",
        "json",
      ]),
      { encoding: "utf8", env: { ...process.env, DB_PATH: "" } },
    );
    expect(cli.stderr).toBe("");
    const filled = rounded(JSON.parse(cli.stdout) as Bucket[]);
    const pHours = expected(H).filter((b) => b.sensor === "p");
    expect(filled.filter((b) => b.count > 0)).toEqual(pHours);
    expect(filled.map((b) => b.start)).toEqual(
      Array.from(
        { length: ((pHours.at(-1)?.start ?? 0) - (pHours[0]?.start ?? 0)) / H + 1 },
        (_, i) => (pHours[0]?.start ?? 0) + i * H,
      ),
    );
    const empty = filled.filter((b) => b.count === 0);
    expect(empty.length).toBeGreaterThan(0);
    expect(empty.every((b) => b.mean === null && b.min === null)).toBe(true);
    // A chart of "p", all of whose raw rows are gone: buckets of at least a minute from the minute tier.
    const p = rows.get("p") ?? [];
    const [first, last] = [p[0]?.ts ?? 0, p.at(-1)?.ts ?? 0];
    const width = Math.max(chartBucketWidth(last + 1 - first, 1_000), MIN);
    const chart = await q.series({ device: "d", sensor: "p", points: 1_000 });
    expect(chart.map((x) => ("mean" in x ? { ...x, mean: Number(x.mean.toPrecision(9)) } : x))).toEqual(
      rounded(rawBuckets(p, width, 0, newest, "p")).map((b) => ({
        ts: b.start,
        min: b.min,
        max: b.max,
        mean: b.mean,
        count: b.count,
      })),
    );
  });
});
