/**
 * The real processor with a store option the product does not offer: `processor-child.js <options as JSON> <node>
 * <cli> processor [flags]`, the form `startService("processor", env, flags, [node, child, options])` gives
 * (scripts/spawn.ts). Everything after `processor` is parsed as `telemetry processor` parses it; the store is opened
 * with `options` instead of by `openStore`. Only bench/stores.ts runs it, to measure what the `series` rollup and the
 * rollup tiers cost (`{"rollups": false}`); no user-facing setting turns them off.
 */
import { parseConfig } from "../common/config.js";
import { createLogger } from "../common/log.js";
import { runUntilSignal } from "../common/service.js";
import { processorCommand, start } from "../processor/index.js";
import type { SqliteStoreOptions } from "../store/sqlite.js";
import { WorkerStore } from "../store/worker-store.js";

const [json = "{}", ...rest] = process.argv.slice(2);
const options = JSON.parse(json) as SqliteStoreOptions;
const flags = rest.slice(rest.indexOf("processor") + 1);

async function main(): Promise<number> {
  const config = parseConfig(processorCommand.spec, flags, process.env);
  if (config.databaseUrl) throw new Error("processor-child runs the SQLite store only; unset DATABASE_URL");
  const log = createLogger("processor", config.logLevel);
  log.info({ storeOptions: options }, "bench processor child: SQLite store with options");
  const store = await WorkerStore.open(config.dbPath, options);
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
