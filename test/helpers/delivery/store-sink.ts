/** The delivery suite's adapter for the store sink (processor/store-sink.ts) over the SQLite store. */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import Database from "better-sqlite3";
import { Registry } from "prom-client";
import { silentLogger } from "../../../common/log.js";
import { processorMetrics } from "../../../processor/metrics.js";
import { StoreSink } from "../../../processor/store-sink.js";
import type { ReadingStore } from "../../../store/index.js";
import { readRows } from "../../../store/inspect.js";
import type { DeliveryAdapter, Rig } from "../delivery-suite.js";
import { readingOf, SinkUpstream, uniqueId } from "./shared.js";

const BATCH_SIZE = 100;
const BATCH_DELAY_MS = 20;
const STORE_DRAIN_TIMEOUT_MS = 5_000;

/** The store's worker thread runs the compiled store/sqlite-worker.js: the store comes from the build. */
async function openBuiltStore(dbPath: string): Promise<ReadingStore> {
  const built = (await import(
    new URL("../../../dist/store/index.js", import.meta.url).href
  )) as typeof import("../../../store/index.js");
  return built.openStore({ dbPath });
}

/**
 * The store sink (`StoreSink`) over the SQLite store (`openStore`), as the processor wires them: each item one
 * reading (seq = item), acked once its batch committed; the test reads the table. The downstream refuses while
 * another connection holds the write lock (`BEGIN IMMEDIATE`, as an analyst's tool might).
 */
export function sqliteStoreAdapter(): DeliveryAdapter {
  return {
    name: "SQLite store sink",
    role: "sink",
    notRun: {
      "in order":
        "a table has no arrival order: rows are keyed by (device, sensor, ts) and batches commit whole",
      "acks in arrival order":
        "a sink acks each delivery once its batch committed; the contract promises no order",
      "broker lost and back":
        "SQLite is a local file, there is no broker to lose (a file another writer locks is the nack scenario)",
    },
    async rig(): Promise<Rig> {
      const id = uniqueId("sqlite");
      const dir = mkdtempSync(join(tmpdir(), "telemetry-dg-"));
      const dbPath = join(dir, "telemetry.db");
      // The store is the caller's (the processor opens and closes it); each start is a new sink over it.
      const store = await openBuiltStore(dbPath);
      const upstream = new SinkUpstream();
      let sink: StoreSink | undefined;
      let locker: Database.Database | undefined;
      return {
        async start() {
          sink = new StoreSink({
            store,
            storeName: "SQLite",
            batchSize: BATCH_SIZE,
            batchDelayMs: BATCH_DELAY_MS,
            drainTimeoutMs: STORE_DRAIN_TIMEOUT_MS,
            log: silentLogger(),
            metrics: processorMetrics(new Registry()),
          });
          return sink;
        },
        async inject(seqs) {
          const target = sink;
          if (!target) throw new Error("inject before start");
          for (const s of seqs) target.write(upstream.delivery(s, readingOf(id, s)));
        },
        arrived: async () => readRows(dbPath).map((r) => r.seq ?? -1),
        acked: () => upstream.acked,
        async refuse() {
          locker = new Database(dbPath);
          locker.exec("BEGIN IMMEDIATE");
        },
        async accept() {
          locker?.exec("ROLLBACK");
          locker?.close();
          locker = undefined;
        },
        refusalSeen: () => sink?.health().ready === false,
        released: async () => sink?.inFlight === 0,
        violations: () => upstream.violations,
        async [Symbol.asyncDispose]() {
          locker?.close();
          await sink?.stop();
          await store.stop();
          rmSync(dir, { recursive: true, force: true });
        },
      };
    },
  };
}
