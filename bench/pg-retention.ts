/**
 * `npm run bench:pg-retention [-- --rows N]`: PostgreSQL retention of one day of N rows (default 10 million, 1,000
 * devices), as the store does it (the day's partition dropped, `deleteOlderThan`) against a `DELETE` of the same
 * rows and the VACUUM that must follow it; then what migration 5 costs to move an unpartitioned table of N rows into
 * day partitions. Seconds and WAL bytes for each. Runs on `DATABASE_URL` (or the local server) in databases of its
 * own, dropped at the end.
 *
 * WAL bytes: the DELETE's own, from `EXPLAIN (ANALYZE, WAL)`; the others as the growth of the server's WAL position
 * while they ran, which also counts whatever else the server wrote then (an upper bound on a shared server).
 */
import { randomBytes } from "node:crypto";
import { parseArgs } from "node:util";
import pg from "pg";
import { PostgresStore } from "../store/postgres.js";
import { PG_MIGRATIONS } from "../store/postgres-migrations.js";
import { fmt, say } from "./util.js";

const DAY = 86_400_000;
const D0 = Date.UTC(2026, 0, 5);
const DEVICES = 1_000;

const { values } = parseArgs({ options: { rows: { type: "string" } } });
const rows = Number(values.rows ?? 10_000_000);
const serverUrl =
  process.env.DATABASE_URL?.startsWith("postgres") === true
    ? process.env.DATABASE_URL
    : "postgres://postgres@127.0.0.1:5432/postgres";

/** One day of `rows` readings from D0 on, in time order, each device every DAY / (rows / DEVICES) ms. */
const FILL = `INSERT INTO readings (device_id, sensor, ts, value, unit, seq, gateway_id, received_at, stored_at)
  SELECT 'dev-' || (i % ${DEVICES}), 'temperature', t, random() * 40, 'C', NULL, 'gw', t, t
  FROM generate_series(0, $1::bigint - 1) AS i, LATERAL (SELECT $2::bigint + (i / ${DEVICES}) * $3::bigint AS t) AS x`;

const admin = new pg.Client({ connectionString: serverUrl });
await admin.connect();
const made: string[] = [];

async function database(): Promise<{ url: string; db: pg.Client }> {
  const name = `bench_pg_retention_${randomBytes(4).toString("hex")}`;
  await admin.query(`CREATE DATABASE "${name}"`);
  made.push(name);
  const u = new URL(serverUrl);
  u.pathname = `/${name}`;
  const db = new pg.Client({ connectionString: u.toString() });
  await db.connect();
  return { url: u.toString(), db };
}

const lsn = async () =>
  (await admin.query<{ l: string }>("SELECT pg_current_wal_lsn()::text AS l")).rows[0]?.l ?? "0/0";
const walSince = async (from: string) =>
  Number(
    (await admin.query<{ b: string }>("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), $1) AS b", [from]))
      .rows[0]?.b,
  );

/** Runs `fn`, returning its seconds and the server's WAL growth meanwhile. */
async function measure(fn: () => Promise<unknown>): Promise<{ s: number; wal: number }> {
  const from = await lsn();
  const t = performance.now();
  await fn();
  return { s: (performance.now() - t) / 1_000, wal: await walSince(from) };
}

async function fill(db: pg.Client): Promise<void> {
  const t = performance.now();
  await db.query(FILL, [rows, D0, Math.floor(DAY / Math.ceil(rows / DEVICES))]);
  await db.query("ANALYZE readings");
  say(`filled one day with ${fmt(rows)} rows in ${((performance.now() - t) / 1_000).toFixed(1)} s`);
}

const lines: string[] = [];
const line = (what: string, m: { s: number; wal: number }, note = "") =>
  lines.push(`| ${what} | ${m.s.toFixed(2)} | ${fmt(m.wal / 1_048_576)} MiB (${fmt(m.wal)} B)${note} |`);

try {
  {
    // Partition drop: the store's own retention.
    const { url, db } = await database();
    const store = await PostgresStore.open(url);
    await db.query("SELECT telemetry_readings_partition($1)", [D0]);
    await fill(db);
    let dropped = 0;
    const m = await measure(async () => {
      dropped = await store.deleteOlderThan(D0 + DAY, 1_000);
    });
    if (dropped !== rows) throw new Error(`dropped ${dropped} rows, not ${rows}`);
    line("partition drop (deleteOlderThan)", m, " *");
    await store.stop();
    await db.end();
  }
  {
    // DELETE of the same day, then the VACUUM that frees its space.
    const { url, db } = await database();
    const store = await PostgresStore.open(url);
    await store.stop();
    await db.query("SELECT telemetry_readings_partition($1)", [D0]);
    await fill(db);
    let walBytes = 0;
    const t = performance.now();
    const plan = await db.query<{ "QUERY PLAN": [{ Plan: { "WAL Bytes": number } }] }>(
      "EXPLAIN (ANALYZE, WAL, FORMAT JSON) DELETE FROM readings WHERE ts >= $1 AND ts < $2",
      [D0, D0 + DAY],
    );
    walBytes = plan.rows[0]?.["QUERY PLAN"][0].Plan["WAL Bytes"] ?? 0;
    line("DELETE of the day", { s: (performance.now() - t) / 1_000, wal: walBytes });
    line("VACUUM after the DELETE", await measure(() => db.query("VACUUM readings")), " *");
    await db.end();
  }
  {
    // Migration 5 on an unpartitioned (version 4) table of the same rows.
    const { url, db } = await database();
    await db.query(
      "CREATE TABLE schema_migrations (version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())",
    );
    for (const m of PG_MIGRATIONS.filter((m) => m.version <= 4)) {
      await db.query(m.sql);
      await db.query("INSERT INTO schema_migrations (version) VALUES ($1)", [m.version]);
    }
    await fill(db);
    const m = await measure(async () => (await PostgresStore.open(url)).stop());
    line("migration 5 (copy into partitions) at open", m, " *");
    await db.end();
  }
  process.stdout.write(
    [
      `PostgreSQL retention of one day of ${fmt(rows)} rows (${DEVICES} devices)`,
      "",
      "| step | seconds | WAL |",
      "| --- | ---: | ---: |",
      ...lines,
      "",
      "* WAL as the growth of the server's WAL position meanwhile (anything else the server wrote included).",
      "",
    ].join("\n"),
  );
} finally {
  for (const name of made) await admin.query(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`);
  await admin.end();
}
