/**
 * Rollup tiers (docs/contract.md, "Rollups, retention and devices"): per series, a row per minute, hour and day of
 * UTC time with count, min, max, sum and the first and last reading by `ts`, in tables `rollup_1m`, `rollup_1h`
 * and `rollup_1d` on both stores. A reading counts in them when its row is inserted, in the same transaction, and
 * never again: a duplicate or a conflict inserts nothing, so the tiers stay what a recomputation from every reading
 * ever stored would give. Retention of raw rows leaves them be; a reading older than what retention already
 * deleted is refused as expired (its row may have been stored and counted before), and a tier's own retention
 * deletes its old rows and refuses late readings for them alike. Those limits are the `horizons` table.
 */

/** The three tiers, narrowest first. */
export const TIERS = [
  { table: "rollup_1m", ms: 60_000, retentionEnv: "RETENTION_1M" },
  { table: "rollup_1h", ms: 3_600_000, retentionEnv: "RETENTION_1H" },
  { table: "rollup_1d", ms: 86_400_000, retentionEnv: "RETENTION_1D" },
] as const;

export type TierTable = (typeof TIERS)[number]["table"];

/** `horizons` names: raw readings and each tier. Below a horizon, rows may have been deleted by retention. */
export type HorizonName = "readings" | TierTable;

/** One row of a tier, as the table holds it. */
export interface TierRow {
  readonly device_id: string;
  readonly sensor: string;
  /** Bucket start, epoch ms UTC, a multiple of the tier's width. */
  readonly start: number;
  readonly count: number;
  readonly min: number;
  readonly max: number;
  readonly sum: number;
  readonly first_ts: number;
  readonly first_value: number;
  readonly last_ts: number;
  readonly last_value: number;
}

/** What a tier needs of an inserted reading. */
export interface TierInput {
  readonly device_id: string;
  readonly sensor: string;
  readonly ts: number;
  readonly value: number;
}

/** The bucket of width `ms` holding `ts` (epoch ms, not negative). */
export const bucketStart = (ts: number, ms: number): number => ts - (ts % ms);

/** Two rows of one bucket as one: what the stores' upsert does with an existing row and a batch's delta. */
export function mergeTierRows(a: TierRow, b: TierRow): TierRow {
  const bFirst = b.first_ts < a.first_ts;
  const bLast = b.last_ts > a.last_ts;
  return {
    device_id: a.device_id,
    sensor: a.sensor,
    start: a.start,
    count: a.count + b.count,
    min: Math.min(a.min, b.min),
    max: Math.max(a.max, b.max),
    sum: a.sum + b.sum,
    first_ts: bFirst ? b.first_ts : a.first_ts,
    first_value: bFirst ? b.first_value : a.first_value,
    last_ts: bLast ? b.last_ts : a.last_ts,
    last_value: bLast ? b.last_value : a.last_value,
  };
}

const rowOf = (r: TierInput, start: number): TierRow => ({
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

/**
 * The rows a batch of inserted readings adds to the tier of width `ms`: one per (series, bucket), in key order
 * (device_id, sensor, start by code unit), so writers that upsert them in this order lock rows in one order.
 * Readings with `ts` below `horizon` (the tier's retention) are left out.
 */
export function tierDeltas(readings: Iterable<TierInput>, ms: number, horizon = 0): TierRow[] {
  const rows = new Map<string, TierRow>();
  for (const r of readings) {
    if (r.ts < horizon) continue;
    const start = bucketStart(r.ts, ms);
    const key = `${r.device_id}\u0000${r.sensor}\u0000${start}`;
    const had = rows.get(key);
    const one = rowOf(r, start);
    rows.set(key, had === undefined ? one : mergeTierRows(had, one));
  }
  return [...rows.values()].sort(byTierKey);
}

/** Key order of tier rows: device_id, sensor (by code unit, as `COLLATE "C"` and SQLite compare), start. */
export function byTierKey(a: TierRow, b: TierRow): number {
  if (a.device_id !== b.device_id) return a.device_id < b.device_id ? -1 : 1;
  if (a.sensor !== b.sensor) return a.sensor < b.sensor ? -1 : 1;
  return a.start - b.start;
}

/** The tier's table definition; `real` is SQLite's REAL or PostgreSQL's double precision, `int` INTEGER or bigint. */
export function tierTableSql(table: TierTable, dialect: "sqlite" | "postgres"): string {
  const pg = dialect === "postgres";
  const text = pg ? 'text COLLATE "C"' : "TEXT";
  const int = pg ? "bigint" : "INTEGER";
  const real = pg ? "double precision" : "REAL";
  return `CREATE TABLE ${table} (
      device_id   ${text} NOT NULL,
      sensor      ${text} NOT NULL,
      start       ${int} NOT NULL, -- bucket start, epoch ms UTC
      count       ${int} NOT NULL,
      min         ${real} NOT NULL,
      max         ${real} NOT NULL,
      sum         ${real} NOT NULL,
      first_ts    ${int} NOT NULL,
      first_value ${real} NOT NULL,
      last_ts     ${int} NOT NULL,
      last_value  ${real} NOT NULL,
      PRIMARY KEY (device_id, sensor, start)
    )${pg ? "" : " WITHOUT ROWID"}`;
}

/**
 * Adds one delta row to a tier: `INSERT ... ON CONFLICT DO UPDATE`, parameters in {@link TierRow}'s order
 * (device_id, sensor, start, count, min, max, sum, first_ts, first_value, last_ts, last_value) as `?` for SQLite
 * or `$1..$11` for PostgreSQL. Every right-hand side reads the row as it was before the update.
 */
export function tierUpsertSql(table: TierTable, dialect: "sqlite" | "postgres"): string {
  const pg = dialect === "postgres";
  const p = (i: number) => (pg ? `$${i}` : "?");
  const least = pg ? "least" : "min";
  const greatest = pg ? "greatest" : "max";
  const t = table;
  return `INSERT INTO ${t} (device_id, sensor, start, count, min, max, sum, first_ts, first_value, last_ts, last_value)
    VALUES (${Array.from({ length: 11 }, (_, i) => p(i + 1)).join(", ")})
    ON CONFLICT (device_id, sensor, start) DO UPDATE SET
      count = ${t}.count + excluded.count,
      min = ${least}(${t}.min, excluded.min),
      max = ${greatest}(${t}.max, excluded.max),
      sum = ${t}.sum + excluded.sum,
      first_ts = ${least}(${t}.first_ts, excluded.first_ts),
      first_value = CASE WHEN excluded.first_ts < ${t}.first_ts THEN excluded.first_value ELSE ${t}.first_value END,
      last_ts = ${greatest}(${t}.last_ts, excluded.last_ts),
      last_value = CASE WHEN excluded.last_ts > ${t}.last_ts THEN excluded.last_value ELSE ${t}.last_value END`;
}

/** A {@link TierRow} as the upsert's parameters. */
export const tierParams = (
  r: TierRow,
): [string, string, number, number, number, number, number, number, number, number, number] => [
  r.device_id,
  r.sensor,
  r.start,
  r.count,
  r.min,
  r.max,
  r.sum,
  r.first_ts,
  r.first_value,
  r.last_ts,
  r.last_value,
];

/**
 * The tier recomputed from the `readings` table (`WHERE` optional, e.g. one series): what migrations fill a new
 * tier with and what tests compare a kept tier against. Same SQL on both stores; rows in key order.
 */
export function tierFromReadingsSql(ms: number, where = ""): string {
  return `SELECT g.device_id, g.sensor, g.start, g.count, g.min, g.max, g.sum,
      g.first_ts, f.value AS first_value, g.last_ts, l.value AS last_value
    FROM (SELECT device_id, sensor, ts - ts % ${ms} AS start, count(*) AS count, min(value) AS min,
                 max(value) AS max, sum(value) AS sum, min(ts) AS first_ts, max(ts) AS last_ts
          FROM readings ${where} GROUP BY device_id, sensor, ts - ts % ${ms}) AS g
    JOIN readings AS f ON f.device_id = g.device_id AND f.sensor = g.sensor AND f.ts = g.first_ts
    JOIN readings AS l ON l.device_id = g.device_id AND l.sensor = g.sensor AND l.ts = g.last_ts
    ORDER BY g.device_id, g.sensor, g.start`;
}

/** The `horizons` table: per name, the `ts` below which retention may have deleted rows (0: nothing deleted). */
export function horizonsTableSql(dialect: "sqlite" | "postgres"): string {
  const pg = dialect === "postgres";
  return `CREATE TABLE horizons (
      name ${pg ? "text" : "TEXT"} PRIMARY KEY, -- readings, rollup_1m, rollup_1h or rollup_1d
      ts   ${pg ? "bigint" : "INTEGER"} NOT NULL  -- epoch ms UTC: rows with ts (start, for a tier) below it may be gone
    )${pg ? "" : " WITHOUT ROWID"};
    INSERT INTO horizons (name, ts) VALUES ('readings', 0), ('rollup_1m', 0), ('rollup_1h', 0), ('rollup_1d', 0)`;
}

/** Statements a migration runs to add the tiers and horizons, filled from the rows already stored. */
export function tierMigrationSql(dialect: "sqlite" | "postgres"): string {
  return [
    horizonsTableSql(dialect),
    ...TIERS.flatMap((t) => [
      tierTableSql(t.table, dialect),
      `INSERT INTO ${t.table} (device_id, sensor, start, count, min, max, sum, first_ts, first_value, last_ts, last_value) ${tierFromReadingsSql(t.ms)}`,
    ]),
  ].join(";\n");
}
