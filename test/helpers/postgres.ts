import { randomBytes } from "node:crypto";
import pg from "pg";
import { afterEach, inject } from "vitest";
import { PostgresStore } from "../../store/postgres.js";

/** A PostgreSQL database of a test's own, created on the server of `DATABASE_URL` (or the local one). */
export interface PgDatabase {
  readonly name: string;
  /** `postgres://...` of this database, as DATABASE_URL would give it to a service. */
  readonly url: string;
  /** Runs one statement on the database (a connection of its own, for the test's checks). */
  query<R extends pg.QueryResultRow>(sql: string, params?: unknown[]): Promise<R[]>;
  /** Closes the test's connection and drops the database, ending the sessions services left on it. */
  dispose(): Promise<void>;
}

/** The server tests create their databases on: global-setup's `databaseUrl`. */
export function serverUrl(): string {
  return inject("databaseUrl");
}

function urlOf(name: string): string {
  const u = new URL(serverUrl());
  u.pathname = `/${name}`;
  return u.toString();
}

/** Creates an empty database named `<prefix>_<random>` (letters, digits and `_`, so no quoting surprises). */
export async function createDatabase(prefix: string): Promise<PgDatabase> {
  const name = `${prefix.replace(/[^a-z0-9_]/gi, "_").toLowerCase()}_${randomBytes(4).toString("hex")}`;
  const admin = new pg.Client({ connectionString: serverUrl() });
  await admin.connect();
  try {
    await admin.query(`CREATE DATABASE "${name}"`);
  } finally {
    await admin.end();
  }
  const url = urlOf(name);
  const client = new pg.Client({ connectionString: url });
  client.on("error", () => {});
  await client.connect();
  return {
    name,
    url,
    async query<R extends pg.QueryResultRow>(sql: string, params: unknown[] = []) {
      return (await client.query<R>(sql, params)).rows;
    },
    async dispose() {
      await client.end().catch(() => {});
      const a = new pg.Client({ connectionString: serverUrl() });
      await a.connect();
      try {
        await a.query(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`);
      } finally {
        await a.end();
      }
    },
  };
}

/** A URL of a database that does not exist on the test server (for "cannot open" checks). */
export function missingDatabaseUrl(): string {
  return urlOf(`no_such_db_${randomBytes(4).toString("hex")}.missing`);
}

/**
 * Per test file: `database(name)` creates a database and `open(db)` a PostgresStore on it, both disposed after each
 * test in the reverse order (stores first), with whatever else a test hands to `cleanup`.
 */
export function postgresStores(): {
  database(name: string): Promise<PgDatabase>;
  open(db: PgDatabase): Promise<PostgresStore>;
  cleanup(dispose: () => Promise<void>): void;
} {
  const cleanups: (() => Promise<void>)[] = [];
  afterEach(async () => {
    for (const c of cleanups.splice(0).reverse()) await c();
  });
  return {
    async database(name) {
      const db = await createDatabase(name);
      cleanups.push(() => db.dispose());
      return db;
    },
    async open(db) {
      const store = await PostgresStore.open(db.url);
      cleanups.push(() => store.stop());
      return store;
    },
    cleanup(dispose) {
      cleanups.push(dispose);
    },
  };
}
