/**
 * The PostgreSQL store's schema: numbered migrations and the code that applies them when a processor opens the
 * store. Never edit a released migration; add one.
 */
import type pg from "pg";
import { DAY_MS } from "./postgres-partitions.js";
import { TIERS, tierMigrationSql } from "./tiers.js";

/** Serialises migrations of processors starting at once (an advisory lock, held until the transaction ends). */
const MIGRATION_LOCK = "telemetry.migrations";
const COLUMNS = "device_id, sensor, ts, value, unit, seq, gateway_id, received_at, stored_at, quality, tags";

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
  {
    // `readings` partitioned by day (store/postgres-partitions.ts). The rows stored so far are copied into the new
    // table in this transaction: one full rewrite of the table and its key, WAL included, while every reader and
    // writer of `readings` waits (docs/operations.md, "PostgreSQL", says what that costs and how to do it by hand).
    version: 5,
    sql: `CREATE FUNCTION telemetry_readings_partition(day bigint) RETURNS text
      LANGUAGE plpgsql AS $$
        DECLARE name text := 'readings_' || to_char(to_timestamp(day / 1000) AT TIME ZONE 'UTC', 'YYYYMMDD');
        BEGIN
          EXECUTE format('CREATE TABLE IF NOT EXISTS %I PARTITION OF readings FOR VALUES FROM (%s) TO (%s)',
            name, day, day + ${DAY_MS});
          RETURN name;
        END $$;
      ALTER TABLE readings RENAME TO readings_unpartitioned;
      ALTER INDEX readings_pkey RENAME TO readings_unpartitioned_pkey;
      CREATE TABLE readings (
        device_id   text COLLATE "C" NOT NULL,
        sensor      text COLLATE "C" NOT NULL,
        ts          bigint           NOT NULL,
        value       double precision NOT NULL,
        unit        text,
        seq         bigint,
        gateway_id  text             NOT NULL,
        received_at bigint           NOT NULL,
        stored_at   bigint           NOT NULL,
        quality     text             NOT NULL DEFAULT 'good',
        tags        text             NOT NULL DEFAULT '{}',
        PRIMARY KEY (device_id, sensor, ts)
      ) PARTITION BY RANGE (ts);
      SELECT telemetry_readings_partition(day)
        FROM (SELECT DISTINCT ts - ts % ${DAY_MS} AS day FROM readings_unpartitioned) AS d;
      INSERT INTO readings (${COLUMNS}) SELECT ${COLUMNS} FROM readings_unpartitioned;
      DROP TABLE readings_unpartitioned`,
  },
  {
    // Every batch updates its series' rows of each tier in place. With room left on each page, PostgreSQL writes
    // the new row version beside the old one and adds no key entry (a HOT update): on a fleet of 4,000 series
    // written as bench/pg-tiers.ts writes them (a one-off A/B), 97% of tier updates against 40% to 65% at the
    // default, tables a fifth the size (docs/performance.md). Applies to pages written from now on; a table's
    // older pages stay full until rewritten.
    version: 6,
    sql: TIERS.map((t) => `ALTER TABLE ${t.table} SET (fillfactor = 70)`).join(";\n"),
  },
];

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
