/**
 * The analysts' queries ({@link ReadingQueries}) on the SQLite file, opened read-only, one module per kind of
 * question: store/sqlite/summary.ts (`latest`, `devices`, from the per-series rollup), store/sqlite/readings.ts
 * (pages of a device's readings) and store/sqlite/buckets.ts (`stats`, `series`). They query the current schema
 * only: a file of an older schema version is migrated when it is opened, as the processor would.
 */
import type Database from "better-sqlite3";
import { running } from "../common/pipeline.js";
import { type ReadingQueries, readingsOfPages } from "./queries.js";
import { bucketQueries } from "./sqlite/buckets.js";
import { readingPagesQuery } from "./sqlite/readings.js";
import { summaryQueries } from "./sqlite/summary.js";
import { MIGRATIONS, openDatabase } from "./sqlite.js";

export type { ReadingQueries } from "./queries.js";

/**
 * Page cache per connection. Small, because it rarely helps: a read transaction that finds the log changed by the
 * processor (every batch, under ingest) starts with an empty cache anyway, and an export reads each page once;
 * memory is what a long export or several serve workers must keep constant.
 */
export const DEFAULT_CACHE_KIB = 8_192;
const LATEST_VERSION = MIGRATIONS.at(-1)?.version ?? 0;

/**
 * The file at `path` read-only, after migrating it when it is of an older schema version. Rejects with a
 * one-line reason when the file is missing or holds no `readings` table.
 */
export function openReader(path: string): Database.Database {
  let db: Database.Database;
  try {
    db = openDatabase(path, { readonly: true });
    const version = db.pragma("user_version", { simple: true }) as number;
    const table = db.prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'readings'").get();
    if (version < 1 || table === undefined) throw new Error("not a telemetry database: no readings table");
    if (version < LATEST_VERSION) {
      db.close();
      openDatabase(path).close();
      db = openDatabase(path, { readonly: true });
    }
  } catch (err) {
    throw new Error(`cannot open ${path}: ${err instanceof Error ? err.message : String(err)}`, {
      cause: err,
    });
  }
  return db;
}

/**
 * Opens the SQLite file at `path` for {@link ReadingQueries} (see {@link openReader}). `version()` is the
 * connection's `PRAGMA data_version`, which changes whenever another connection (the processor) commits.
 */
export async function openSqliteQueries(
  path: string,
  opts: { readonly cacheKiB?: number } = {},
): Promise<ReadingQueries> {
  const db = openReader(path);
  try {
    db.pragma(`cache_size = -${opts.cacheKiB ?? DEFAULT_CACHE_KIB}`);
    // No memory map: mapped pages count in the reader's RSS and would grow with every page an export touches.
    db.pragma("mmap_size = 0");
    const summary = summaryQueries(db);
    const buckets = bucketQueries(db);
    const readingPages = readingPagesQuery(db);
    const dataVersion = db.prepare<[], number>("PRAGMA data_version").pluck();
    return running(
      {
        version: async () => String(dataVersion.get()),
        devices: async (page) => summary.devices(page),
        latest: async (device, page) => summary.latest(device, page),
        readings: (q) => readingsOfPages(readingPages(q)),
        readingPages,
        stats: buckets.stats,
        series: buckets.series,
      } satisfies Omit<ReadingQueries, "stop" | typeof Symbol.asyncDispose>,
      async () => {
        if (db.open) db.close();
      },
    );
  } catch (err) {
    db.close();
    throw err;
  }
}
