/**
 * The PostgreSQL store keeps the rollup tiers exact (docs/contract.md, "Rollups, retention and devices"): after any
 * mix of batches, duplicates, conflicts, late and out-of-order readings, replays, day partitions dropped and tier
 * rows deleted, every tier equals a recomputation from a record of every reading ever stored.
 */
import { describe, expect, it } from "vitest";
import type { Reading } from "../../schemas/index.js";
import { mulberry32 as prng } from "../../simulators/model.js";
import type { PostgresStore } from "../../store/postgres.js";
import { TIERS, type TierTable } from "../../store/tiers.js";
import { type PgDatabase, postgresStores } from "../helpers/postgres.js";
import { reading } from "../helpers/query-db.js";

const DAY = 86_400_000;
/** Far from today, so the partitions the store creates ahead (today, tomorrow) never meet the test's cutoffs. */
const BASE = Date.UTC(2026, 0, 10);
const EVERYTHING = 1_000_000_000;

interface Bucket {
  device_id: string;
  sensor: string;
  start: number;
  count: number;
  min: number;
  max: number;
  sum: number;
  first_ts: number;
  first_value: number;
  last_ts: number;
  last_value: number;
}

/** The tier of width `ms` recomputed from `readings`, buckets from `from` on, in key order. */
function recompute(readings: Iterable<Reading>, ms: number, from: number): Bucket[] {
  const buckets = new Map<string, Bucket>();
  for (const r of readings) {
    const start = r.ts - (r.ts % ms);
    if (start < from) continue;
    const key = `${r.device_id}\u0000${r.sensor}\u0000${start}`;
    const b = buckets.get(key);
    if (b === undefined) {
      buckets.set(key, {
        device_id: r.device_id,
        sensor: r.sensor,
        start,
        count: 1,
        min: r.value,
        max: r.value,
        sum: r.value,
        first_ts: r.ts,
        first_value: r.value,
        last_ts: r.ts,
        last_value: r.value,
      });
      continue;
    }
    b.count++;
    b.min = Math.min(b.min, r.value);
    b.max = Math.max(b.max, r.value);
    b.sum += r.value;
    if (r.ts < b.first_ts) [b.first_ts, b.first_value] = [r.ts, r.value];
    if (r.ts > b.last_ts) [b.last_ts, b.last_value] = [r.ts, r.value];
  }
  const key = (b: Bucket) => [b.device_id, b.sensor];
  return [...buckets.values()].sort((a, b) => {
    const [ad, as] = key(a);
    const [bd, bs] = key(b);
    if (ad !== bd) return (ad as string) < (bd as string) ? -1 : 1;
    if (as !== bs) return (as as string) < (bs as string) ? -1 : 1;
    return a.start - b.start;
  });
}

async function tierRows(db: PgDatabase, table: TierTable, from = 0): Promise<Bucket[]> {
  return db.query<Bucket>(
    `SELECT device_id, sensor, start, count, min, max, sum, first_ts, first_value, last_ts, last_value
     FROM ${table} WHERE start >= $1 ORDER BY device_id, sensor, start`,
    [from],
  );
}

/** Every field equal, but `sum`, a float sum in another order, to 1e-9 relative. */
function expectSameTier(got: Bucket[], want: Bucket[], what: string): void {
  const exact = (rows: Bucket[]) =>
    rows.map(({ sum: _, ...b }) => ({
      ...b,
      start: Number(b.start),
      count: Number(b.count),
      first_ts: Number(b.first_ts),
      last_ts: Number(b.last_ts),
    }));
  expect(exact(got), what).toEqual(exact(want));
  got.forEach((g, i) => {
    const w = (want[i] as Bucket).sum;
    expect(Math.abs(g.sum - w), `${what}: sum of bucket ${i}`).toBeLessThanOrEqual(
      1e-9 * Math.max(1, Math.abs(w)),
    );
  });
}

describe("the PostgreSQL store's rollup tiers", () => {
  const { database, open } = postgresStores();

  /** A reading at a random second of the first hours of one of four days: many share a minute, some a key. */
  const randomReading = (random: () => number): Reading =>
    reading(
      `dev-${Math.floor(random() * 3)}`,
      ["a", "b"][Math.floor(random() * 2)] as string,
      BASE +
        Math.floor(random() * 4) * DAY +
        Math.floor(random() * 3) * 3_600_000 +
        Math.floor(random() * 5) * 60_000 +
        Math.floor(random() * 60) * 1_000,
      Math.round(random() * 2_000 - 1_000) / 7,
    );

  it("equal a recomputation from every reading ever stored, through random batches, replays, drops and tier retention", async () => {
    for (const seed of [7, 2_026]) {
      const random = prng(seed);
      const db = await database(`tiers_prop_${seed}`);
      const store = await open(db);
      const stored = new Map<string, Reading>();
      const ever: Reading[] = [];
      const days = new Set<number>();
      const tierHorizon = new Map<TierTable, number>(TIERS.map((t) => [t.table, 0]));
      let horizon = 0;
      const sent: Reading[][] = [];
      for (let b = 0; b < 60; b++) {
        const what = `seed ${seed} step ${b}`;
        const roll = random();
        if (roll < 0.1 && sent.length > 0) {
          // A replay of an earlier batch: duplicates, and expired readings once their day is dropped.
          sent.push(sent[Math.floor(random() * sent.length)] as Reading[]);
        } else {
          const batch: Reading[] = [];
          for (let i = Math.floor(random() * 80); i >= 0; i--) {
            const old = ever[Math.floor(random() * ever.length)];
            const r = random();
            if (old && r < 0.15) batch.push(old);
            else if (old && r < 0.2) batch.push({ ...old, value: old.value + 1 });
            else batch.push(randomReading(random));
          }
          sent.push(batch);
        }
        const batch = sent.at(-1) as Reading[];
        const want = { inserted: 0, duplicates: 0, conflicts: 0, expired: 0 };
        for (const r of batch) {
          const key = `${r.device_id}/${r.sensor}/${r.ts}`;
          if (r.ts < horizon) {
            want.expired++;
            continue;
          }
          days.add(r.ts - (r.ts % DAY));
          const had = stored.get(key);
          if (had === undefined) {
            stored.set(key, r);
            ever.push(r);
            want.inserted++;
          } else if (had.value === r.value) want.duplicates++;
          else want.conflicts++;
        }
        const got = await store.writeBatch(batch);
        expect({ ...got, conflicts: got.conflicts.length }, what).toEqual(want);

        if (random() < 0.12) {
          // Raw retention at a random time: whole days before it go, the tiers keep them.
          const cutoff = BASE + Math.floor(random() * 3.5 * DAY);
          const bound = Math.max(horizon, ...[...days].map((d) => d + DAY).filter((end) => end <= cutoff));
          horizon = bound;
          const gone = [...stored].filter(([, r]) => r.ts < horizon);
          for (const [k] of gone) stored.delete(k);
          for (const d of days) if (d + DAY <= horizon) days.delete(d);
          expect(await store.deleteOlderThan(cutoff, EVERYTHING), `${what}: rows dropped`).toBe(gone.length);
        }
        if (random() < 0.12) {
          // A tier's retention at a time among the readings, mostly inside a bucket that later readings reach.
          const tier = TIERS[Math.floor(random() * TIERS.length)] as (typeof TIERS)[number];
          const cutoff = randomReading(random).ts;
          const from = Math.ceil((tierHorizon.get(tier.table) ?? 0) / tier.ms) * tier.ms;
          const deleted = recompute(ever, tier.ms, from).filter((x) => x.start < cutoff).length;
          tierHorizon.set(tier.table, Math.max(tierHorizon.get(tier.table) ?? 0, cutoff));
          expect(
            await store.deleteTierOlderThan(tier.table, cutoff, EVERYTHING),
            `${what}: ${tier.table}`,
          ).toBe(deleted);
        }
        for (const t of TIERS) {
          const from = Math.ceil((tierHorizon.get(t.table) ?? 0) / t.ms) * t.ms;
          expectSameTier(await tierRows(db, t.table), recompute(ever, t.ms, from), `${what}: ${t.table}`);
        }
      }
      expect(await db.query("SELECT count(*)::int AS n FROM readings")).toEqual([{ n: stored.size }]);
      // The run went through what it is meant to: drops, expired readings, tier retention, a populated tier.
      expect(horizon).toBeGreaterThan(BASE);
      expect(ever.length).toBeGreaterThan(stored.size);
      expect((await tierRows(db, "rollup_1m")).length).toBeGreaterThan(50);
    }
  });

  it("two stores writing overlapping batches at once while one drops a day stay exact and never deadlock", async () => {
    const db = await database("tiers_concurrent");
    const [a, b] = [await open(db), await open(db)];
    const random = prng(11);
    // A fixed pool of keys over four days, each with one value: resends are duplicates, never conflicts.
    const pool = Array.from({ length: 3_000 }, () => randomReading(random));
    const value = (r: Reading) => ((r.ts / 1_000) % 97) + r.device_id.length;
    const batches = Array.from({ length: 24 }, () =>
      Array.from({ length: 250 }, () => {
        const r = pool[Math.floor(random() * pool.length)] as Reading;
        return { ...r, value: value(r) };
      }),
    );
    const cutoff = BASE + DAY; // drops the first day
    let dropping: Promise<number> | undefined;
    const write = async (store: PostgresStore, parity: number) => {
      const results = [];
      for (let i = parity; i < batches.length; i += 2) {
        if (i === 8) dropping = a.deleteOlderThan(cutoff, EVERYTHING);
        results.push(await store.writeBatch(batches[i] as Reading[]));
      }
      return results;
    };
    const results = (await Promise.all([write(a, 0), write(b, 1)])).flat();
    const dropped = (await dropping) ?? 0;
    expect(dropped).toBeGreaterThan(0);
    const sum = (k: "inserted" | "duplicates" | "expired") => results.reduce((n, r) => n + r[k], 0);
    expect(results.every((r) => r.conflicts.length === 0)).toBe(true);
    expect(sum("inserted") + sum("duplicates") + sum("expired")).toBe(batches.flat().length);
    expect(sum("expired")).toBeGreaterThan(0);
    const [{ n: rows }] = (await db.query<{ n: number }>("SELECT count(*)::int AS n FROM readings")) as [
      { n: number },
    ];
    // Every row inserted is either still in the table or was dropped, and each key is stored once.
    expect(sum("inserted")).toBe(rows + dropped);
    const all = await db.query<{ device_id: string; sensor: string; ts: string; value: number }>(
      "SELECT device_id, sensor, ts, value FROM readings",
    );
    const kept = all.map((r) => reading(r.device_id, r.sensor, Number(r.ts), r.value));
    for (const t of TIERS) {
      // From the day kept on, each tier is what the rows give; the dropped day counts exactly the rows dropped.
      const from = cutoff - (cutoff % t.ms);
      expectSameTier(await tierRows(db, t.table, from), recompute(kept, t.ms, from), t.table);
      expect(
        await db.query(`SELECT sum(count)::int AS n FROM ${t.table} WHERE start < $1`, [cutoff]),
        t.table,
      ).toEqual([{ n: dropped }]);
    }
  });
});
