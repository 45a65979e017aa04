/**
 * What operators' commands (`telemetry status`, `telemetry check --connect`) need to know of a PostgreSQL store,
 * read from outside the processor. Read-only: nothing here creates, migrates or writes the database.
 */
import { redactUrl } from "../common/config.js";
import { openPool } from "./postgres.js";
import type { StoreStatus } from "./status.js";

/**
 * Rows stored and the newest times, in one statement (one pass over the table); `path` is the URL with its
 * password masked and `bytes` the size of the table's partitions with their indexes. Throws with the reason when the database cannot
 * be reached or holds no `readings` table.
 */
export async function postgresStatus(url: string): Promise<StoreStatus> {
  const pool = openPool(url, { max: 1, applicationName: "telemetry status", readOnly: true });
  try {
    const { rows } = await pool.query<{
      n: number;
      ts: number | null;
      stored_at: number | null;
      bytes: number;
    }>(
      `SELECT count(*) AS n, max(ts) AS ts, max(stored_at) AS stored_at,
              (SELECT sum(pg_total_relation_size(relid))::bigint FROM pg_partition_tree('readings')) AS bytes
         FROM readings`,
    );
    const r = rows[0];
    return {
      path: redactUrl(url),
      rows: r?.n ?? 0,
      newestTs: r?.ts ?? null,
      newestStoredAt: r?.stored_at ?? null,
      bytes: r?.bytes ?? 0,
    };
  } finally {
    await pool.end();
  }
}

/**
 * Whether a service could use the database at `url`, without changing it: it must answer; readers need the
 * `readings` table, while the processor creates it on its first start (its migrations). Resolves with a one-line
 * description, or throws with PostgreSQL's reason.
 */
export async function probePostgres(url: string, opts: { write: boolean }): Promise<string> {
  const pool = openPool(url, { max: 1, applicationName: "telemetry check", readOnly: true });
  try {
    const { rows } = await pool.query<{ version: string; table: string | null }>(
      "SELECT current_setting('server_version') AS version, to_regclass('readings')::text AS table",
    );
    const r = rows[0];
    if (r?.table == null) {
      if (!opts.write) throw new Error("no readings table");
      return `PostgreSQL ${r?.version}: no readings table yet, the processor will create it`;
    }
    const migrations = await pool.query<{ v: number | null }>(
      "SELECT max(version) AS v FROM schema_migrations",
    );
    return `PostgreSQL ${r.version}: schema migration ${migrations.rows[0]?.v ?? 0}`;
  } finally {
    await pool.end();
  }
}
