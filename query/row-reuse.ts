/**
 * The rows a renderer wrote last time from one `kinds` array, kept so that the next rendering of the same series
 * copies each row whose kind and numbers did not change instead of writing it again (query/format.ts for `latest`,
 * query/devices-text.ts for `devices`). Those two answer the same 4,000 series question after question, and between
 * two questions only the series that got readings change: writing all 500 KB digit by digit took ~1.9 ms of the
 * ~3.3 ms of CPU a `latest` cost the query worker, while copying the unchanged rows, in runs and natively, takes a
 * small part of that. When every row changed (a question a minute on a busy pipeline) the rendering costs what it
 * did, plus comparing the numbers and keeping a copy of the text.
 *
 * A renderer starts a rendering with {@link RowMemo.begin}, and for each row writes its numbers into
 * {@link RowReuse.numbers} and calls {@link RowReuse.row}: a position back means the row was kept (copied, or to
 * be copied with its neighbours), -1 that the renderer writes it. {@link RowReuse.end} finishes the copies and keeps
 * this rendering for the next.
 */
import type { TextParts } from "./text-bytes.js";

/** A kinds array's text in one format, and once it was asked for twice, its last rendering. */
export interface KnownText {
  readonly text: TextParts;
  memo: RowMemo | undefined;
}

/** `a` and `b` as the same number: as `Object.is`, so -0 is not 0 and NaN is NaN (they print differently). */
function sameNumber(a: number, b: number): boolean {
  // biome-ignore lint/suspicious/noSelfCompare: NaN is the only value not equal to itself.
  return a === b ? a !== 0 || 1 / a === 1 / b : a !== a && b !== b;
}

/** One rendering's rows: their numbers, their keys, where each starts, and the text. */
interface Rows {
  count: number;
  numbers: Float64Array;
  keys: Int32Array;
  /** Row `i` is `text[starts[i], starts[i + 1])`. */
  starts: Int32Array;
  text: Buffer;
  /** What came before the rows and shaped the first one (json's opening bracket or comma). */
  tag: number;
}

function rowsFor(width: number, n: number): Rows {
  return {
    count: 0,
    numbers: new Float64Array(n * width),
    keys: new Int32Array(n),
    starts: new Int32Array(n + 1),
    text: Buffer.alloc(0),
    tag: -1,
  };
}

/** The last rendering of one series' text in one format, and room for the next. */
export class RowMemo {
  private last: Rows;
  private spare: Rows;

  /** `width`: how many numbers a row has. */
  constructor(readonly width: number) {
    this.last = rowsFor(width, 0);
    this.spare = rowsFor(width, 0);
  }

  /**
   * A rendering of `n` rows into `out`, from `base` on; `tag` tells what came before them, and a row is kept only
   * from a rendering with the same tag.
   */
  begin(out: Buffer, base: number, n: number, tag: number): RowReuse {
    let next = this.spare;
    if (next.keys.length < n) next = rowsFor(this.width, n);
    next.count = n;
    next.tag = tag;
    return new RowReuse(this, out, base, tag === this.last.tag ? this.last : undefined, next);
  }

  /** Keeps `next`, whose text is `out[base, end)`, as the last rendering. */
  keep(next: Rows, out: Buffer, base: number, end: number): void {
    const size = end - base;
    // The text goes into the last rendering's buffer: its kept rows are all copied by now.
    let text = this.last.text;
    if (text.length < size || text.length > 4 * size + 4096) text = Buffer.allocUnsafeSlow(size);
    out.copy(text, 0, base, end);
    for (let i = 0; i <= next.count; i++) next.starts[i] = (next.starts[i] as number) - base;
    next.text = text;
    // The rendering before is the room for the next (its text, now `next`'s, is never read through `spare`).
    this.spare = this.last;
    this.last = next;
  }
}

/** One rendering in progress: see the module's comment. */
export class RowReuse {
  /** The renderer writes row `i`'s numbers at `numbers[i * width]` before calling {@link row}. */
  readonly numbers: Float64Array;
  private readonly keys: Int32Array;
  private readonly starts: Int32Array;
  private readonly width: number;
  /** The run of kept rows not yet copied: rows `[runFrom, runTo)` of the last rendering, going to `runAt`. */
  private runFrom = -1;
  private runTo = -1;
  private runAt = 0;

  constructor(
    private readonly memo: RowMemo,
    private readonly out: Buffer,
    private readonly base: number,
    private readonly last: Rows | undefined,
    private readonly next: Rows,
  ) {
    this.numbers = next.numbers;
    this.keys = next.keys;
    this.starts = next.starts;
    this.width = memo.width;
  }

  /**
   * Row `i`, with `key` (what its text depends on beside its numbers: its kind), starting at `p`: where it ends
   * when the last rendering had the same row (its bytes are copied by the time {@link end} returns), else -1 (the
   * renderer writes it at `p`).
   */
  row(i: number, key: number, p: number): number {
    this.starts[i] = p;
    this.keys[i] = key;
    const last = this.last;
    if (last === undefined || i >= last.count || last.keys[i] !== key) return -1;
    const w = this.width;
    for (let j = i * w, end = j + w; j < end; j++)
      if (!sameNumber(last.numbers[j] as number, this.numbers[j] as number)) return -1;
    if (this.runTo !== i) {
      this.flush();
      this.runFrom = i;
      this.runAt = p;
    }
    this.runTo = i + 1;
    return p + (last.starts[i + 1] as number) - (last.starts[i] as number);
  }

  /** Copies the run of kept rows. */
  private flush(): void {
    const last = this.last;
    if (last === undefined || this.runTo <= this.runFrom) return;
    last.text.copy(
      this.out,
      this.runAt,
      last.starts[this.runFrom] as number,
      last.starts[this.runTo] as number,
    );
    this.runFrom = this.runTo;
  }

  /** The rows end at `p`: copies what is left to copy and keeps this rendering for the next. */
  end(p: number): void {
    this.flush();
    this.starts[this.next.count] = p;
    this.memo.keep(this.next, this.out, this.base, p);
  }
}
