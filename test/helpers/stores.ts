import type { Reading } from "../../schemas/index.js";
import type { StoreConfig } from "../../store/index.js";
import { PostgresStore } from "../../store/postgres.js";
import { createDatabase, missingDatabaseUrl } from "./postgres.js";
import { queryDb } from "./query-db.js";

/** The backends every query test runs against (docs/contract.md, "Stores": the queries answer the same). */
export const STORE_KINDS = ["SQLite", "PostgreSQL"] as const;
export type StoreKind = (typeof STORE_KINDS)[number];

/**
 * A store of a test's own, filled only through the product's `writeBatch` (as the processor writes): a SQLite file
 * in a temporary folder, or a PostgreSQL database created for it. `dispose()` closes it and deletes it.
 */
export interface TestStore {
  readonly kind: StoreKind;
  /** What `openQueries` / `openStore` take to open this store. */
  readonly config: StoreConfig;
  /** The CLI flags that select this store (`--db PATH` or `--database-url URL`). */
  readonly cliArgs: readonly string[];
  /** The CLI flags of a store of the same kind that does not exist. */
  readonly missingArgs: readonly string[];
  write(readings: readonly Reading[]): Promise<void>;
  dispose(): Promise<void>;
}

export async function testStore(kind: StoreKind, prefix: string): Promise<TestStore> {
  if (kind === "SQLite") {
    const db = queryDb(`${prefix}-`);
    return {
      kind,
      config: { dbPath: db.path },
      cliArgs: ["--db", db.path],
      missingArgs: ["--db", `${db.path}.missing`],
      write: db.write,
      dispose: db.dispose,
    };
  }
  const database = await createDatabase(prefix);
  let store: PostgresStore;
  try {
    store = await PostgresStore.open(database.url);
  } catch (err) {
    await database.dispose();
    throw err;
  }
  return {
    kind,
    config: { dbPath: "", databaseUrl: database.url },
    cliArgs: ["--database-url", database.url],
    missingArgs: ["--database-url", missingDatabaseUrl()],
    async write(readings) {
      await store.writeBatch(readings);
    },
    async dispose() {
      await store.stop();
      await database.dispose();
    },
  };
}
