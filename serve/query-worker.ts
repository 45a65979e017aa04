/**
 * A query worker of `telemetry serve` (serve/query-pool.ts): opens the SQLite file read-only and answers the
 * questions it is sent, one chunk per request, so that SQLite reads and rendering run off the server's event loop.
 * A chunk goes back as UTF-8 bytes whose buffer is moved, not copied, to the server's thread, which writes it as
 * it is (encoding 500 KB of text there took 1-3 ms of the event loop per answer of `latest`). Streams are pulled
 * chunk by chunk: between chunks of a long export this thread answers the others.
 */
import { parentPort, workerData } from "node:worker_threads";
import { openSqliteQueries } from "../store/sqlite-queries.js";
import type { PoolReply, PoolRequest, PoolWorkerData } from "./query-pool.js";
import { askDirectly } from "./questions.js";

/** Text a reply carries at least, unless the answer ends first. */
const REPLY_CHARS = 262_144;

const port = parentPort;
if (port === null) throw new Error("serve/query-worker.js runs as a worker thread");
const data = workerData as PoolWorkerData;
const post = (reply: PoolReply) => port.postMessage(reply);
const encoder = new TextEncoder();
/** A chunk of text as bytes, its buffer moved to the server's thread; `last` when the answer ends with it. */
const postChunk = (id: number, text: string, last: boolean) => {
  const chunk = encoder.encode(text);
  port.postMessage({ kind: "chunk", id, chunk, last } satisfies PoolReply, [chunk.buffer]);
};

try {
  const queries = await openSqliteQueries(data.dbPath, { cacheKiB: data.cacheKiB });
  const ask = askDirectly(queries);
  const streams = new Map<number, AsyncGenerator<string>>();

  const pull = async (id: number) => {
    const stream = streams.get(id);
    if (stream === undefined) return post({ kind: "error", id, error: "no such stream" });
    try {
      // Chunks are gathered up to REPLY_CHARS: a message between threads costs more than a small chunk.
      let chunk = "";
      for (;;) {
        const next = await stream.next();
        if (next.done) {
          streams.delete(id);
          // The last text says so itself: a small answer is one message, not a chunk and then a "done".
          if (chunk !== "") return postChunk(id, chunk, true);
          return post({ kind: "done", id });
        }
        chunk += next.value;
        if (chunk.length >= REPLY_CHARS) break;
      }
      postChunk(id, chunk, false);
    } catch (err) {
      streams.delete(id);
      post({ kind: "error", id, error: err instanceof Error ? err.message : String(err) });
    }
  };

  port.on("message", (m: PoolRequest) => {
    switch (m.kind) {
      case "ask":
        streams.set(m.id, ask(m.question, m.format));
        void pull(m.id);
        return;
      case "next":
        void pull(m.id);
        return;
      case "cancel": {
        const stream = streams.get(m.id);
        streams.delete(m.id);
        void stream?.return(undefined).catch(() => {});
        return;
      }
      case "close":
        void (async () => {
          for (const s of streams.values()) await s.return(undefined).catch(() => {});
          streams.clear();
          await queries.stop();
          port.close();
        })();
    }
  });
  post({ kind: "ready" });
} catch (err) {
  post({ kind: "failed", error: err instanceof Error ? err.message : String(err) });
}
