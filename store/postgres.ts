/**
 * The PostgreSQL store (`DATABASE_URL=postgres://...`): the same `readings` table and key as the SQLite store, so
 * processors on many machines can write one database. A batch is one transaction: a single
 * `INSERT ... SELECT FROM unnest(...) ON CONFLICT DO NOTHING`, then one look-up of the keys it did not insert to tell
 * duplicates from conflicts, then COMMIT; the processor acks only after that. COPY into a temporary staging table
 * and one `INSERT ... SELECT` from it (pg-copy-streams) measured no faster, end to end with the real processor nor
 * for `writeBatch` alone (within a few % either way, the same CPU on both sides), so it did not earn a dependency.
 */
import pg from "pg";
import { redactUrl } from "../common/config.js";
import type { Reading } from "../schemas/index.js";
import { conflictOf, measurementOf, type StoredMeasurement, sameMeasurement } from "./measurement.js";
import type { Conflict, ReadingStore, WriteResult } from "./store.js";
import { type TierTable, tierMigrationSql } from "./tiers.js";

/**
 * Numbered migrations, recorded in `schema_migrations` (one row per migration applied). Never edit a released one.
 * Ids compare as bytes (COLLATE "C"), as SQLite compares them, so both stores sort devices and sensors alike.
 */
export const PG_MIGRATIONS: readonly { readonly version: number; readonly sql: string }[] = [
  {
    version: 1,
    sql: `CREATE TABLE readings (
      device_id   text COLLATE "C" NOT NULL,
      sensor      text COLLATE "C" NOT NULL,
      ts          bigint           NOT NULL, -- time of measurement, epoch ms UTC
      value       double precision NOT NULL,
      unit        text,
      seq         bigint,                    -- the device's sequence number, when it sends one
      gateway_id  text             NOT NULL,
      received_at bigint           NOT NULL, -- gateway receive time, epoch ms UTC
      stored_at   bigint           NOT NULL, -- commit time, epoch ms UTC
      PRIMARY KEY (device_id, sensor, ts)
    )`,
  },
  {
    // Schema version 2; a constant default is a catalogue change only, rows stored before read the v2 defaults.
    version: 2,
    sql: `ALTER TABLE readings
      ADD COLUMN quality text NOT NULL DEFAULT 'good', -- good, uncertain or bad
      ADD COLUMN tags    text NOT NULL DEFAULT '{}'    -- JSON object of string values, as SQLite stores it`,
  },
  {
    // A series' usual reporting interval for silent devices: the exponentially weighted mean of the gaps between
    // its successive receive times, over rows ordered by received_at; the same steps in float8 as SQLite's rollup
    // (nextInterval in store/sqlite-rollup.ts), so both stores answer the same. State: [last receive time, mean].
    version: 3,
    sql: `CREATE FUNCTION telemetry_interval_step(state float8[], at bigint) RETURNS float8[]
      LANGUAGE sql IMMUTABLE AS $$
        SELECT CASE
          WHEN state IS NULL THEN ARRAY[at::float8, 0::float8]
          WHEN at::float8 <= state[1] THEN state
          WHEN state[2] = 0 THEN ARRAY[at::float8, at::float8 - state[1]]
          ELSE ARRAY[at::float8, state[2] + ((at::float8 - state[1]) - state[2]) * 0.25::float8]
        END $$;
      CREATE FUNCTION telemetry_interval_final(state float8[]) RETURNS float8
        LANGUAGE sql IMMUTABLE AS $$ SELECT state[2] $$;
      CREATE AGGREGATE telemetry_interval(bigint) (
        SFUNC = telemetry_interval_step, STYPE = float8[], FINALFUNC = telemetry_interval_final)`,
  },
  {
    // The rollup tiers rollup_1m, rollup_1h, rollup_1d and the retention horizons (store/tiers.ts), filled from
    // the rows stored so far.
    version: 4,
    sql: tierMigrationSql("postgres"),
  },
];

const INT8_OID = 20;
/** Connections the processor's store keeps: one commits while the next batch may already start. */
const WRITE_POOL_SIZE = 2;
const CONNECT_TIMEOUT_MS = 10_000;
/** Serialises migrations of processors starting at once (an advisory lock, held until the transaction ends). */
const MIGRATION_LOCK = "telemetry.migrations";

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

/**
 * Applies the migrations `schema_migrations` does not list yet, in one transaction under an advisory lock, so
 * processors starting together migrate once. Returns the latest version; throws when the database is newer.
 */
export async function migratePostgres(client: pg.ClientBase): Promise<number> {
  const latest = PG_MIGRATIONS.at(-1)?.version ?? 0;
  await client.query("BEGIN");
  try {
    await client.query("SELECT pg_advisory_xact_lock(hashtext($1))", [MIGRATION_LOCK]);
    await client.query(
      "CREATE TABLE IF NOT EXISTS schema_migrations (version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())",
    );
    const { rows } = await client.query<{ v: number | null }>(
      "SELECT max(version) AS v FROM schema_migrations",
    );
    const current = rows[0]?.v ?? 0;
    if (current > latest) {
      throw new Error(
        `database schema version ${current} is newer than this program knows (${latest}); upgrade it`,
      );
    }
    for (const m of PG_MIGRATIONS) {
      if (m.version <= current) continue;
      await client.query(m.sql);
      await client.query("INSERT INTO schema_migrations (version) VALUES ($1)", [m.version]);
    }
    await client.query("COMMIT");
    return latest;
  } catch (err) {
    await client.query("ROLLBACK").catch(() => {});
    throw err;
  }
}

const INSERT = `INSERT INTO readings
    (device_id, sensor, ts, value, unit, seq, gateway_id, received_at, stored_at, quality, tags)
  SELECT d, s, t, v, u, q, g, r, $9, ql, tg
  FROM unnest($1::text[], $2::text[], $3::bigint[], $4::float8[], $5::text[], $6::bigint[], $7::text[],
              $8::bigint[], $10::text[], $11::text[]) WITH ORDINALITY AS b(d, s, t, v, u, q, g, r, ql, tg, i)
  ORDER BY i
  ON CONFLICT DO NOTHING
  RETURNING device_id, sensor, ts`;
const KEPT = `SELECT device_id, sensor, ts, value, unit, seq, quality, tags FROM readings
  WHERE (device_id, sensor, ts) IN (SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[]))`;

/**
 * At most `$2` rows older than `$1`, found series by series: the series by skipping along the key (one index seek
 * each), then each series' old rows as the start of its key range. Nothing reads the newer rows, and no index on
 * `ts` alone is needed (it would slow every insert).
 */
const DELETE_OLD = `WITH RECURSIVE s(device_id, sensor) AS (
    (SELECT device_id, sensor FROM readings ORDER BY device_id, sensor LIMIT 1)
    UNION ALL
    SELECT n.device_id, n.sensor FROM s CROSS JOIN LATERAL (
      SELECT device_id, sensor FROM readings WHERE (device_id, sensor) > (s.device_id, s.sensor)
      ORDER BY device_id, sensor LIMIT 1) AS n),
  old AS (
    SELECT o.ctid FROM s CROSS JOIN LATERAL (
      SELECT ctid FROM readings WHERE device_id = s.device_id AND sensor = s.sensor AND ts < $1
      ORDER BY ts LIMIT $2) AS o
    LIMIT $2)
  DELETE FROM readings WHERE ctid IN (SELECT ctid FROM old)`;

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

/**
 * The PostgreSQL {@link ReadingStore}. `writeBatch` resolves once the batch's transaction has committed (with
 * PostgreSQL's default `synchronous_commit`, durably) and rejects with PostgreSQL's error, nothing stored, when it
 * did not. The first reading of a key wins, whichever processor writes it; a later one with the same measurement
 * is a duplicate, with another a conflict (the stored row is kept).
 */
export class PostgresStore implements ReadingStore {
  #stopped: Promise<void> | undefined;

  private constructor(
    private readonly pool: pg.Pool,
    private readonly url: string,
  ) {}

  /**
   * Connects to `url` and applies the migrations; rejects with one line naming the database (password masked)
   * and PostgreSQL's reason when it cannot.
   */
  static async open(url: string): Promise<PostgresStore> {
    const pool = openPool(url, { max: WRITE_POOL_SIZE, applicationName: "telemetry processor" });
    try {
      const client = await pool.connect();
      try {
        await migratePostgres(client);
      } finally {
        client.release();
      }
    } catch (err) {
      await pool.end().catch(() => {});
      throw openError(url, err);
    }
    return new PostgresStore(pool, url);
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
      await client.query("BEGIN");
      const inserted = await client.query<{ device_id: string; sensor: string; ts: number }>(INSERT, [
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
      ]);
      const fresh = new Set(inserted.rows.map((k) => keyOf(k.device_id, k.sensor, k.ts)));
      const resent: { r: Reading; m: StoredMeasurement; index: number }[] = [];
      rows.forEach(({ r, m }, i) => {
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
      return { inserted: inserted.rowCount ?? inserted.rows.length, duplicates, conflicts, expired: 0 };
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
   * Retention: deletes at most `limit` readings with `ts` before `cutoff` in one statement (its own transaction)
   * and resolves with how many once committed. This store keeps no rollup, so there is nothing else to correct.
   * Processors running it at once delete disjoint rows: a row another one deleted first is skipped.
   */
  async deleteOlderThan(cutoff: number, limit: number): Promise<number> {
    if (this.#stopped) throw new Error(`PostgreSQL store ${redactUrl(this.url)} is closed`);
    if (limit <= 0) return 0;
    const r = await this.pool.query(DELETE_OLD, [cutoff, limit]);
    return r.rowCount ?? 0;
  }

  /** {@link ReadingStore.deleteTierOlderThan}: not kept yet (the tiers' retention is being built). */
  async deleteTierOlderThan(table: TierTable, _cutoff: number, _limit: number): Promise<number> {
    throw new Error(`retention of ${table} is not built yet`);
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
