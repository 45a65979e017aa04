import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { READING_COLUMNS as columns } from "../../query/answers.js";
import { render } from "../../query/format.js";
import type { Reading } from "../../schemas/index.js";
import { mulberry32 as random } from "../../simulators/model.js";
import { openQueries } from "../../store/index.js";
import { type ReadingQueries, readingOfRow, rowsOfPage, type StoredReading } from "../../store/queries.js";
import { reading } from "../helpers/query-db.js";
import { STORE_KINDS, type TestStore, testStore } from "../helpers/stores.js";

const MIN = 60_000;
const HOUR = 60 * MIN;
const T0 = Date.UTC(2026, 0, 31);
const DEVICES = ["a", "a.b", "b", "b:1", "c-2"];
const SENSORS = ["co2", "humidity", "t", "temperature"];
/** Plus a device with more rows per series than a page holds (pages start at 256 rows), so streams page. */
const ASKED = [...DEVICES, "big"];

async function text(chunks: AsyncIterable<string>): Promise<string> {
  let out = "";
  for await (const chunk of chunks) out += chunk;
  return out;
}

async function all<T>(it: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const x of it) out.push(x);
  return out;
}

describe.each(STORE_KINDS)("the %s queries against a recomputation from the readings written", (kind) => {
  let db: TestStore;
  let q: ReadingQueries;
  /** What the table holds: the first reading of each key (later ones with the same key are duplicates). */
  const stored = new Map<string, Reading>();
  const rnd = random(14);

  beforeAll(async () => {
    db = await testStore(kind, "query-store");
    // Batches in no particular order, with resends of earlier readings, across hour and day edges.
    for (let batch = 0; batch < 20; batch++) {
      const rows: Reading[] = [];
      for (let i = 0; i < 200; i++) {
        const device = DEVICES[Math.floor(rnd() * DEVICES.length)] ?? "a";
        const sensor = SENSORS[Math.floor(rnd() * SENSORS.length)] ?? "t";
        const ts = T0 - 2 * HOUR + Math.floor(rnd() * 30 * HOUR);
        // `|| 0`: SQLite stores -0 as 0, and a recomputation would keep the sign.
        rows.push(reading(device, sensor, ts, Math.round((rnd() * 200 - 100) * 100) / 100 || 0));
      }
      const resent = [...stored.values()].filter(() => rnd() < 0.02);
      for (const r of [...rows, ...resent]) {
        const key = `${r.device_id}|${r.sensor}|${r.ts}`;
        if (!stored.has(key)) stored.set(key, r);
      }
      await db.write([...rows, ...resent]);
    }
    const big: Reading[] = [];
    // "t" every minute for 9,000 rows (more than a page of stats rows: 8,192), "u" every 2 minutes: equal times
    // across sensors on every other row. Minute buckets are sparse, daily ones dense (aggregated by GROUP BY).
    for (let i = 0; i < 9_000; i++) {
      for (const [sensor, step] of [["t", MIN] as const, ["u", 2 * MIN] as const]) {
        if (sensor === "u" && i >= 700) continue;
        const value = Math.round(Math.sin(i / 50) * 1_000) / 100 || 0;
        const r = reading(
          "big",
          sensor,
          T0 + i * step,
          value,
          i % 3 === 0 ? { tags: { site: `s,"${i}"` } } : {},
        );
        stored.set(`${r.device_id}|${r.sensor}|${r.ts}`, r);
        big.push(r);
      }
    }
    // "w": a unit that changes mid-page (and is absent for a stretch) and sequence numbers with gaps, so pages
    // whose unit, quality or tags are not one value throughout are read too.
    for (let i = 0; i < 1_500; i++) {
      const r = reading("big", "w", T0 + i * MIN + 30_000, i / 8, {
        unit: i < 600 ? "C" : i < 900 ? null : "K",
        seq: i % 5 === 0 ? null : i,
        ...(i >= 1_200 ? { quality: "uncertain" as const } : {}),
      });
      stored.set(`${r.device_id}|${r.sensor}|${r.ts}`, r);
      big.push(r);
    }
    await db.write(big);
    q = await openQueries(db.config);
  });
  afterAll(async () => {
    await q?.stop();
    await db?.dispose();
  });

  const of = (device: string, sensor?: string) =>
    [...stored.values()].filter(
      (r) => r.device_id === device && (sensor === undefined || r.sensor === sensor),
    );
  const byTimeThenSensor = (a: Reading, b: Reading) => a.ts - b.ts || (a.sensor < b.sensor ? -1 : 1);
  const key = (r: Pick<StoredReading, "device_id" | "sensor" | "ts" | "value">) =>
    `${r.device_id}/${r.sensor}@${r.ts}=${r.value}`;

  it("readings: every stored reading of the device in the range, in time order, limited", async () => {
    for (let trial = 0; trial < 36; trial++) {
      const device = ASKED[trial % ASKED.length] ?? "a";
      const sensor = trial % 3 === 0 ? SENSORS[trial % SENSORS.length] : undefined;
      const from = T0 - 3 * HOUR + Math.floor(rnd() * 20 * HOUR);
      const to = from + Math.floor(rnd() * 20 * HOUR);
      const limit = trial % 2 === 0 ? undefined : 1 + Math.floor(rnd() * 50);
      const order = trial % 4 < 2 ? "asc" : "desc";
      let expected = of(device, sensor)
        .filter((r) => r.ts >= from && r.ts < to)
        .sort(byTimeThenSensor);
      if (order === "desc") expected = expected.reverse();
      if (limit !== undefined) expected = expected.slice(0, limit);
      const got = await all(q.readings({ device, sensor, from, to, limit, order }));
      // Every field as written: unit, seq, quality and tags too, not only the key and value.
      const whole = (r: Reading | StoredReading) =>
        `${key(r)} ${r.unit ?? "-"} #${r.seq ?? "-"} ${r.quality ?? "good"} ${JSON.stringify(r.tags ?? {})}`;
      expect(new Set(got.map(whole))).toEqual(new Set(expected.map(whole)));
      // The pages exports write from hold the same rows in the same order, none of them empty.
      const pages = await all(q.readingPages({ device, sensor, from, to, limit, order }));
      expect(pages.filter((p) => p.length === 0)).toEqual([]);
      expect(pages.flatMap(rowsOfPage).map(readingOfRow)).toEqual(got);
      if (order === "desc") {
        // Equal times across sensors may come in either sensor order when newest first; compare per time.
        expect(got.map((r) => r.ts)).toEqual(expected.map((r) => r.ts));
        expect(new Set(got.map(key))).toEqual(new Set(expected.map(key)));
      } else {
        expect(got.map(key)).toEqual(expected.map(key));
      }
    }
  });

  it("readings: the whole of each long series, every field, with pages whose unit, seq, quality or tags change", async () => {
    const whole = (r: Reading | StoredReading) =>
      `${key(r)} ${r.unit ?? "-"} #${r.seq ?? "-"} ${r.quality ?? "good"} ${JSON.stringify(r.tags ?? {})}`;
    for (const sensor of ["t", "u", "w", undefined]) {
      const expected = of("big", sensor).sort(byTimeThenSensor).map(whole);
      const asc = await all(q.readings({ device: "big", sensor, order: "asc" }));
      expect(asc.map(whole)).toEqual(expected);
      const pages = await all(q.readingPages({ device: "big", sensor, order: "desc" }));
      expect(new Set(pages.flatMap(rowsOfPage).map(readingOfRow).map(whole))).toEqual(new Set(expected));
      // Exports print the pages: byte for byte what the readings print, in every streaming format.
      for (const format of ["csv", "json", "ndjson"] as const) {
        const query = { device: "big", sensor, order: "asc" } as const;
        expect(await text(render({ rows: [], pages: q.readingPages(query), columns }, format))).toBe(
          await text(render({ rows: asc, columns }, format)),
        );
      }
    }
    // The pages above were of the new kinds too: merged sensors, one kind a row; a unit changing mid-page.
    const merged = await all(q.readingPages({ device: "big", order: "asc" }));
    expect(merged.some((p) => p.kind !== undefined && p.kinds.length >= 3)).toBe(true);
    const changing = await all(q.readingPages({ device: "big", sensor: "w", order: "asc" }));
    expect(changing.some((p) => new Set(p.kinds.map((k) => k.unit)).size > 1)).toBe(true);
  });

  it("stats: count, min, max, mean and last of every bucket, whatever the width", async () => {
    for (const every of [MIN, 7 * MIN, 15 * MIN, HOUR, 24 * HOUR]) {
      for (const device of ASKED) {
        const got = await all(q.stats({ device, every }));
        const expected = new Map<string, Reading[]>();
        for (const r of of(device)) {
          const k = `${r.sensor}|${r.ts - (r.ts % every)}`;
          const rs = expected.get(k);
          if (rs === undefined) expected.set(k, [r]);
          else rs.push(r);
        }
        expect(got).toHaveLength(expected.size);
        for (const b of got) {
          const rs = expected.get(`${b.sensor}|${b.start}`) ?? [];
          const values = rs.map((r) => r.value);
          expect(b.count).toBe(rs.length);
          expect(b.min).toBe(Math.min(...values));
          expect(b.max).toBe(Math.max(...values));
          expect(
            Math.abs((b.mean ?? Number.NaN) - values.reduce((s, v) => s + v, 0) / values.length),
          ).toBeLessThan(1e-9);
          expect(b.last).toBe(rs.reduce((l, r) => (r.ts > l.ts ? r : l)).value);
        }
      }
    }
    // About 3 s on either store at load 1.5 (PostgreSQL took 21 s while each bucket joined back for `last`).
  }, 20_000);

  it("latest and devices: the newest reading and the exact size of every series", async () => {
    const series = new Map<string, Reading[]>();
    for (const r of stored.values()) {
      const k = `${r.device_id}|${r.sensor}`;
      series.set(k, [...(series.get(k) ?? []), r]);
    }
    const newest = (rs: Reading[]) => rs.reduce((l, r) => (r.ts > l.ts ? r : l));
    // In key order, (device_id, sensor), as the table's primary key sorts them.
    const keys = [...series.keys()].sort((x, y) => {
      const [dx = "", sx = ""] = x.split("|");
      const [dy = "", sy = ""] = y.split("|");
      return dx === dy ? (sx < sy ? -1 : 1) : dx < dy ? -1 : 1;
    });
    expect((await q.latest()).map(key)).toEqual(keys.map((k) => key(newest(series.get(k) ?? []))));
    const devices = await q.devices();
    expect(devices.flatMap((d) => d.sensors.map((s) => `${d.device_id}|${s.sensor}:${s.count}`))).toEqual(
      keys.map((k) => `${k}:${series.get(k)?.length}`),
    );
  });

  it("series: raw points when they fit, else buckets holding every reading", async () => {
    for (const device of ASKED) {
      const rows = of(device, "t");
      const raw = await q.series({ device, sensor: "t", points: rows.length });
      expect(raw.map((p) => p.ts)).toEqual(rows.map((r) => r.ts).sort((a, b) => a - b));
      const coarse = await q.series({ device, sensor: "t", points: 10 });
      expect(coarse.length).toBeLessThanOrEqual(11);
      expect(coarse.reduce((n, p) => n + ("count" in p ? p.count : 1), 0)).toBe(rows.length);
      expect(Math.max(...coarse.map((p) => ("max" in p ? p.max : p.value)))).toBe(
        Math.max(...rows.map((r) => r.value)),
      );
    }
  });
});
