/**
 * Query workers for `telemetry serve` on SQLite: better-sqlite3 is synchronous, so a query run on the server's
 * event loop would hold every other request while it reads. Each worker thread (serve/query-worker.ts) opens the
 * file read-only; a question goes to the worker with the fewest streams open and comes back as text, one chunk
 * per pull, so a long export neither blocks the server nor runs ahead of its client. The store's version (for
 * serve's answer cache) is read here, on the server's thread.
 */
import { Worker } from "node:worker_threads";
import { type Running, running } from "../common/pipeline.js";
import type { TextFormat } from "../query/format.js";
import { openReader } from "../store/sqlite-queries.js";
import type { Answerer, Chunk, Question } from "./questions.js";

/** Threads a server starts: two keep a quick question from queueing behind a long one's current chunk. */
export const POOL_SIZE = 2;
/** Page cache of each worker's connection (KiB). */
const WORKER_CACHE_KIB = 8_192;

export interface PoolWorkerData {
  readonly dbPath: string;
  readonly cacheKiB: number;
}

export type PoolRequest =
  | { readonly kind: "ask"; readonly id: number; readonly question: Question; readonly format: TextFormat }
  | { readonly kind: "next"; readonly id: number }
  | { readonly kind: "cancel"; readonly id: number }
  | { readonly kind: "close" };

export type PoolReply =
  | { readonly kind: "ready" }
  | { readonly kind: "failed"; readonly error: string }
  | { readonly kind: "chunk"; readonly id: number; readonly chunk: Uint8Array; readonly last: boolean }
  | { readonly kind: "error"; readonly id: number; readonly error: string };

type StreamReply = Extract<PoolReply, { id: number }>;

/**
 * Running workers: `ask` answers off the event loop; `stop()` ends streams in progress and the threads. A worker
 * that dies (an error thrown in it, out of memory) fails the streams it had open and is replaced by a new one at the
 * next question, so one crash never leaves the server answering half its requests with errors.
 */
export interface QueryPool extends Running, Answerer {
  /** Ends worker `index`'s thread as a crash would: for the test of the replacement. */
  crashWorker(index: number): Promise<void>;
}

class PoolWorker {
  readonly #worker: Worker;
  readonly #waiting = new Map<number, { resolve: (r: StreamReply) => void; reject: (e: Error) => void }>();
  #failure: Error | undefined;
  /** Streams this worker has open: the pool gives a question to the least busy. */
  open = 0;

  constructor(data: PoolWorkerData) {
    this.#worker = new Worker(new URL("./query-worker.js", import.meta.url), { workerData: data });
    this.#worker.on("message", (reply: PoolReply) => {
      if (!("id" in reply)) return;
      const w = this.#waiting.get(reply.id);
      this.#waiting.delete(reply.id);
      w?.resolve(reply);
    });
    const fail = (err: Error) => {
      this.#failure ??= err;
      for (const w of this.#waiting.values()) w.reject(err);
      this.#waiting.clear();
    };
    this.#worker.on("error", fail);
    this.#worker.on("exit", (code) => fail(new Error(`query worker exited (${code})`)));
  }

  /** Resolves once the worker has opened the database; rejects with its reason when it could not. */
  ready(): Promise<void> {
    return new Promise((resolve, reject) => {
      const onMessage = (reply: PoolReply) => {
        if (reply.kind !== "ready" && reply.kind !== "failed") return;
        this.#worker.off("message", onMessage);
        this.#worker.off("error", reject);
        if (reply.kind === "ready") resolve();
        else reject(new Error(reply.error));
      };
      this.#worker.on("message", onMessage);
      this.#worker.once("error", reject);
    });
  }

  request(message: Extract<PoolRequest, { kind: "ask" | "next" }>): Promise<StreamReply> {
    if (this.#failure !== undefined) return Promise.reject(this.#failure);
    return new Promise((resolve, reject) => {
      this.#waiting.set(message.id, { resolve, reject });
      this.#worker.postMessage(message);
    });
  }

  /** The thread ended or threw: it answers nothing more. */
  get failed(): boolean {
    return this.#failure !== undefined;
  }

  async terminate(): Promise<void> {
    await this.#worker.terminate();
  }

  cancel(id: number): void {
    if (this.#failure === undefined) this.#worker.postMessage({ kind: "cancel", id } satisfies PoolRequest);
  }

  async stop(): Promise<void> {
    if (this.#failure !== undefined) return;
    const exited = new Promise<void>((resolve) => this.#worker.once("exit", () => resolve()));
    this.#worker.postMessage({ kind: "close" } satisfies PoolRequest);
    const timer = setTimeout(() => void this.#worker.terminate(), 5_000);
    await exited;
    clearTimeout(timer);
  }
}

/**
 * Starts `size` workers on the SQLite file at `dbPath`. Rejects with the first worker's one-line reason (as
 * openSqliteQueries gives it) when the file cannot be opened, stopping the workers it started.
 */
export async function startQueryPool(dbPath: string, size = POOL_SIZE): Promise<QueryPool> {
  // The store's version, read on this thread from a connection of its own (a few microseconds, never blocking):
  // PRAGMA data_version changes whenever another connection commits, and the workers' connections never write.
  // Opened first, so an older file is migrated once, before the workers open it.
  const versions = openReader(dbPath);
  const dataVersion = versions.prepare<[], number>("PRAGMA data_version").pluck();
  const version = async () => String(dataVersion.get());
  const data: PoolWorkerData = { dbPath, cacheKiB: WORKER_CACHE_KIB };
  const workers = Array.from({ length: size }, () => new PoolWorker(data));
  const started = await Promise.allSettled(workers.map((w) => w.ready()));
  const failed = started.find((s): s is PromiseRejectedResult => s.status === "rejected");
  if (failed !== undefined) {
    await Promise.all(workers.map((w) => w.stop()));
    versions.close();
    throw failed.reason;
  }
  let nextId = 0;

  /** The least busy worker, after replacing any that died. */
  const pick = async (): Promise<PoolWorker> => {
    for (const [i, w] of workers.entries()) {
      if (!w.failed) continue;
      const fresh = new PoolWorker(data);
      workers[i] = fresh;
      await fresh.ready();
    }
    return workers.reduce((a, b) => (b.open < a.open ? b : a));
  };

  async function* ask(question: Question, format: TextFormat): AsyncGenerator<Chunk> {
    const worker = await pick();
    const id = nextId++;
    worker.open++;
    let finished = false;
    try {
      let reply = await worker.request({ kind: "ask", id, question, format });
      for (;;) {
        if (reply.kind === "error") {
          finished = true;
          throw new Error(reply.error);
        }
        if (reply.last) {
          // Finished before the chunk is handed on: a client leaving now has nothing left to cancel.
          finished = true;
          yield reply.chunk;
          break;
        }
        yield reply.chunk;
        reply = await worker.request({ kind: "next", id });
      }
      finished = true;
    } finally {
      worker.open--;
      // The client went away (or the server stops) mid-stream: the worker ends the query.
      if (!finished) worker.cancel(id);
    }
  }

  const crashWorker = async (index: number): Promise<void> => {
    await workers[index]?.terminate();
  };

  return running({ ask, version, crashWorker }, async () => {
    await Promise.all(workers.map((w) => w.stop()));
    versions.close();
  });
}
