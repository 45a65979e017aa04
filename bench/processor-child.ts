/**
 * The real processor with a store option the product does not offer: `processor-child.js <options as JSON> <node>
 * <cli> processor [flags]`, the form `startService("processor", env, flags, [node, child, options])` gives
 * (scripts/spawn.ts). Everything after `processor` is parsed as `telemetry processor` parses it; the store is opened
 * with `options` instead of by `openStore`. Only bench/stores.ts runs it, to measure what the rollups cost
 * (`{"rollups": false}`, or `{"tiers": false}` on SQLite): SQLite's `series` rollup and tiers, or with `DATABASE_URL`
 * set PostgreSQL's tiers; no user-facing setting turns them off.
 */
import { parseConfig } from "../common/config.js";
import { createLogger } from "../common/log.js";
import { runUntilSignal } from "../common/service.js";
import { processorCommand, start } from "../processor/index.js";
import { PostgresStore, type PostgresStoreOptions } from "../store/postgres.js";
import type { SqliteStoreOptions } from "../store/sqlite.js";
import type { ReadingStore } from "../store/store.js";
import { WorkerStore } from "../store/worker-store.js";

const [json = "{}", ...rest] = process.argv.slice(2);
const options = JSON.parse(json) as SqliteStoreOptions & PostgresStoreOptions;
const flags = rest.slice(rest.indexOf("processor") + 1);

async function main(): Promise<number> {
  const config = parseConfig(processorCommand.spec, flags, process.env);
  const log = createLogger("processor", config.logLevel);
  const kind = config.databaseUrl ? "PostgreSQL" : "SQLite";
  log.info({ storeOptions: options }, `bench processor child: ${kind} store with options`);
  const store: ReadingStore = config.databaseUrl
    ? await PostgresStore.open(config.databaseUrl, options)
    : await WorkerStore.open(config.dbPath, options);
  try {
    return await runUntilSignal(log, (signal) => start(config, store, log, signal));
  } finally {
    await store.stop();
  }
}

main().then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    process.stderr.write(`processor-child: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exitCode = 1;
  },
);
