/**
 * `devices` written from its columns ({@link DevicesPage}) in json, ndjson or csv, byte for byte as the rows print
 * (query/format.ts, one `JSON.stringify` per device, one csv line per series): the answer of 1,000 devices holds
 * 16,000 numbers, and `JSON.stringify` spent 4 to 7 ms a question on them. Here each series' text is made once per
 * `kinds` array (which SQLite's kept reader hands over unchanged while no series' text changes) and the numbers are
 * written digit by digit into one buffer (query/number-bytes.ts); a series whose numbers are the same as in the last
 * answer from that array is copied from it (query/row-reuse.ts).
 */
import type { DevicesPage, ReadingKind } from "../store/queries.js";
import { MAX_NUMBER_BYTES, writeNumber } from "./number-bytes.js";
import { type KnownText, RowMemo } from "./row-reuse.js";
import { partViews, putPart, scratch, type TextBytes, textOf, textParts } from "./text-bytes.js";

export type DevicesFormat = "json" | "ndjson" | "csv";

/** Each kinds array's text by format: series `i`'s text before its first number is part 2i, after its last 2i+1. */
const TEXTS = new WeakMap<readonly ReadingKind[], Map<DevicesFormat, KnownText>>();

const json = (v: string | null) => JSON.stringify(v);

/** A csv cell as query/format.ts writes a string or null. */
function csvCell(v: string | null): string {
  if (v === null) return "";
  return /[",\r\n]/.test(v) ? `"${v.replaceAll('"', '""')}"` : v;
}

/** The text around each series' numbers; between them `,"last_ts":` etc. (json) or "," (csv). */
function seriesText(kinds: readonly ReadingKind[], format: DevicesFormat): KnownText {
  const known = TEXTS.get(kinds)?.get(format);
  if (known !== undefined) {
    known.memo ??= new RowMemo(4);
    return known;
  }
  const parts: string[] = [];
  kinds.forEach((k, i) => {
    const first = i === 0 || kinds[i - 1]?.device_id !== k.device_id;
    const last = i === kinds.length - 1 || kinds[i + 1]?.device_id !== k.device_id;
    if (format === "csv") {
      parts.push(`${csvCell(k.device_id)},${csvCell(k.sensor)},${csvCell(k.unit)},`, "\n");
      return;
    }
    const open = first
      ? `${format === "json" ? (i === 0 ? "[\n" : ",\n") : ""}{"device_id":${json(k.device_id)},"sensors":[`
      : ",";
    parts.push(
      `${open}{"sensor":${json(k.sensor)},"unit":${json(k.unit)},"first_ts":`,
      `}${last ? `]}${format === "ndjson" ? "\n" : ""}` : ""}`,
    );
  });
  const made: KnownText = { text: textParts(parts, 2), memo: undefined };
  const byFormat = TEXTS.get(kinds) ?? new Map<DevicesFormat, KnownText>();
  byFormat.set(format, made);
  TEXTS.set(kinds, byFormat);
  return made;
}

const JSON_GAPS = [',"last_ts":', ',"last_value":', ',"count":'].map((t) => Buffer.from(t));
const CSV_GAP = Buffer.from(",");

/** The whole answer as text; `header` is csv's first line (the columns: device_id, sensor, unit, first_ts, ...). */
export function devicesText(page: DevicesPage, format: DevicesFormat, header: string): string {
  return textOf(devicesBytes(page, format, header));
}

/** The same as bytes (a view of a buffer of its own, valid until dropped). */
export function devicesBytes(page: DevicesPage, format: DevicesFormat, header: string): TextBytes {
  const csv = format === "csv";
  const head = csv ? `${header}\n` : "";
  if (page.length === 0) return { bytes: Buffer.from(format === "json" ? "[]\n" : head), ascii: true };
  const { text, memo } = seriesText(page.kinds, format);
  const { ascii, widest } = text;
  // Text asked for again is copied part by part natively (see partViews), else byte by byte.
  const views = memo === undefined ? undefined : partViews(text);
  const [gap0, gap1, gap2] = (csv ? [CSV_GAP, CSV_GAP, CSV_GAP] : JSON_GAPS) as [Buffer, Buffer, Buffer];
  const room = widest + 4 * MAX_NUMBER_BYTES + 3 * 16;
  const b = scratch(head.length + page.length * room + 8);
  let p = b.write(head, 0, "latin1");
  const copy = (part: Uint8Array) => {
    b.set(part, p);
    p += part.length;
  };
  const series = (i: number) => {
    p = putPart(b, p, text, i, views);
  };
  // JSON.stringify writes null for a number that is not finite (never stored; the object path would).
  const number = (v: number) => {
    if (csv || Number.isFinite(v)) p = writeNumber(b, p, v);
    else p += b.write("null", p, "latin1");
  };
  // Series asked for before: a row whose numbers did not change is copied from the last answer.
  const reuse = memo?.begin(b, p, page.length, 0);
  const numbers = reuse?.numbers;
  for (let i = 0; i < page.length; i++) {
    if (reuse !== undefined && numbers !== undefined) {
      numbers[4 * i] = page.first_ts[i] as number;
      numbers[4 * i + 1] = page.last_ts[i] as number;
      numbers[4 * i + 2] = page.last_value[i] as number;
      numbers[4 * i + 3] = page.count[i] as number;
      const kept = reuse.row(i, 0, p);
      if (kept >= 0) {
        p = kept;
        continue;
      }
    }
    series(2 * i);
    number(page.first_ts[i] as number);
    copy(gap0);
    number(page.last_ts[i] as number);
    copy(gap1);
    number(page.last_value[i] as number);
    copy(gap2);
    number(page.count[i] as number);
    series(2 * i + 1);
  }
  reuse?.end(p);
  if (format === "json") p += b.write("\n]\n", p, "latin1");
  return { bytes: b.subarray(0, p), ascii };
}
