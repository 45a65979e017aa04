/**
 * A query worker of `telemetry serve` (serve/query-pool.ts): opens the SQLite file read-only and answers the
 * questions it is sent, so that SQLite reads and rendering run off the server's event loop. An answer's text goes
 * back as UTF-8 bytes in replies of about {@link REPLY_CHARS} characters, each buffer moved, not copied, to the server's
 * thread; a stream is pulled reply by reply, so between the replies of a long export this thread answers others.
 */
import { parentPort, workerData } from "node:worker_threads";
import { openSqliteQueries } from "../store/sqlite-queries.js";
import type { PoolReply, PoolRequest, PoolWorkerData } from "./query-pool.js";
import { askDirectly } from "./questions.js";

/**
 * Text a reply carries at least, unless the answer ends first (characters: about bytes, the text being mostly
 * ASCII): a message between threads costs more than a small chunk.
 */
const REPLY_CHARS = 262_144;

const port = parentPort;
if (port === null) throw new Error("serve/query-worker.js runs as a worker thread");
const data = workerData as PoolWorkerData;
const post = (reply: PoolReply) => port.postMessage(reply);
const encoder = new TextEncoder();

try {
  const queries = await openSqliteQueries(data.dbPath, { cacheKiB: data.cacheKiB });
  const ask = askDirectly(queries);
  const streams = new Map<number, AsyncGenerator<string>>();

  const pull = async (id: number) => {
    const chunks = streams.get(id);
    if (chunks === undefined) return post({ kind: "error", id, error: "no such stream" });
    try {
      let text = "";
      let last = false;
      while (text.length < REPLY_CHARS) {
        const next = await chunks.next();
        if (next.done) {
          last = true;
          streams.delete(id);
          break;
        }
        text += next.value;
      }
      const chunk = encoder.encode(text);
      port.postMessage({ kind: "chunk", id, chunk, last } satisfies PoolReply, [chunk.buffer]);
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
        const chunks = streams.get(m.id);
        streams.delete(m.id);
        void chunks?.return(undefined).catch(() => {});
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
