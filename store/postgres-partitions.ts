/**
 * PostgreSQL's `readings` is partitioned by range of `ts`, a partition per UTC day named `readings_YYYYMMDD`
 * (migration 5 in store/postgres-migrations.ts). The store creates partitions ahead and retention drops whole days;
 * the `horizons` table (store/tiers.ts) says below which `ts` rows may be gone, and writers refuse readings below it.
 *
 * Locks, and why nothing here deadlocks or loses a count:
 * - One advisory lock, {@link HORIZONS_LOCK}, guards the horizons. Each batch takes it shared as its first
 *   statement and reads the horizons in the next one, so the horizons it filters with hold until it commits. Raising
 *   a horizon, and creating partitions, take it exclusive: they wait for the batches under way to commit, and later
 *   batches wait for them (a waiting exclusive request queues the new shared ones behind it) and then read the new
 *   value. A batch therefore never inserts a reading, nor adds to a tier bucket, below a horizon that retention has
 *   committed, and retention never removes what a batch under way is adding.
 * - Every transaction takes its locks in one order: the advisory lock first, then `readings` (the parent before a
 *   partition, as PostgreSQL itself does), then tier rows in key order. Batches take their advisory lock in a
 *   statement of its own before the INSERT locks `readings`, so no batch holds `readings` while it waits for the
 *   advisory lock.
 * - Creating a partition (`CREATE TABLE ... PARTITION OF`) and dropping one both take an ACCESS EXCLUSIVE lock on
 *   `readings`: they wait for every reader and writer of the table and hold new ones back for the few milliseconds
 *   the catalogue change takes. Both run with {@link LOCK_TIMEOUT_MS}, so an analyst's long query makes them fail
 *   and be tried again rather than hold every writer back for the query's length.
 * - Processors creating the same day at once: the exclusive advisory lock runs them one after the other, and the
 *   second finds the table (`IF NOT EXISTS`). A day wholly below the readings horizon is never created again.
 * - Retention raises the readings horizon first (its own short transaction, under the exclusive lock), then counts
 *   and drops the days below it in another. Once the horizon is committed no batch writes into those days, so the
 *   count is exact and is taken without holding any writer back; only the DROP itself waits for `readings`. If the
 *   drop fails, the horizon stays raised and the next pass drops the days (rows below a horizon "may be gone").
 *   Processors drop one at a time ({@link DROP_LOCK}, tried without waiting), so no dropped row is counted twice.
 */
import type pg from "pg";
import type { HorizonName } from "./tiers.js";

export const DAY_MS = 86_400_000;
/** Key of the advisory lock guarding `horizons` (see above). */
const HORIZONS_LOCK = "telemetry.horizons";
/** Key of the advisory lock a processor holds while it counts and drops old partitions. */
const DROP_LOCK = "telemetry.partition-drops";
/** How long partition creation and drops wait for `readings` before giving up (tried again later). */
const LOCK_TIMEOUT_MS = 2_000;

/** The UTC day holding `ts` (epoch ms), as its start. */
export const dayOf = (ts: number): number => ts - (ts % DAY_MS);

/** One partition of `readings` and its bounds (epoch ms, `from` inclusive, `to` exclusive). */
interface Partition {
  readonly name: string;
  readonly from: number;
  readonly to: number;
}

const LIST = `SELECT c.relname AS name, pg_get_expr(c.relpartbound, c.oid) AS bound
  FROM pg_inherits AS i JOIN pg_class AS c ON c.oid = i.inhrelid
  WHERE i.inhparent = 'readings'::regclass`;
const BOUND = /FROM \('?(-?\d+)'?\) TO \('?(-?\d+)'?\)/;

/** The partitions of `readings`, oldest first. */
export async function listPartitions(client: pg.ClientBase): Promise<Partition[]> {
  const { rows } = await client.query<{ name: string; bound: string }>(LIST);
  return rows
    .flatMap((r) => {
      const m = BOUND.exec(r.bound);
      return m ? [{ name: r.name, from: Number(m[1]), to: Number(m[2]) }] : [];
    })
    .sort((a, b) => a.from - b.from);
}

/**
 * Opens a batch's transaction: BEGIN, the advisory lock shared, then the horizons (one round trip; each statement
 * of it reads with its own snapshot, so the horizons are read after the lock is held). Returns the horizons.
 */
export async function beginBatch(client: pg.ClientBase): Promise<Map<HorizonName, number>> {
  const results = (await client.query(
    `BEGIN; SELECT pg_advisory_xact_lock_shared(hashtext('${HORIZONS_LOCK}')); SELECT name, ts FROM horizons`,
  )) as unknown as pg.QueryResult<{ name: HorizonName; ts: number }>[];
  return new Map((results.at(-1)?.rows ?? []).map((r) => [r.name, r.ts]));
}

/** Runs `fn` in a transaction holding the horizons lock exclusive, with {@link LOCK_TIMEOUT_MS}. */
async function exclusive<T>(client: pg.ClientBase, fn: () => Promise<T>): Promise<T> {
  await client.query(
    `BEGIN; SET LOCAL lock_timeout = ${LOCK_TIMEOUT_MS}; SELECT pg_advisory_xact_lock(hashtext('${HORIZONS_LOCK}'))`,
  );
  try {
    const result = await fn();
    await client.query("COMMIT");
    return result;
  } catch (err) {
    await client.query("ROLLBACK").catch(() => {});
    throw err;
  }
}

/** Raises horizon `name` to `ts` (never lowers it), in its own transaction under the exclusive lock. */
export function raiseHorizon(client: pg.ClientBase, name: HorizonName, ts: number): Promise<void> {
  return exclusive(client, async () => {
    await client.query("UPDATE horizons SET ts = $1 WHERE name = $2 AND ts < $1", [ts, name]);
  });
}

/**
 * Creates the partitions of `days` (day starts) that `known` does not list, skipping days wholly below the readings
 * horizon (retention dropped them; their readings are refused), and adds them all to `known`.
 */
export async function ensurePartitions(
  client: pg.ClientBase,
  days: Iterable<number>,
  known: Set<number>,
): Promise<void> {
  const missing = [...new Set(days)].filter((d) => !known.has(d)).sort((a, b) => a - b);
  if (missing.length === 0) return;
  await exclusive(client, async () => {
    const { rows } = await client.query<{ ts: number }>("SELECT ts FROM horizons WHERE name = 'readings'");
    const horizon = rows[0]?.ts ?? 0;
    const wanted = missing.filter((d) => d + DAY_MS > horizon);
    if (wanted.length > 0) {
      await client.query("SELECT telemetry_readings_partition(d) FROM unnest($1::bigint[]) AS d", [wanted]);
    }
  });
  for (const d of missing) known.add(d);
}

/**
 * Retention of raw readings: raises the readings horizon to the end of the last whole day before `cutoff` that has
 * a partition, then drops day partitions below the horizon, oldest first, until their rows reach `limit` (or none
 * is left), and returns how many rows they held. Rows of the day holding `cutoff` stay until that day is past.
 */
export async function dropOldPartitions(
  client: pg.ClientBase,
  cutoff: number,
  limit: number,
): Promise<number> {
  const bound = (await listPartitions(client)).filter((p) => p.to <= cutoff).at(-1)?.to;
  if (bound !== undefined) await raiseHorizon(client, "readings", bound);
  await client.query(`BEGIN; SET LOCAL lock_timeout = ${LOCK_TIMEOUT_MS}`);
  try {
    // One processor drops at a time, so no row is counted by two; another one dropping now leaves nothing to do.
    const turn = await client.query<{ ok: boolean }>(
      `SELECT pg_try_advisory_xact_lock(hashtext('${DROP_LOCK}')) AS ok`,
    );
    if (turn.rows[0]?.ok !== true) {
      await client.query("COMMIT");
      return 0;
    }
    const { rows } = await client.query<{ ts: number }>("SELECT ts FROM horizons WHERE name = 'readings'");
    const horizon = rows[0]?.ts ?? 0;
    const drop: string[] = [];
    let count = 0;
    for (const p of await listPartitions(client)) {
      if (p.to > horizon || count >= limit) break;
      const n = await client.query<{ n: number }>(`SELECT count(*) AS n FROM "${p.name}"`);
      count += n.rows[0]?.n ?? 0;
      drop.push(`"${p.name}"`);
    }
    if (drop.length > 0) await client.query(`DROP TABLE ${drop.join(", ")}`);
    await client.query("COMMIT");
    return count;
  } catch (err) {
    await client.query("ROLLBACK").catch(() => {});
    throw err;
  }
}
