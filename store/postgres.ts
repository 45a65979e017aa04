/**
 * The PostgreSQL store (`DATABASE_URL=postgres://...`): the same `readings` key as the SQLite store, so processors
 * on many machines can write one database; the table is partitioned by day (store/postgres-partitions.ts). A batch
 * is one transaction: a single statement that inserts the rows (`INSERT ... SELECT FROM unnest(...) ON CONFLICT DO
 * NOTHING RETURNING`) and upserts each rollup tier from the rows it returned (only rows this batch inserted, so
 * processors racing on a key count it once), then one look-up of the keys it did not insert to tell duplicates from conflicts, then COMMIT; the
 * processor acks only after that. COPY into a temporary staging table
 * and one `INSERT ... SELECT` from it (pg-copy-streams) measured no faster, end to end with the real processor nor
 * for `writeBatch` alone (within a few % either way, the same CPU on both sides), so it did not earn a dependency.
 */
import pg from "pg";
import { redactUrl } from "../common/config.js";
import type { Reading } from "../schemas/index.js";
import { conflictOf, measurementOf, type StoredMeasurement, sameMeasurement } from "./measurement.js";
import { migratePostgres } from "./postgres-migrations.js";
import {
  beginBatch,
  DAY_MS,
  dayOf,
  dropOldPartitions,
  ensurePartitions,
  listPartitions,
  raiseHorizon,
} from "./postgres-partitions.js";
import type { Conflict, ReadingStore, WriteResult } from "./store.js";
import { TIERS, type TierTable, tierUpsertSql } from "./tiers.js";

const INT8_OID = 20;
/** Connections the processor's store keeps: one commits while the next batch may already start. */
const WRITE_POOL_SIZE = 2;
const CONNECT_TIMEOUT_MS = 10_000;

/**
 * A pool on `url` whose bigint columns (ts, seq, counts) read as numbers: epoch milliseconds and counts stay far
 * below 2^53. `readOnly` makes every transaction of the pool read-only. Errors of idle connections are absorbed: the pool drops such a connection, and the next query opens
 * another or fails with the reason.
 */
export function openPool(
  url: string,
  opts: { max: number; applicationName: string; readOnly?: boolean },
): pg.Pool {
  const pool = new pg.Pool({
    connectionString: url,
    ...(opts.readOnly ? { options: "-c default_transaction_read_only=on" } : {}),
    max: opts.max,
    application_name: opts.applicationName,
    connectionTimeoutMillis: CONNECT_TIMEOUT_MS,
    keepAlive: true,
    types: {
      getTypeParser: ((oid: number, format?: "text" | "binary") =>
        oid === INT8_OID && format !== "binary"
          ? (v: string) => Number(v)
          : pg.types.getTypeParser(oid, format)) as typeof pg.types.getTypeParser,
    },
  });
  pool.on("error", () => {});
  return pool;
}

/** `cannot open PostgreSQL postgres://user:***@host/db: <reason>`: one line, the password masked. */
export function openError(url: string, err: unknown): Error {
  const why = err instanceof Error ? err.message || (err as NodeJS.ErrnoException).code : String(err);
  return new Error(`cannot open PostgreSQL ${redactUrl(url)}: ${redactUrl(why ?? "unknown error")}`, {
    cause: err,
  });
}

/** The batch's rows, those above the readings horizon ($12), in key order; $13..$15 are the tiers' horizons. */
const INSERT = `INSERT INTO readings
    (device_id, sensor, ts, value, unit, seq, gateway_id, received_at, stored_at, quality, tags)
  SELECT d, s, t, v, u, q, g, r, $9, ql, tg
  FROM unnest($1::text[], $2::text[], $3::bigint[], $4::float8[], $5::text[], $6::bigint[], $7::text[],
              $8::bigint[], $10::text[], $11::text[]) WITH ORDINALITY AS b(d, s, t, v, u, q, g, r, ql, tg, i)
  WHERE t >= $12
  ORDER BY i
  ON CONFLICT DO NOTHING`;
const KEPT = `SELECT device_id, sensor, ts, value, unit, seq, quality, tags FROM readings
  WHERE (device_id, sensor, ts) IN (SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[]))`;

/**
 * The batch's deltas into each tier, as CTEs: `rollup_1m_d` sums the rows the batch inserted (the CTE `inserted`)
 * per (series, minute), and each wider tier sums the deltas of the one before it, so a batch of many readings per
 * series aggregates its rows once. The first value is the second element of the least `[ts, value]` array, the
 * last of the greatest: no two have the same `ts` (a batch inserts one row per key, and buckets do not overlap), and
 * epoch milliseconds are exact as float8. This needs no sort per bucket, as `array_agg(value ORDER BY ts)` would.
 */
function tierDeltaCtes(): string {
  return TIERS.map((t, i) => {
    const from = i === 0 ? undefined : TIERS[i - 1]?.table;
    const select =
      from === undefined
        ? `SELECT device_id, sensor, ts - ts % ${t.ms}, count(*), min(value), max(value), sum(value), min(ts),
                  max(ts), (min(ARRAY[ts::float8, value]))[2], (max(ARRAY[ts::float8, value]))[2]
           FROM inserted GROUP BY 1, 2, 3`
        : `SELECT d, s, st - st % ${t.ms}, sum(n)::bigint, min(mn), max(mx), sum(sm), min(ft), max(lt),
                  (min(ARRAY[ft::float8, fv]))[2], (max(ARRAY[lt::float8, lv]))[2]
           FROM ${from}_d GROUP BY 1, 2, 3`;
    return `${t.table}_d (d, s, st, n, mn, mx, sm, ft, lt, fv, lv) AS (${select})`;
  }).join(",\n  ");
}

/**
 * One tier's deltas, those of buckets at or above `horizon` (a parameter, a multiple of the tier's width), merged
 * into the stored bucket rows by tierUpsertSql's `ON CONFLICT`; in key order, so racing writers lock rows in one
 * order.
 */
function tierUpsertCte(table: TierTable, horizon: string): string {
  const one = tierUpsertSql(table, "postgres");
  return `${table}_up AS (
    INSERT INTO ${table} (device_id, sensor, start, count, min, max, sum, first_ts, first_value, last_ts, last_value)
    SELECT d, s, st, n, mn, mx, sm, ft, fv, lt, lv FROM ${table}_d WHERE st >= ${horizon}
    ORDER BY d, s, st
    ${one.slice(one.indexOf("ON CONFLICT"))})`;
}

/**
 * The batch and its tiers in one statement, one round trip: the rows inserted feed the tiers inside PostgreSQL, and
 * only their keys come back. Without tiers (the bench's `rollups: false`), the same insert alone.
 */
const WRITE = (rollups: boolean) => `WITH inserted AS (${INSERT} RETURNING device_id, sensor, ts, value)
  ${rollups ? `, ${tierDeltaCtes()}, ${TIERS.map((t, i) => tierUpsertCte(t.table, `$${13 + i}`)).join(",\n  ")}` : ""}
  SELECT device_id, sensor, ts FROM inserted`;
/** Named, so each connection plans the statement once: planning it took about as long as a tier's upserts. */
const WRITE_WITH_TIERS = { name: "telemetry_write", text: WRITE(true) };
const WRITE_WITHOUT_TIERS = { name: "telemetry_write_without_tiers", text: WRITE(false) };

/** The start of the first bucket of width `ms` wholly at or above `ts`: buckets before it may have been deleted. */
const bucketCeil = (ts: number, ms: number) => Math.ceil(ts / ms) * ms;

const keyOf = (device: string, sensor: string, ts: number) => `${ts}\u0000${device}\u0000${sensor}`;
const byKey = (a: Reading, b: Reading) =>
  a.device_id < b.device_id
    ? -1
    : a.device_id > b.device_id
      ? 1
      : a.sensor < b.sensor
        ? -1
        : a.sensor > b.sensor
          ? 1
          : a.ts - b.ts;

/** Options of {@link PostgresStore}; the product uses the defaults. */
export interface PostgresStoreOptions {
  /**
   * Keep the rollup tiers in each write transaction (default true). False only for the benchmark's measure of what
   * the tiers cost (bench/pg-tiers.ts): readers of a database written so see tiers missing readings.
   */
  readonly rollups?: boolean;
}

/**
 * The PostgreSQL {@link ReadingStore}. `writeBatch` resolves once the batch's transaction has committed (with
 * PostgreSQL's default `synchronous_commit`, durably) and rejects with PostgreSQL's error, nothing stored, when it
 * did not. The first reading of a key wins, whichever processor writes it; a later one with the same measurement
 * is a duplicate, with another a conflict (the stored row is kept). The rows a batch inserts count in the rollup
 * tiers in the same transaction; the locks involved are explained in store/postgres-partitions.ts.
 */
export class PostgresStore implements ReadingStore {
  #stopped: Promise<void> | undefined;
  /** Day partitions known to exist (or to lie below the readings horizon), so most batches create none. */
  readonly #days = new Set<number>();

  private constructor(
    private readonly pool: pg.Pool,
    private readonly url: string,
    private readonly rollups: boolean,
  ) {}

  /**
   * Connects to `url`, applies the migrations and creates the partitions of today and tomorrow; rejects with one
   * line naming the database (password masked) and PostgreSQL's reason when it cannot.
   */
  static async open(url: string, opts: PostgresStoreOptions = {}): Promise<PostgresStore> {
    const pool = openPool(url, { max: WRITE_POOL_SIZE, applicationName: "telemetry processor" });
    let store: PostgresStore;
    try {
      const client = await pool.connect();
      try {
        await migratePostgres(client);
        store = new PostgresStore(pool, url, opts.rollups ?? true);
        for (const p of await listPartitions(client)) store.#days.add(p.from);
        await ensurePartitions(client, aheadDays(), store.#days);
      } finally {
        client.release();
      }
    } catch (err) {
      await pool.end().catch(() => {});
      throw openError(url, err);
    }
    return store;
  }

  async writeBatch(readings: readonly Reading[]): Promise<WriteResult> {
    if (readings.length === 0) return { inserted: 0, duplicates: 0, conflicts: [], expired: 0 };
    if (this.#stopped) throw new Error(`PostgreSQL store ${redactUrl(this.url)} is closed`);
    // Rows go in key order, the same in every processor: two transactions inserting overlapping keys then wait
    // for each other in one order and never deadlock. The sort is stable, so the first reading of a key wins.
    const order = readings.map((r, index) => ({ r, index })).sort((a, b) => byKey(a.r, b.r));
    const rows = order.map(({ r }) => ({ r, m: measurementOf(r) }));
    const client = await this.pool.connect();
    let broken: Error | undefined;
    try {
      const days = aheadDays().filter((d) => !this.#days.has(d));
      for (const r of readings) if (!this.#days.has(dayOf(r.ts))) days.push(dayOf(r.ts));
      if (days.length > 0) await ensurePartitions(client, days, this.#days);
      const horizons = await beginBatch(client);
      const horizon = horizons.get("readings") ?? 0;
      const tierHorizons = TIERS.map((t) => bucketCeil(horizons.get(t.table) ?? 0, t.ms));
      const inserted = await client.query<{ device_id: string; sensor: string; ts: number }>({
        ...(this.rollups ? WRITE_WITH_TIERS : WRITE_WITHOUT_TIERS),
        values: [
          rows.map(({ r }) => r.device_id),
          rows.map(({ r }) => r.sensor),
          rows.map(({ r }) => r.ts),
          rows.map(({ m }) => m.value),
          rows.map(({ m }) => m.unit),
          rows.map(({ m }) => m.seq),
          rows.map(({ r }) => r.gateway_id),
          rows.map(({ r }) => r.received_at),
          Date.now(),
          rows.map(({ m }) => m.quality),
          rows.map(({ m }) => m.tags),
          horizon,
          ...(this.rollups ? tierHorizons : []),
        ],
      });
      const fresh = new Set(inserted.rows.map((k) => keyOf(k.device_id, k.sensor, k.ts)));
      const resent: { r: Reading; m: StoredMeasurement; index: number }[] = [];
      let expired = 0;
      rows.forEach(({ r, m }, i) => {
        // Below the horizon, the row may have been stored, counted and dropped: neither stored nor counted again.
        if (r.ts < horizon) {
          expired++;
          return;
        }
        const key = keyOf(r.device_id, r.sensor, r.ts);
        // The first of several readings with one key is the one inserted; the others are resends.
        if (fresh.delete(key)) return;
        resent.push({ r, m, index: order[i]?.index ?? i });
      });
      let duplicates = 0;
      const conflicts: Conflict[] = [];
      if (resent.length > 0) {
        // Only resends reach here, so the extra look-up costs nothing on the fast path.
        const kept = await client.query<
          StoredMeasurement & { device_id: string; sensor: string; ts: number }
        >(KEPT, [
          resent.map(({ r }) => r.device_id),
          resent.map(({ r }) => r.sensor),
          resent.map(({ r }) => r.ts),
        ]);
        const stored = new Map(kept.rows.map((k) => [keyOf(k.device_id, k.sensor, k.ts), k]));
        for (const { r, m, index } of resent) {
          const k = stored.get(keyOf(r.device_id, r.sensor, r.ts));
          if (k === undefined || sameMeasurement(k, m)) duplicates++;
          else conflicts.push(conflictOf(index, r, k));
        }
        conflicts.sort((a, b) => a.index - b.index);
      }
      await client.query("COMMIT");
      return { inserted: inserted.rowCount ?? inserted.rows.length, duplicates, conflicts, expired };
    } catch (err) {
      broken = err instanceof Error ? err : new Error(String(err));
      await client.query("ROLLBACK").catch(() => {});
      throw err;
    } finally {
      // A connection that failed mid-transaction is dropped rather than handed to the next batch.
      client.release(broken);
    }
  }

  /**
   * Retention of raw readings by whole days: drops the day partitions that end at or before `cutoff`, oldest first,
   * until the rows they held reach `limit` (store/postgres-partitions.ts, dropOldPartitions), and resolves with
   * that count. Never deletes row by row: the rows of the day holding `cutoff` stay until the day is wholly past
   * the cutoff. Fewer than `limit` means no such day is left. Tiers are left as they are.
   */
  async deleteOlderThan(cutoff: number, limit: number): Promise<number> {
    if (this.#stopped) throw new Error(`PostgreSQL store ${redactUrl(this.url)} is closed`);
    if (limit <= 0) return 0;
    return this.#withClient((client) => dropOldPartitions(client, cutoff, limit));
  }

  /**
   * {@link ReadingStore.deleteTierOlderThan}: raises the tier's horizon to `cutoff` first (batches then leave
   * buckets before it alone), then deletes at most `limit` of its rows with `start` before `cutoff` in a statement
   * of its own, which holds no batch back. A failure between the two leaves rows below the horizon, which the next
   * call deletes.
   */
  async deleteTierOlderThan(table: TierTable, cutoff: number, limit: number): Promise<number> {
    if (this.#stopped) throw new Error(`PostgreSQL store ${redactUrl(this.url)} is closed`);
    if (limit <= 0) return 0;
    const tier = TIERS.find((t) => t.table === table);
    if (tier === undefined) throw new Error(`no rollup tier ${table}`);
    return this.#withClient(async (client) => {
      await raiseHorizon(client, tier.table, cutoff);
      const r = await client.query(
        `DELETE FROM ${tier.table} WHERE ctid = ANY(ARRAY(
           SELECT ctid FROM ${tier.table} WHERE start < $1 LIMIT $2))`,
        [cutoff, limit],
      );
      return r.rowCount ?? 0;
    });
  }

  async #withClient<T>(fn: (client: pg.PoolClient) => Promise<T>): Promise<T> {
    const client = await this.pool.connect();
    let broken: Error | undefined;
    try {
      return await fn(client);
    } catch (err) {
      broken = err instanceof Error ? err : new Error(String(err));
      throw err;
    } finally {
      client.release(broken);
    }
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.stop();
  }

  /** Waits for the batch being committed, then closes the connections. */
  stop(): Promise<void> {
    this.#stopped ??= this.pool.end();
    return this.#stopped;
  }
}

/** Today and tomorrow (UTC): created ahead, so the first readings of a new day rarely wait for their partition. */
function aheadDays(): number[] {
  const today = dayOf(Date.now());
  return [today, today + DAY_MS];
}
