/**
 * The thread that owns the processor's SQLite connection (see worker-store.ts). It opens the database, then
 * answers each request (a batch to write, old readings or tier rows to delete) with what the committed transaction did, or with
 * the error that kept it from committing.
 */
import { parentPort, workerData } from "node:worker_threads";
import { SqliteStore } from "./sqlite.js";
import { unpackReadings } from "./worker-batch.js";
import type { WorkerData, WorkerReply, WorkerRequest } from "./worker-store.js";

const port = parentPort;
if (!port) throw new Error("sqlite-worker.js runs as a worker thread of the processor");

const { path, opts } = workerData as WorkerData;
let store: SqliteStore | undefined;
try {
  store = new SqliteStore(path, opts);
  port.postMessage({ kind: "open" } satisfies WorkerReply);
} catch (err) {
  const why = err instanceof Error ? err.message : String(err);
  port.postMessage({ kind: "fatal", message: `cannot open database ${path}: ${why}` } satisfies WorkerReply);
}

port.on("message", (req: WorkerRequest) => {
  if (req.kind === "close") {
    store?.db.close();
    port.close();
    return;
  }
  if (!store) return;
  try {
    if (req.kind === "delete" || req.kind === "deleteTier") {
      const deleted =
        req.kind === "delete"
          ? store.deleteOlderThan(req.cutoff, req.limit)
          : store.deleteTierOlderThan(req.table, req.cutoff, req.limit);
      port.postMessage({ kind: "deleted", id: req.id, deleted } satisfies WorkerReply);
      return;
    }
    const r = store.writeBatch(unpackReadings(req.readings));
    port.postMessage({ kind: "written", id: req.id, ...r } satisfies WorkerReply);
  } catch (err) {
    port.postMessage({
      kind: "failed",
      id: req.id,
      message: err instanceof Error ? err.message : String(err),
    } satisfies WorkerReply);
  }
});
