/**
 * Many short texts (the fixed parts of each row of an answer) as one buffer, encoded once: a Buffer per part cost
 * more than the 4,000 rows of `latest` themselves. Renderers copy a row's parts from it around the numbers they
 * write (query/format.ts, query/devices-text.ts).
 */
export interface TextParts {
  /** Part `i` is `bytes[at[i], at[i + 1])`. */
  readonly bytes: Buffer;
  readonly at: Int32Array;
  /** Every byte is a character: the text written with them reads back as latin1, cheaper than utf8. */
  readonly ascii: boolean;
  /** The most bytes the parts of one row take, a row being `perRow` parts in a row. */
  readonly widest: number;
  /** The parts as views: see {@link partViews}. */
  views?: readonly Uint8Array[];
}

export function textParts(parts: readonly string[], perRow: number): TextParts {
  const text = parts.join("");
  const bytes = Buffer.from(text);
  // As many bytes as characters in UTF-8: ASCII only.
  const ascii = bytes.length === text.length;
  const at = new Int32Array(parts.length + 1);
  let widest = 0;
  for (let i = 0, o = 0; i < parts.length; i++) {
    const part = parts[i] as string;
    o += ascii ? part.length : Buffer.byteLength(part);
    at[i + 1] = o;
    if (i % perRow === perRow - 1) widest = Math.max(widest, o - (at[i + 1 - perRow] as number));
  }
  return { bytes, at, ascii, widest };
}

/**
 * Each part of `t` as a view of its bytes, made at the first call and kept: `out.set(views[i], p)` copies a part
 * natively for about 20 ns whatever its length, where a loop spends about 1.4 ns a byte (the 4,000 rows of `latest`
 * copy 12,000 parts of ~40 bytes). Only for text used again (`latest`, `devices`): an export's pages each have text
 * of their own, and their views, promoted with the kept text until a full collection, added 11 MiB to its peak RSS.
 */
export function partViews(t: TextParts): readonly Uint8Array[] {
  t.views ??= Array.from({ length: t.at.length - 1 }, (_, i) =>
    t.bytes.subarray(t.at[i] as number, t.at[i + 1] as number),
  );
  return t.views;
}

/**
 * Copies part `i` of `t` to `out` at `p`: natively from `views` ({@link partViews}) when given, else byte by byte.
 * Returns where it ends.
 */
export function putPart(
  out: Uint8Array,
  p: number,
  t: TextParts,
  i: number,
  views: readonly Uint8Array[] | undefined,
): number {
  if (views !== undefined) {
    const view = views[i] as Uint8Array;
    out.set(view, p);
    return p + view.length;
  }
  const { bytes, at } = t;
  let q = p;
  for (let j = at[i] as number, end = at[i + 1] as number; j < end; j++) out[q++] = bytes[j] as number;
  return q;
}

/** Text as UTF-8 bytes, perhaps a view of a buffer its writer reuses: read or copy it before asking for more. */
export interface TextBytes {
  readonly bytes: Buffer;
  /** Every byte is a character (ASCII): it reads back as latin1, cheaper than utf8. */
  readonly ascii: boolean;
}

/** The text, as a string. */
export function textOf(t: TextBytes): string {
  return t.bytes.toString(t.ascii ? "latin1" : "utf8");
}

/** A copy of the bytes in memory of their own: safe to keep, or to move to another thread. */
export function ownBytes(t: TextBytes): Uint8Array<ArrayBuffer> {
  return new Uint8Array(t.bytes);
}

let scratchBuffer = Buffer.allocUnsafeSlow(1 << 17);

/**
 * A buffer of at least `size` bytes that the renderers share, grown when needed and kept: an answer's text is
 * written into it and read back or copied ({@link textOf}, {@link ownBytes}) before anything else renders, so one
 * is enough per thread. Allocating one per answer (and doubling it as it filled) made about 2 MB of garbage for
 * each `latest`, and the collections that followed cost more than the writing.
 */
export function scratch(size: number): Buffer {
  if (scratchBuffer.length < size)
    scratchBuffer = Buffer.allocUnsafeSlow(Math.max(size, 2 * scratchBuffer.length));
  return scratchBuffer;
}
