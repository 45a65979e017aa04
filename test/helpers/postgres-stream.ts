import {
  expectStoredExactlyOnce,
  type StoredReadings,
  type Stream,
  type StreamCounts,
} from "./fault-stream.js";
import type { PgDatabase } from "./postgres.js";
import type { TestNames } from "./services.js";

interface PgRow {
  device_id: string;
  sensor: string;
  ts: string;
  value: number;
  unit: string | null;
  seq: string | null;
  gateway_id: string;
}

/** The rows of a PostgreSQL store, with its BIGINT `ts` and `seq` (text in node-postgres) as numbers. */
export function postgresReadings(db: PgDatabase): StoredReadings {
  return {
    count: async () => (await db.query<{ n: number }>("SELECT count(*)::int AS n FROM readings"))[0]?.n ?? 0,
    rows: async () =>
      (
        await db.query<PgRow>(
          "SELECT device_id, sensor, ts, value, unit, seq, gateway_id FROM readings ORDER BY device_id, sensor, ts",
        )
      ).map((r) => ({ ...r, ts: Number(r.ts), seq: r.seq === null ? null : Number(r.seq) })),
  };
}

/**
 * fault-stream.ts's `expectStoredExactlyOnce` for a PostgreSQL store: the same checks (every acknowledged reading
 * stored once with the values sent and the test's gateway id, nothing extra, `<QUEUE>` and `<QUEUE>.dead` empty)
 * on the rows of `db`.
 */
export function expectStoredExactlyOnceInPostgres(
  names: TestNames,
  db: PgDatabase,
  stream: Stream,
  timeoutMs = 30_000,
): Promise<StreamCounts> {
  return expectStoredExactlyOnce(names, stream, timeoutMs, [names.gatewayId], postgresReadings(db));
}
