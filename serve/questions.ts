/**
 * What an HTTP request asks, as plain data: a question can be answered on this thread or handed to a query worker
 * (serve/query-pool.ts), which renders it there and sends back text. Either way the same query layer and formatter
 * (query/answers.ts, query/format.ts) write the answer, so both print alike.
 */

import {
  devicesAnswer,
  latestAnswer,
  nextAfter,
  readingsAnswer,
  type Silence,
  seriesAnswer,
  statsAnswer,
} from "../query/answers.js";
import type { Fill } from "../query/fill.js";
import { type Answer, render, type TextFormat } from "../query/format.js";
import type { DevicePage, ReadingQueries, ReadingsQuery, SeriesQuery, StatsQuery } from "../store/queries.js";

export type Question =
  | { readonly kind: "devices"; readonly page?: DevicePage; readonly silence: Silence }
  | { readonly kind: "latest"; readonly device?: string | undefined; readonly page?: DevicePage }
  /** Where the page after a page of `devices` or `latest` starts: `[{"after": id}]`, or `[]` at the end. */
  | { readonly kind: "next"; readonly device?: string | undefined; readonly page: DevicePage }
  | { readonly kind: "readings"; readonly query: ReadingsQuery }
  | { readonly kind: "stats"; readonly query: StatsQuery & { readonly fill: Fill } }
  | { readonly kind: "series"; readonly query: SeriesQuery };

/** A piece of an answer: text, or the same already encoded as UTF-8 (what a query worker hands over). */
export type Chunk = string | Uint8Array;

/**
 * Answers a question in chunks, read on demand: nothing more is read or rendered than the caller pulls, and
 * `return()` ends the query.
 */
export type Ask = (question: Question, format: TextFormat) => AsyncGenerator<Chunk>;

/** What serve answers from: questions, and the store's version (see {@link ReadingQueries.version}). */
export interface Answerer {
  readonly ask: Ask;
  readonly version: () => Promise<string>;
}

function answerOf(queries: ReadingQueries, q: Question): Answer | Promise<Answer> {
  switch (q.kind) {
    case "devices":
      return devicesAnswer(queries, q.page ?? {}, q.silence);
    case "latest":
      return latestAnswer(queries, q.page ?? {}, q.device);
    case "next":
      return nextAfter(queries, q.page, q.device).then((after) => ({
        rows: after === undefined ? [] : [{ after }],
        columns: ["after"],
      }));
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
): (question: Question, format: TextFormat) => AsyncGenerator<string> {
  return async function* (question, format) {
    yield* render(await answerOf(queries, question), format);
  };
}
