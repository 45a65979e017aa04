/**
 * Output formats of query answers, for the CLI and the HTTP API alike: `json` (an array), `ndjson` (one object a
 * line), `csv` (a header row, then one row per object) and `table` (aligned columns for a terminal, times as
 * ISO-8601). Rendering yields text in chunks as the rows arrive, so json, ndjson and csv need constant memory
 * whatever the number of rows; a table measures its columns first, so it holds its rows.
 */
import type { ReadingKind, ReadingPage } from "../store/queries.js";
import { MAX_NUMBER_BYTES, writeNumber } from "./number-bytes.js";
import { type KnownText, RowMemo } from "./row-reuse.js";
import { ownBytes, partViews, putPart, scratch, type TextBytes, textOf, textParts } from "./text-bytes.js";

export const FORMATS = ["table", "csv", "json", "ndjson"] as const;
export type Format = (typeof FORMATS)[number];

/** MIME types of the formats HTTP serves. */
export const CONTENT_TYPES: Readonly<Record<Exclude<Format, "table">, string>> = {
  json: "application/json; charset=utf-8",
  ndjson: "application/x-ndjson; charset=utf-8",
  csv: "text/csv; charset=utf-8",
};

/**
 * What a query answers: `rows` as JSON shows them, and for csv and table the same as flat records (`flat`, when
 * they differ: `devices` nests its sensors) with the `columns` to print, in order.
 */
export interface Answer {
  readonly rows: AsyncIterable<object> | Iterable<object>;
  readonly flat?: AsyncIterable<object> | Iterable<object>;
  readonly columns: readonly string[];
  /**
   * The same rows as `rows`, in the same order, as pages of readings in columns, for an answer whose `columns`
   * are a reading's fields in order (device_id, sensor, ts, value, unit, seq, quality, tags, by whatever names):
   * json, ndjson and csv then write a page as one string rather than a row at a time (what makes an export fast).
   */
  readonly pages?: AsyncIterable<ReadingPage> | Iterable<ReadingPage>;
  /**
   * The whole answer's text in json, ndjson or csv, the same as its rows print, made at once by a faster way than
   * row by row (`devices` from its columns: query/devices-text.ts).
   */
  readonly whole?: (format: Exclude<Format, "table">) => TextBytes;
}

/** Text is handed on in chunks of about this size: one write per row would cost more than the row. */
const CHUNK_CHARS = 65_536;
/** Columns a table prints as ISO-8601 times rather than epoch ms. */
const TIME_COLUMNS = new Set(["ts", "start", "first_ts", "last_ts"]);

function csvCell(v: unknown): string {
  if (v === null || v === undefined) return "";
  const text = typeof v === "object" ? JSON.stringify(v) : String(v);
  return /[",\r\n]/.test(text) ? `"${text.replaceAll('"', '""')}"` : text;
}

function tableCell(column: string, v: unknown): string {
  if (v === null || v === undefined) return "";
  if (TIME_COLUMNS.has(column) && typeof v === "number") return new Date(v).toISOString();
  if (typeof v === "object") return Object.keys(v).length === 0 ? "" : JSON.stringify(v);
  return String(v);
}

const cellsOf = (row: object, columns: readonly string[]) =>
  columns.map((c) => (row as Record<string, unknown>)[c]);

/** How each row of an answer prints in a streaming format: text before the rows, per row, and after them. */
function rowWriter(answer: Answer, format: Exclude<Format, "table">) {
  let first = true;
  switch (format) {
    case "ndjson":
      return { head: "", row: (row: object) => `${JSON.stringify(row)}\n`, tail: () => "" };
    case "json":
      return {
        head: "",
        row: (row: object) => {
          const text = `${first ? "[\n" : ",\n"}${JSON.stringify(row)}`;
          first = false;
          return text;
        },
        tail: () => (first ? "[]\n" : "\n]\n"),
      };
    case "csv":
      return {
        head: `${answer.columns.join(",")}\n`,
        row: (row: object) => `${cellsOf(row, answer.columns).map(csvCell).join(",")}\n`,
        tail: () => "",
      };
  }
}

/**
 * Rows as text in chunks of about {@link CHUNK_CHARS}; rows already in memory (an array) are written without an
 * await per row, which for thousands of rows costs more than writing them.
 */
async function* rowChunks(answer: Answer, format: Exclude<Format, "table">): AsyncGenerator<string> {
  const w = rowWriter(answer, format);
  const rows = format === "csv" ? (answer.flat ?? answer.rows) : answer.rows;
  let buffer = w.head;
  if (Symbol.iterator in rows) {
    for (const row of rows) {
      buffer += w.row(row);
      if (buffer.length >= CHUNK_CHARS) {
        yield buffer;
        buffer = "";
      }
    }
  } else {
    for await (const row of rows) {
      buffer += w.row(row);
      if (buffer.length >= CHUNK_CHARS) {
        yield buffer;
        buffer = "";
      }
    }
  }
  buffer += w.tail();
  if (buffer !== "") yield buffer;
}

/** A table: it measures its columns first, so it holds its rows. */
async function* table(answer: Answer): AsyncGenerator<string> {
  const cells: string[][] = [];
  for await (const row of answer.flat ?? answer.rows) {
    const values = cellsOf(row, answer.columns);
    cells.push(answer.columns.map((c, i) => tableCell(c, values[i])));
  }
  if (cells.length === 0) {
    yield "(no rows)\n";
    return;
  }
  const widths = answer.columns.map((c, i) => Math.max(c.length, ...cells.map((r) => r[i]?.length ?? 0)));
  const line = (r: readonly string[]) =>
    `${r
      .map((v, i) => v.padEnd(widths[i] ?? 0))
      .join("  ")
      .trimEnd()}\n`;
  let text = line(answer.columns);
  for (const r of cells) text += line(r);
  yield text;
}

/** A JSON value as text: as `JSON.stringify` writes it inside an object. */
function jsonValue(v: unknown): string {
  if (typeof v === "number") return Number.isFinite(v) ? String(v) : "null";
  if (v === null) return "null";
  return JSON.stringify(v);
}

const NULL_BYTES = Buffer.from("null");
const JSON_END = Buffer.from("\n]\n");

/**
 * The text of a page's kinds in one format (kind `k`'s `before`, `middle` and `after` are parts 3k, 3k+1, 3k+2),
 * kept for as long as their `kinds` array lives, by format: `latest` hands over the same array (one
 * kind per series, 4,000) for as long as the series' text does not change, so its text is made once, not at every
 * question (making it took ~10 ms a time), and its rows are copied from the last answer where their numbers did not
 * change; an export's pages each have their own array and are made per page, with no rendering kept.
 */
const KIND_TEXTS = new WeakMap<readonly ReadingKind[], Map<string, KnownText>>();

function kindText(
  kinds: readonly ReadingKind[],
  format: Exclude<Format, "table">,
  names: string[],
): KnownText {
  const key = `${format}\n${names.join("")}`;
  let byFormat = KIND_TEXTS.get(kinds);
  const known = byFormat?.get(key);
  if (known !== undefined) {
    known.memo ??= new RowMemo(3);
    return known;
  }
  const parts: string[] = [];
  for (const k of kinds) {
    if (format === "csv") {
      // Tags are JSON text, which is the value as csvCell would stringify it: quoted alike, it prints the same.
      parts.push(
        `${csvCell(k.device_id)},${csvCell(k.sensor)},`,
        `,${csvCell(k.unit)},`,
        `,${csvCell(k.quality)},${csvCell(k.tags)}\n`,
      );
    } else {
      parts.push(
        `{${names[0]}${jsonValue(k.device_id)},${names[1]}${jsonValue(k.sensor)},${names[2]}`,
        `,${names[4]}${jsonValue(k.unit)},${names[5]}`,
        `,${names[6]}${jsonValue(k.quality)},${names[7]}${k.tags}}${format === "json" ? "" : "\n"}`,
      );
    }
  }
  const made: KnownText = { text: textParts(parts, 3), memo: undefined };
  if (byFormat === undefined) {
    byFormat = new Map();
    KIND_TEXTS.set(kinds, byFormat);
  }
  byFormat.set(key, made);
  return made;
}

/**
 * Text of a {@link ReadingPage} in `format` (not table): each row as the object path prints it, byte for byte.
 * A page is written as bytes into one buffer: per row the text of its kind's fields (made once per kinds array),
 * and its three numbers written digit by digit (query/number-bytes.ts), no string per number or per row; csv
 * `before ts "," value middle seq after`, json alike with the keys: a view of the shared buffer (`scratch`). A
 * kinds array rendered before has its rows copied from that rendering where their numbers and kind are the same.
 */
function pageText(
  answer: Answer,
  format: Exclude<Format, "table">,
): (page: ReadingPage, tail?: Uint8Array) => TextBytes {
  const names = answer.columns.map((c) => `${JSON.stringify(c)}:`);
  const csv = format === "csv";
  const json = format === "json";
  const tsValue = Buffer.from(csv ? "," : `,${names[3]}`);
  const nullSeq = csv ? Buffer.alloc(0) : NULL_BYTES;
  let first = true;
  const put = (b: Uint8Array, p: number, text: Uint8Array) => {
    for (let j = 0; j < text.length; j++) b[p + j] = text[j] as number;
    return p + text.length;
  };
  // json writes no NaN nor Infinity: null, as JSON.stringify does (never stored, but the object path does so).
  const number = (b: Uint8Array, p: number, v: number) =>
    csv || Number.isFinite(v) ? writeNumber(b, p, v) : put(b, p, NULL_BYTES);
  return (page, tail) => {
    const { ts, value, seq, kind } = page;
    const n = page.length;
    const { text, memo } = kindText(page.kinds, format, names);
    const { ascii, widest } = text;
    // The separator of json rows, three numbers, and the text between them.
    const room = widest + 2 + 3 * MAX_NUMBER_BYTES + tsValue.length;
    // The page's rows take at most `room` bytes each, so the shared buffer is sized once, before the loop.
    const b = scratch(n * (room + 2) + 8 + (tail?.length ?? 0));
    // Text asked for again is copied part by part natively; an export's page, made once, byte by byte.
    const views = memo === undefined ? undefined : partViews(text);
    // What shapes the first row beside its own fields: json's "[" or ",".
    const reuse = memo?.begin(b, 0, n, json && first ? 1 : 0);
    const numbers = reuse?.numbers;
    let p = 0;
    for (let i = 0; i < n; i++) {
      const k = kind === undefined ? 0 : (kind[i] as number);
      const s = seq[i] ?? null;
      if (reuse !== undefined && numbers !== undefined) {
        numbers[3 * i] = ts[i] as number;
        numbers[3 * i + 1] = value[i] as number;
        numbers[3 * i + 2] = s ?? 0;
        // A null seq prints unlike any number: it is part of the key.
        const kept = reuse.row(i, 2 * k + (s === null ? 1 : 0), p);
        if (kept >= 0) {
          p = kept;
          first = false;
          continue;
        }
      }
      if (json) {
        b[p++] = first ? 91 : 44; // [ or ,
        b[p++] = 10;
        first = false;
      }
      const o = 3 * k;
      p = putPart(b, p, text, o, views);
      p = number(b, p, ts[i] as number);
      p = put(b, p, tsValue);
      p = number(b, p, value[i] as number);
      p = putPart(b, p, text, o + 1, views);
      p = s === null ? put(b, p, nullSeq) : number(b, p, s);
      p = putPart(b, p, text, o + 2, views);
    }
    reuse?.end(p);
    if (tail !== undefined) p = put(b, p, tail);
    return { bytes: b.subarray(0, p), ascii };
  };
}

/** How a renderer hands its text on: as strings (the CLI, in-process answers) or as bytes (a query worker). */
interface Output<T> {
  readonly text: (t: TextBytes) => T;
  readonly string: (s: string) => T;
}
const STRINGS: Output<string> = { text: textOf, string: (s) => s };
const encoder = new TextEncoder();
const BYTES: Output<Uint8Array<ArrayBuffer>> = { text: ownBytes, string: (s) => encoder.encode(s) };

async function* pagedChunks<T>(
  answer: Answer & { readonly pages: NonNullable<Answer["pages"]> },
  format: Exclude<Format, "table">,
  out: Output<T>,
): AsyncGenerator<T> {
  const bytes = pageText(answer, format);
  if (format === "csv") yield out.string(`${answer.columns.join(",")}\n`);
  // Each page is written once the next is read, so the last one takes json's closing "]" with it: an answer of one
  // page (`latest`) is one chunk, which a query worker hands over whole.
  let held: ReadingPage | undefined;
  for await (const page of answer.pages) {
    if (page.length === 0) continue;
    if (held !== undefined) yield out.text(bytes(held));
    held = page;
  }
  if (held !== undefined) yield out.text(bytes(held, format === "json" ? JSON_END : undefined));
  else if (format === "json") yield out.string("[]\n");
}

async function* strings<T>(chunks: AsyncGenerator<string>, out: Output<T>): AsyncGenerator<T> {
  for await (const chunk of chunks) yield out.string(chunk);
}

function rendered<T>(answer: Answer, format: Format, out: Output<T>): AsyncGenerator<T> {
  if (format === "table") return strings(table(answer), out);
  const { whole } = answer;
  if (whole !== undefined)
    return (async function* () {
      yield out.text(whole(format));
    })();
  const { pages } = answer;
  if (pages !== undefined) return pagedChunks({ ...answer, pages }, format, out);
  return strings(rowChunks(answer, format), out);
}

/**
 * The answer as text in `format`, in chunks, produced as the rows are read: a page at a time when the answer has
 * {@link Answer.pages} (same text), else in chunks of about {@link CHUNK_CHARS}.
 */
export function render(answer: Answer, format: Format): AsyncGenerator<string> {
  return rendered(answer, format, STRINGS);
}

/**
 * The same text as UTF-8 bytes, each chunk in memory of its own (a query worker moves it to the server's thread):
 * pages and whole answers are written as bytes and never become a string (for the 500 KB of `latest`, making the
 * string and encoding it again took about 3 ms).
 */
export function renderBytes(answer: Answer, format: Format): AsyncGenerator<Uint8Array<ArrayBuffer>> {
  return rendered(answer, format, BYTES);
}

/**
 * Writes `chunks` to `out`, waiting whenever it is full, so a slow reader slows the query down rather than
 * filling memory. Resolves true when everything is written, false when the reader went away (EPIPE: the rest is
 * not read); rejects on any other write error.
 */
export async function writeTo(chunks: AsyncIterable<string>, out: NodeJS.WritableStream): Promise<boolean> {
  let failure: NodeJS.ErrnoException | undefined;
  const onError = (err: NodeJS.ErrnoException) => {
    failure ??= err;
  };
  out.on("error", onError);
  try {
    for await (const chunk of chunks) {
      if (failure !== undefined) break;
      if (!out.write(chunk)) await drained(out);
    }
  } finally {
    out.off("error", onError);
  }
  if (failure !== undefined && failure.code !== "EPIPE") throw failure;
  return failure === undefined;
}

/** Resolves when `out` drains, closes or fails, whichever comes first. */
function drained(out: NodeJS.WritableStream): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      for (const e of ["drain", "close", "error"]) out.off(e, done);
      resolve();
    };
    for (const e of ["drain", "close", "error"]) out.on(e, done);
  });
}
