/**
 * The store: where the processor writes readings. `openStore` picks the backend from the configuration; every
 * backend implements `ReadingStore` (store.ts) and holds the same `readings` table and key.
 */
import type { ReadingStore } from "./store.js";
import { WorkerStore } from "./worker-store.js";

export type { Conflict, ReadingStore, WriteResult } from "./store.js";

/** Where the readings live: a SQLite file, or (`databaseUrl`) a PostgreSQL database. */
export interface StoreConfig {
  readonly dbPath: string;
  readonly databaseUrl?: string | undefined;
}

/**
 * Opens the configured store and applies its migrations; rejects with a one-line reason when it cannot be opened.
 * SQLite runs on a worker thread, so commits (which wait for fsync) never stall the caller's event loop.
 */
export async function openStore(config: StoreConfig): Promise<ReadingStore> {
  if (config.databaseUrl) {
    throw new Error(
      "DATABASE_URL: the PostgreSQL store is not available in this release; unset it to use SQLite",
    );
  }
  return WorkerStore.open(config.dbPath);
}
