/**
 * Output formats of query answers, for the CLI and the HTTP API alike: `json` (an array), `ndjson` (one object a
 * line), `csv` (a header row, then one row per object) and `table` (aligned columns for a terminal, times as
 * ISO-8601). Rendering yields text in chunks as the rows arrive, so json, ndjson and csv need constant memory
 * whatever the number of rows; a table measures its columns first, so it holds its rows.
 */
import type { ReadingPage } from "../store/queries.js";

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

/** A number in JSON, as `JSON.stringify` writes it. */
const jsonNumber = (v: number) => (Number.isFinite(v) ? `${v}` : "null");

/**
 * Text of a {@link ReadingPage} in `format` (not table): each row as the object path prints it, byte for byte.
 * The text of each kind's fields is made once per page, so a row costs its three numbers and one concatenation:
 * csv `before + ts + "," + value + middle + seq + after`, json alike with the keys.
 */
function pageText(answer: Answer, format: Exclude<Format, "table">): (page: ReadingPage) => string {
  const names = answer.columns.map((c) => `${JSON.stringify(c)}:`);
  let first = true;
  return (page) => {
    const { ts, value, seq, kind } = page;
    const n = page.length;
    const before: string[] = [];
    const middle: string[] = [];
    const after: string[] = [];
    for (const k of page.kinds) {
      if (format === "csv") {
        before.push(`${csvCell(k.device_id)},${csvCell(k.sensor)},`);
        middle.push(`,${csvCell(k.unit)},`);
        // Tags are JSON text, which is the value as csvCell would stringify it: quoted alike, it prints the same.
        after.push(`,${csvCell(k.quality)},${csvCell(k.tags)}\n`);
      } else {
        before.push(`{${names[0]}${jsonValue(k.device_id)},${names[1]}${jsonValue(k.sensor)},${names[2]}`);
        middle.push(`,${names[4]}${jsonValue(k.unit)},${names[5]}`);
        after.push(
          `,${names[6]}${jsonValue(k.quality)},${names[7]}${k.tags}}${format === "ndjson" ? "\n" : ""}`,
        );
      }
    }
    let out = "";
    if (format === "csv") {
      for (let i = 0; i < n; i++) {
        const k = kind === undefined ? 0 : (kind[i] as number);
        const s = seq[i] ?? null;
        out += `${before[k]}${ts[i]},${value[i]}${middle[k]}${s === null ? "" : s}${after[k]}`;
      }
      return out;
    }
    for (let i = 0; i < n; i++) {
      const k = kind === undefined ? 0 : (kind[i] as number);
      const s = seq[i] ?? null;
      if (format === "json") out += first ? "[\n" : ",\n";
      first = false;
      out += `${before[k]}${jsonNumber(ts[i] as number)},${names[3]}${jsonNumber(value[i] as number)}${middle[k]}${s === null ? "null" : jsonNumber(s)}${after[k]}`;
    }
    return out;
  };
}

async function* pagedChunks(
  answer: Answer & { readonly pages: NonNullable<Answer["pages"]> },
  format: Exclude<Format, "table">,
): AsyncGenerator<string> {
  const text = pageText(answer, format);
  let any = false;
  if (format === "csv") yield `${answer.columns.join(",")}\n`;
  for await (const page of answer.pages) {
    if (page.length === 0) continue;
    any = true;
    yield text(page);
  }
  if (format === "json") yield any ? "\n]\n" : "[]\n";
}

/**
 * The answer as text in `format`, in chunks, produced as the rows are read: a page at a time when the answer has
 * {@link Answer.pages} (same text), else in chunks of about {@link CHUNK_CHARS}.
 */
export function render(answer: Answer, format: Format): AsyncGenerator<string> {
  if (format === "table") return table(answer);
  const { pages } = answer;
  if (pages !== undefined) return pagedChunks({ ...answer, pages }, format);
  return rowChunks(answer, format);
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
