/**
 * One question from request to bytes (docs/contract.md, "Queries" and "Serve security"): the answer cache with its
 * ETag and 304, HEAD answered without running anything, a deadline after which the question is cancelled in its
 * worker, and a bound on the exports streaming at once.
 */
import type { HttpBindings } from "@hono/node-server";
import type { Context } from "hono";
import type { Logger } from "../common/log.js";
import { CONTENT_TYPES, type TextFormat } from "../query/format.js";
import { AnswerCache } from "./answer-cache.js";
import type { Answerer, Chunk, Question } from "./questions.js";

/** Default of `SERVE_QUERY_TIMEOUT`. */
export const QUERY_TIMEOUT_MS = 30_000;
/** Default of `SERVE_MAX_EXPORTS`: exports streaming at once; each holds a worker's attention while it is read. */
export const MAX_EXPORTS = 4;

/** A request refused with its status and `{"error": message}` (400, 429, 503). */
export class Refusal extends Error {
  override readonly name = "Refusal";
  constructor(
    readonly status: 400 | 429 | 503,
    message: string,
  ) {
    super(message);
  }
}

/** Whole answers the dashboard polls are kept; exports stream. */
const KEPT: ReadonlySet<Question["kind"]> = new Set(["devices", "latest", "series"]);

export interface Responder {
  readonly source: Answerer;
  readonly cache: AnswerCache;
  readonly timeoutMs: number;
  readonly maxExports: number;
  /** Where a cancelled question is reported. */
  readonly log: Logger;
}

/**
 * A question's deadline: `race(p)` is `p`, or the refusal once `ms` have passed; `onExpiry` listeners run then,
 * until `clear()`. Each race lets go of its promise once settled: racing every chunk against one long-lived
 * promise would keep every chunk of a long export reachable until the deadline.
 */
function deadline(ms: number) {
  const refusal = new Refusal(
    503,
    `the question ran longer than SERVE_QUERY_TIMEOUT (${ms / 1000}s) and was cancelled`,
  );
  let expired = false;
  const waiting = new Set<(err: Error) => void>();
  const listeners: (() => void)[] = [];
  const timer = setTimeout(() => {
    expired = true;
    for (const reject of waiting) reject(refusal);
    waiting.clear();
    for (const f of listeners) f();
  }, ms).unref();
  return {
    race<T>(p: Promise<T>): Promise<T> {
      if (expired) {
        p.catch(() => {});
        return Promise.reject(refusal);
      }
      return new Promise<T>((resolve, reject) => {
        waiting.add(reject);
        p.then(
          (v) => {
            waiting.delete(reject);
            resolve(v);
          },
          (err: unknown) => {
            waiting.delete(reject);
            reject(err);
          },
        );
      });
    },
    clear: () => clearTimeout(timer),
    onExpiry: (f: () => void) => listeners.push(f),
  };
}

/**
 * Answers `question` in `format`: 304 when the client holds the answer of this question under the store's current
 * version (If-None-Match), else from the cache, else from the store. Every answer carries that ETag. HEAD gets the
 * headers only and runs nothing. A kept kind is read whole; an export streams, its first chunk read before the
 * response starts (so a failing query is a 500, not a cut-off 200), the rest as the client reads; a client gone,
 * or the deadline passed, ends the query in its worker. An export beyond `maxExports` at once is 429.
 */
export function responder(
  r: Responder,
): (c: Context, question: Question, as: TextFormat) => Promise<Response> {
  let exporting = 0;
  const encoder = new TextEncoder();
  const bytes = (chunk: Chunk) => (typeof chunk === "string" ? encoder.encode(chunk) : chunk);

  return async (c, question, as) => {
    const key = `${JSON.stringify(question)}\n${as}\n${await r.source.version()}`;
    const etag = AnswerCache.etag(key);
    // no-cache: a browser keeps the answer but asks again each time, with If-None-Match.
    const headers = { "content-type": CONTENT_TYPES[as], "cache-control": "no-cache", etag };
    const held = c.req.header("if-none-match");
    if (held?.split(",").some((t) => t.trim().replace(/^W\//, "") === etag))
      return c.body(null, 304, { etag, "cache-control": "no-cache" });
    // Hono answers HEAD by running GET and dropping the body unread, which would leave the query open for good.
    if (c.req.method === "HEAD") return c.body(null, 200, headers);
    const kept = KEPT.has(question.kind);
    if (kept) {
      const body = r.cache.get(key);
      if (body !== undefined) return c.body(body as Uint8Array<ArrayBuffer>, 200, headers);
    } else if (exporting >= r.maxExports) {
      throw new Refusal(
        429,
        `${r.maxExports} exports are streaming already (SERVE_MAX_EXPORTS): try again later`,
      );
    }
    const chunks = r.source.ask(question, as);
    const time = deadline(r.timeoutMs);
    time.onExpiry(() =>
      r.log.warn(
        { path: c.req.path, kind: question.kind },
        "question cancelled: it ran longer than SERVE_QUERY_TIMEOUT",
      ),
    );
    if (kept) {
      try {
        const parts: Uint8Array[] = [];
        for (let next = await time.race(chunks.next()); !next.done; ) {
          parts.push(bytes(next.value));
          next = await time.race(chunks.next());
        }
        const body = Buffer.concat(parts);
        r.cache.set(key, body);
        return c.body(body as Uint8Array<ArrayBuffer>, 200, headers);
      } catch (err) {
        void chunks.return(undefined).catch(() => {});
        throw err;
      } finally {
        time.clear();
      }
    }
    exporting++;
    let finished = false;
    /** Ends the export once, however it ends: done, failed, client gone, deadline passed. */
    const finish = () => {
      if (finished) return;
      finished = true;
      exporting--;
      time.clear();
      void chunks.return(undefined).catch(() => {});
    };
    let pending: IteratorResult<Chunk> | undefined;
    try {
      pending = await time.race(chunks.next());
    } catch (err) {
      finish();
      throw err;
    }
    const stream = new ReadableStream<Uint8Array>({
      start(controller) {
        time.onExpiry(() => {
          finish();
          // Headers are out: the answer can only be cut off. A reset, not a close: a client that reads slowly or
          // not at all would otherwise see the end only after the data queued in the socket, and take it for a
          // whole answer. Resetting the socket cancels this stream too; in-process (tests) there is no socket.
          const socket = (c.env as Partial<HttpBindings> | undefined)?.outgoing?.socket;
          if (socket) socket.resetAndDestroy();
          else controller.error(new Refusal(503, "query timeout"));
        });
      },
      async pull(controller) {
        try {
          const next = pending ?? (await time.race(chunks.next()));
          pending = undefined;
          if (finished) return;
          if (next.done) {
            finish();
            controller.close();
          } else controller.enqueue(bytes(next.value));
        } catch (err) {
          if (finished) return;
          finish();
          controller.error(err);
        }
      },
      cancel() {
        finish();
      },
    });
    return c.body(stream, 200, headers);
  };
}
