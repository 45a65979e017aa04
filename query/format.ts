/**
 * Output formats of query answers, for the CLI and the HTTP API alike: `json` (an array), `ndjson` (one object a
 * line), `csv` (a header row, then one row per object) and `table` (aligned columns for a terminal, times as
 * ISO-8601). Rendering yields text in chunks as the rows arrive, so json, ndjson and csv need constant memory
 * whatever the number of rows; a table measures its columns first, so it holds its rows.
 */
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
   * The same rows as `rows`, in the same order, in pages of arrays holding the `columns` in order: json, ndjson
   * and csv then write a page as one string rather than a row at a time (what makes an export fast). Cells of the
   * columns named in `jsonText` hold JSON text (`JSON.stringify` of the value), written as it is.
   */
  readonly pages?: AsyncIterable<readonly (readonly unknown[])[]> | Iterable<readonly (readonly unknown[])[]>;
  readonly jsonText?: readonly string[];
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

/**
 * Text of a page of {@link Answer.pages} in `format` (not table): each row as the object path prints it, byte for
 * byte. Cells equal to the one above reuse its text (device, sensor, unit, quality and tags mostly repeat).
 */
function pageText(
  answer: Answer,
  format: Exclude<Format, "table">,
): (page: readonly (readonly unknown[])[]) => string {
  const n = answer.columns.length;
  const isJson = answer.columns.map((c) => answer.jsonText?.includes(c) ?? false);
  const above: unknown[] = new Array(n).fill(undefined);
  const aboveText: string[] = answer.columns.map(() => (format === "csv" ? "" : "null"));
  if (format === "csv") {
    return (page) => {
      let out = "";
      for (const row of page) {
        for (let i = 0; i < n; i++) {
          const v = row[i];
          let cell: string;
          if (typeof v === "number") cell = String(v);
          else if (v === above[i]) cell = aboveText[i] as string;
          else {
            // JSON text is the value as csvCell would stringify it, so quoting it alike prints the same.
            cell = csvCell(v);
            above[i] = v;
            aboveText[i] = cell;
          }
          out += i === 0 ? cell : `,${cell}`;
        }
        out += "\n";
      }
      return out;
    };
  }
  const keys = answer.columns.map((c) => `${JSON.stringify(c)}:`);
  let first = true;
  return (page) => {
    let out = "";
    for (const row of page) {
      if (format === "json") out += first ? "[\n" : ",\n";
      first = false;
      let sep = "{";
      for (let i = 0; i < n; i++) {
        const v = row[i];
        // JSON.stringify leaves out a key whose value is undefined.
        if (v === undefined) continue;
        let text: string;
        if (typeof v === "number") text = Number.isFinite(v) ? String(v) : "null";
        else if (v === above[i]) text = aboveText[i] as string;
        else {
          text = isJson[i] ? (v as string) : jsonValue(v);
          above[i] = v;
          aboveText[i] = text;
        }
        out += `${sep}${keys[i]}${text}`;
        sep = ",";
      }
      out += sep === "{" ? "{}" : "}";
      if (format === "ndjson") out += "\n";
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
