/**
 * What an HTTP request asks, as plain data: a question can be answered on this thread or handed to a query worker
 * (serve/query-pool.ts), which renders it there and sends back text. Either way the same query layer and formatter
 * (query/answers.ts, query/format.ts) write the answer, so both print alike.
 */

import { devicesAnswer, latestAnswer, readingsAnswer, seriesAnswer, statsAnswer } from "../query/answers.js";
import type { Fill } from "../query/fill.js";
import { type Answer, type CONTENT_TYPES, render, renderBytes } from "../query/format.js";
import type { ReadingQueries, ReadingsQuery, SeriesQuery, StatsQuery } from "../store/queries.js";

export type Question =
  | { readonly kind: "devices" }
  | { readonly kind: "latest"; readonly device?: string | undefined }
  | { readonly kind: "readings"; readonly query: ReadingsQuery }
  | { readonly kind: "stats"; readonly query: StatsQuery & { readonly fill: Fill } }
  | { readonly kind: "series"; readonly query: SeriesQuery };

/** A format HTTP serves. */
export type HttpFormat = keyof typeof CONTENT_TYPES;

/** A piece of an answer: text, or the same already encoded as UTF-8 (what a query worker hands over). */
export type Chunk = string | Uint8Array;

/**
 * Answers a question in chunks, read on demand: nothing more is read or rendered than the caller pulls, and
 * `return()` ends the query.
 */
export type Ask = (question: Question, format: HttpFormat) => AsyncGenerator<Chunk>;

function answerOf(queries: ReadingQueries, q: Question): Answer | Promise<Answer> {
  switch (q.kind) {
    case "devices":
      return devicesAnswer(queries);
    case "latest":
      return latestAnswer(queries, q.device);
    case "readings":
      return readingsAnswer(queries, q.query);
    case "stats":
      return statsAnswer(queries, q.query);
    case "series":
      return seriesAnswer(queries, q.query);
  }
}

/** Answers on the calling thread, from `queries`. */
export function askDirectly(
  queries: ReadingQueries,
): (question: Question, format: HttpFormat) => AsyncGenerator<string> {
  return async function* (question, format) {
    yield* render(await answerOf(queries, question), format);
  };
}

/** The same as UTF-8 bytes, each chunk in memory of its own (what a query worker moves to the server's thread). */
export function askBytes(
  queries: ReadingQueries,
): (question: Question, format: HttpFormat) => AsyncGenerator<Uint8Array<ArrayBuffer>> {
  return async function* (question, format) {
    yield* renderBytes(await answerOf(queries, question), format);
  };
}
