/**
 * A query worker of `telemetry serve` (serve/query-pool.ts): opens the SQLite file read-only and answers the
 * questions it is sent, one chunk per request, so that SQLite reads and rendering run off the server's event loop.
 * A chunk goes back as UTF-8 bytes whose buffer is moved, not copied, to the server's thread, which writes it as
 * it is (encoding 500 KB of text there took 1-3 ms of the event loop per answer of `latest`); pages and whole
 * answers are rendered as bytes here and never become strings (query/format.ts, renderBytes). Streams are pulled
 * chunk by chunk: between chunks of a long export this thread answers the others.
 */
import { parentPort, workerData } from "node:worker_threads";
import { openSqliteQueries } from "../store/sqlite-queries.js";
import type { PoolReply, PoolRequest, PoolWorkerData } from "./query-pool.js";
import { askBytes } from "./questions.js";

/** Bytes a reply carries at least, unless the answer ends first. */
const REPLY_BYTES = 262_144;
/** A chunk read ahead this small is taken into the reply (it may be the answer's end) rather than held. */
const TAIL_BYTES = 4_096;

const port = parentPort;
if (port === null) throw new Error("serve/query-worker.js runs as a worker thread");
const data = workerData as PoolWorkerData;
const post = (reply: PoolReply) => port.postMessage(reply);
/** Chunks as one, its buffer moved to the server's thread; `last` when the answer ends with it. */
const postChunk = (id: number, parts: readonly Uint8Array<ArrayBuffer>[], last: boolean) => {
  let chunk = parts[0] as Uint8Array<ArrayBuffer>;
  if (parts.length > 1) {
    chunk = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
    let at = 0;
    for (const p of parts) {
      chunk.set(p, at);
      at += p.length;
    }
  }
  port.postMessage({ kind: "chunk", id, chunk, last } satisfies PoolReply, [chunk.buffer]);
};

try {
  const queries = await openSqliteQueries(data.dbPath, { cacheKiB: data.cacheKiB });
  const ask = askBytes(queries);
  /** Each open stream, and the chunk read ahead of the last reply (to tell whether that reply was the last). */
  const streams = new Map<
    number,
    { chunks: AsyncGenerator<Uint8Array<ArrayBuffer>>; ahead: Uint8Array<ArrayBuffer> | undefined }
  >();

  const pull = async (id: number) => {
    const stream = streams.get(id);
    if (stream === undefined) return post({ kind: "error", id, error: "no such stream" });
    try {
      // Chunks are gathered up to REPLY_BYTES: a message between threads costs more than a small chunk. Then one
      // more is read ahead, and small ones (json's closing "]") taken in, so that an answer ending there (`latest`:
      // a page of 500 KB, then "]") goes as one last reply, which the server sends whole with its length.
      const parts: Uint8Array<ArrayBuffer>[] = [];
      let size = 0;
      if (stream.ahead !== undefined) {
        parts.push(stream.ahead);
        size = stream.ahead.length;
        stream.ahead = undefined;
      }
      for (;;) {
        const next = await stream.chunks.next();
        if (next.done) {
          streams.delete(id);
          // The last text says so itself: a small answer is one message, not a chunk and then a "done".
          if (parts.length > 0) return postChunk(id, parts, true);
          return post({ kind: "done", id });
        }
        if (size >= REPLY_BYTES && (next.value.length > TAIL_BYTES || size >= 2 * REPLY_BYTES)) {
          stream.ahead = next.value;
          break;
        }
        parts.push(next.value);
        size += next.value.length;
      }
      postChunk(id, parts, false);
    } catch (err) {
      streams.delete(id);
      post({ kind: "error", id, error: err instanceof Error ? err.message : String(err) });
    }
  };

  port.on("message", (m: PoolRequest) => {
    switch (m.kind) {
      case "ask":
        streams.set(m.id, { chunks: ask(m.question, m.format), ahead: undefined });
        void pull(m.id);
        return;
      case "next":
        void pull(m.id);
        return;
      case "cancel": {
        const stream = streams.get(m.id);
        streams.delete(m.id);
        void stream?.chunks.return(undefined).catch(() => {});
        return;
      }
      case "close":
        void (async () => {
          for (const s of streams.values()) await s.chunks.return(undefined).catch(() => {});
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
