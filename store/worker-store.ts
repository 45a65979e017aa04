import { Worker } from "node:worker_threads";
import type { Reading } from "../schemas/index.js";
import type { SqliteStoreOptions } from "./sqlite.js";
import type { ReadingStore, WriteResult } from "./store.js";
import type { TierTable } from "./tiers.js";
import { type PackedReadings, packReadings } from "./worker-batch.js";

export type WorkerRequest =
  | { readonly kind: "write"; readonly id: number; readonly readings: PackedReadings }
  | { readonly kind: "delete"; readonly id: number; readonly cutoff: number; readonly limit: number }
  | {
      readonly kind: "deleteTier";
      readonly id: number;
      readonly table: TierTable;
      readonly cutoff: number;
      readonly limit: number;
    }
  | { readonly kind: "close" };
export type WorkerReply =
  | { readonly kind: "open" }
  | { readonly kind: "fatal"; readonly message: string }
  | ({ readonly kind: "written"; readonly id: number } & WriteResult)
  | { readonly kind: "deleted"; readonly id: number; readonly deleted: number }
  | { readonly kind: "failed"; readonly id: number; readonly message: string };

/** What the worker thread is started with. */
export interface WorkerData {
  readonly path: string;
  readonly opts: SqliteStoreOptions;
}

type Done = Extract<WorkerReply, { kind: "written" } | { kind: "deleted" }>;

interface Pending {
  resolve(r: Done): void;
  reject(err: Error): void;
}

/**
 * The SQLite store on a thread of its own. better-sqlite3 commits synchronously, and a durable commit waits for
 * fsync; on the processor's main thread that stalls deliveries, acks and heartbeats for the whole commit. Here the
 * main thread goes on receiving and decoding the next batch while the worker commits this one. Same contract as
 * SqliteStore: `writeBatch` resolves once the transaction has committed, and rejects with SQLite's error when it
 * did not. A worker that dies is started again on the next batch. Requests run in the order they were made, one at
 * a time, so a write asked for during a retention delete waits for that one (small) transaction at most.
 */
export class WorkerStore implements ReadingStore {
  #worker: Worker | undefined;
  /** The worker being started or running; events of an earlier one that died change nothing. */
  #current: Worker | undefined;
  #opened: Promise<Worker> | undefined;
  #pending = new Map<number, Pending>();
  #nextId = 0;

  private constructor(
    private readonly path: string,
    private readonly opts: SqliteStoreOptions,
  ) {}

  /**
   * Opens the database in a worker; rejects with SQLite's error if it cannot be opened or migrated. `opts` go to
   * the worker's SqliteStore (the product passes none).
   */
  static async open(path: string, opts: SqliteStoreOptions = {}): Promise<WorkerStore> {
    const store = new WorkerStore(path, opts);
    await store.#start();
    return store;
  }

  #start(): Promise<Worker> {
    this.#opened ??= new Promise<Worker>((resolve, reject) => {
      const worker = new Worker(new URL("./sqlite-worker.js", import.meta.url), {
        workerData: { path: this.path, opts: this.opts } satisfies WorkerData,
      });
      this.#current = worker;
      const gone = (err: Error) => {
        if (this.#current !== worker) return;
        this.#current = undefined;
        this.#worker = undefined;
        this.#opened = undefined;
        for (const p of this.#pending.values()) p.reject(err);
        this.#pending.clear();
        reject(err);
      };
      worker.on("message", (reply: WorkerReply) => {
        switch (reply.kind) {
          case "open":
            this.#worker = worker;
            resolve(worker);
            return;
          case "fatal":
            gone(new Error(reply.message));
            void worker.terminate();
            return;
          case "written":
          case "deleted":
            this.#pending.get(reply.id)?.resolve(reply);
            this.#pending.delete(reply.id);
            return;
          case "failed":
            this.#pending.get(reply.id)?.reject(new Error(reply.message));
            this.#pending.delete(reply.id);
            return;
        }
      });
      worker.on("error", gone);
      worker.on("exit", (code) => gone(new Error(`SQLite worker exited with code ${code}`)));
    });
    return this.#opened;
  }

  async writeBatch(readings: readonly Reading[]): Promise<WriteResult> {
    if (readings.length === 0) return { inserted: 0, duplicates: 0, conflicts: [], expired: 0 };
    const { packed, transfer } = packReadings(readings);
    const r = await this.#request((id) => ({ kind: "write", id, readings: packed }), transfer);
    if (r.kind !== "written") throw new Error(`SQLite worker answered a write with ${r.kind}`);
    const { inserted, duplicates, conflicts, expired, horizon } = r;
    return horizon === undefined
      ? { inserted, duplicates, conflicts, expired }
      : { inserted, duplicates, conflicts, expired, horizon };
  }

  /** {@link ReadingStore.deleteOlderThan}: one transaction on the worker, after the requests made before it. */
  async deleteOlderThan(cutoff: number, limit: number): Promise<number> {
    const r = await this.#request((id) => ({ kind: "delete", id, cutoff, limit }));
    if (r.kind !== "deleted") throw new Error(`SQLite worker answered a delete with ${r.kind}`);
    return r.deleted;
  }

  /** {@link ReadingStore.deleteTierOlderThan}: one transaction on the worker, after the requests made before it. */
  async deleteTierOlderThan(table: TierTable, cutoff: number, limit: number): Promise<number> {
    const r = await this.#request((id) => ({ kind: "deleteTier", id, table, cutoff, limit }));
    if (r.kind !== "deleted") throw new Error(`SQLite worker answered a delete with ${r.kind}`);
    return r.deleted;
  }

  async #request(make: (id: number) => WorkerRequest, transfer: ArrayBuffer[] = []): Promise<Done> {
    const worker = this.#worker ?? (await this.#start());
    const id = this.#nextId++;
    return new Promise<Done>((resolve, reject) => {
      this.#pending.set(id, { resolve, reject });
      worker.postMessage(make(id), transfer);
    });
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.stop();
  }

  /** Lets the worker finish the batch it is committing, then closes the database and ends the thread. */
  async stop(): Promise<void> {
    const worker = this.#worker;
    this.#current = undefined;
    this.#worker = undefined;
    this.#opened = undefined;
    if (!worker) return;
    const exited = new Promise<void>((resolve) => worker.once("exit", () => resolve()));
    worker.postMessage({ kind: "close" } satisfies WorkerRequest);
    await exited;
  }
}
