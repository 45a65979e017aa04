/**
 * What operators' commands (`telemetry status`, `telemetry check --connect`, `telemetry backup`) need to know of a
 * SQLite database, read from outside the processor. Every statement against `readings` stays in store/. Read-only:
 * nothing here creates, migrates or writes the database, and WAL lets it read while the processor writes.
 */
import { accessSync, constants, existsSync, statSync } from "node:fs";
import { dirname, resolve } from "node:path";
import Database from "better-sqlite3";

/** Rows stored and the newest times, as `telemetry status` shows them. */
export interface StoreStatus {
  readonly path: string;
  readonly rows: number;
  /** Newest time of measurement, epoch ms UTC; null when the table is empty. */
  readonly newestTs: number | null;
  /** Newest commit time, epoch ms UTC; null when the table is empty. */
  readonly newestStoredAt: number | null;
  /** Size of the database file, bytes (without its WAL). */
  readonly bytes: number;
}

/**
 * Counts the rows and finds the newest times in one read transaction (one pass over the table). Throws with the
 * reason when the file does not exist or holds no `readings` table.
 */
export function storeStatus(path: string): StoreStatus {
  const db = new Database(path, { readonly: true, fileMustExist: true });
  try {
    const row = db
      .prepare("SELECT count(*) AS n, max(ts) AS ts, max(stored_at) AS storedAt FROM readings")
      .get() as { n: number; ts: number | null; storedAt: number | null };
    return { path, rows: row.n, newestTs: row.ts, newestStoredAt: row.storedAt, bytes: statSync(path).size };
  } finally {
    db.close();
  }
}

/**
 * Whether a service could use the database at `path`, without changing it: `write` (the processor) needs the
 * file writable, or, when it does not exist yet, a writable folder to create it in; otherwise (readers) the file
 * must exist and hold `readings`. Resolves with a one-line description, or throws with the reason.
 */
export function probeSqlite(path: string, opts: { write: boolean }): string {
  if (!existsSync(path)) {
    if (!opts.write) throw new Error(`${path} does not exist`);
    let dir = dirname(resolve(path));
    while (!existsSync(dir)) dir = dirname(dir);
    if (!statSync(dir).isDirectory()) throw new Error(`cannot create ${path}: ${dir} is not a folder`);
    accessSync(dir, constants.W_OK);
    return `${path} does not exist yet; ${dir} is writable, the processor will create it`;
  }
  if (opts.write) accessSync(path, constants.R_OK | constants.W_OK);
  const db = new Database(path, { readonly: true, fileMustExist: true });
  try {
    const version = db.pragma("user_version", { simple: true }) as number;
    const mode = db.pragma("journal_mode", { simple: true }) as string;
    if (version > 0) db.prepare("SELECT 1 FROM readings LIMIT 1").get();
    else if (!opts.write) throw new Error(`${path} has no readings table`);
    return `${path}: schema migration ${version}, journal ${mode}`;
  } finally {
    db.close();
  }
}

/** Progress of {@link backupDatabase}: pages copied so far out of the total. */
export interface BackupProgress {
  readonly totalPages: number;
  readonly remainingPages: number;
}

/** Pages copied per step at first: small steps so progress shows and the source's lock is held only briefly. */
const FIRST_STEP_PAGES = 256;

/**
 * Copies the database at `source` to `target` with SQLite's online backup API while other connections write.
 * The copy is one consistent snapshot: SQLite restarts a backup whose source changed between two steps, so each
 * restart doubles the step size until the rest is copied in one step (one read transaction), which a busy writer
 * can no longer interrupt. Every row committed before the call is in the copy. `target` must not exist.
 */
export async function backupDatabase(
  source: string,
  target: string,
  onProgress: (p: BackupProgress) => void,
): Promise<{ pages: number; restarts: number; rows: number }> {
  if (existsSync(target)) throw new Error(`${target} already exists; give a new file`);
  const db = new Database(source, { readonly: true, fileMustExist: true });
  try {
    db.prepare("SELECT 1 FROM readings LIMIT 1").get();
    let step = FIRST_STEP_PAGES;
    let restarts = 0;
    let lastRemaining = Number.POSITIVE_INFINITY;
    const result = await db.backup(target, {
      progress: ({ totalPages, remainingPages }) => {
        if (remainingPages > lastRemaining) {
          restarts++;
          step *= 2;
        }
        lastRemaining = remainingPages;
        onProgress({ totalPages, remainingPages });
        return step;
      },
    });
    return { pages: result.totalPages, restarts, rows: verifyCopy(target) };
  } finally {
    db.close();
  }
}

/** Opens a copy read-only, runs SQLite's quick check and counts its rows; throws when the copy is damaged. */
function verifyCopy(path: string): number {
  const copy = new Database(path, { readonly: true, fileMustExist: true });
  try {
    const check = copy.pragma("quick_check", { simple: true });
    if (check !== "ok") throw new Error(`the copy ${path} fails SQLite's quick check: ${String(check)}`);
    return (copy.prepare("SELECT count(*) AS n FROM readings").get() as { n: number }).n;
  } finally {
    copy.close();
  }
}
