/** Reading spooled records back in seq order, for the spool's input (the drain) and its offline commands. */
import { type FileHandle, open } from "node:fs/promises";
import { HELD_BYTES_PER_MESSAGE, type OutgoingBatch } from "../common/outgoing.js";
import {
  decodeBatch,
  parseRecordHeader,
  RECORD_HEADER_BYTES,
  recordIntact,
  SEGMENT_HEADER_BYTES,
  TRAILER_BYTES,
  TRAILER_MAGIC,
} from "./format.js";
import type { SegmentView } from "./segment-log.js";
import { type Damage, scanSegment } from "./segments.js";

const READ_CHUNK_BYTES = 1_048_576;

/** One record read back: its seq, and the batch exactly as it was appended. */
export interface SpoolRecord {
  readonly seq: number;
  readonly messages: number;
  readonly appendedAt: number;
  readonly batch: OutgoingBatch;
}

/** What a reader asks of the store it reads. */
export interface ReaderSource {
  /** Records below this seq are durable and readable. */
  readonly durableEnd: number;
  /** The oldest seq still on disk. */
  readonly firstOnDisk: number;
  /** The records of `damage` in segment file `segment` cannot be read: they count as dropped. */
  dropUnreadable(segment: string, damage: Damage): void;
}

/**
 * Reads records in seq order from a spool, from any position, in bounded memory (1 MiB reads). Keeps its file and
 * offset between calls, so reading on from where it stopped costs no scan.
 */
export class SpoolReader {
  #segFirst: number | undefined;
  #handle: FileHandle | undefined;
  #offset = 0;
  /** The seq of the record at `#offset`. */
  #at = 0;

  constructor(
    private readonly store: ReaderSource,
    private readonly segments: () => readonly SegmentView[],
  ) {}

  /**
   * Up to `max` durable records with seq in [`from`, `to`), in order, and no more than about `maxHeldBytes` once
   * decoded (`heldBytes` of common/outgoing.ts, estimated from each record's header; the first record always comes).
   * `next` is where to read on: past the last record returned, or past records that no longer exist (dropped) or
   * cannot be read (counted as dropped).
   */
  async read(
    from: number,
    to: number,
    max: number,
    maxHeldBytes = Number.POSITIVE_INFINITY,
  ): Promise<{ records: SpoolRecord[]; next: number }> {
    const records: SpoolRecord[] = [];
    const end = Math.min(to, this.store.durableEnd);
    let pos = Math.max(from, this.store.firstOnDisk);
    let held = 0;
    let enough = false;
    while (records.length < max && pos < end && !enough) {
      const segs = this.segments();
      const idx = findSegment(segs, pos);
      const seg = segs[idx];
      if (!seg) break;
      if (this.#segFirst !== seg.first || this.#at > pos) await this.#openAt(seg);
      const limit = seg.sealed ? seg.size - TRAILER_BYTES : seg.size;
      if (this.#offset >= limit || this.#at >= seg.first + seg.records) {
        const nextSeg = segs[idx + 1];
        if (!nextSeg || !seg.sealed) break;
        pos = Math.max(pos, nextSeg.first);
        continue;
      }
      const want = Math.min(READ_CHUNK_BYTES, limit - this.#offset);
      const chunk = Buffer.allocUnsafe(Math.max(want, RECORD_HEADER_BYTES));
      const { bytesRead } = await this.#handle!.read(chunk, 0, want, this.#offset);
      let off = 0;
      let progressed = false;
      while (off + RECORD_HEADER_BYTES <= bytesRead && records.length < max && this.#at < end) {
        if (chunk.readUInt32BE(off) === TRAILER_MAGIC) break;
        const h = parseRecordHeader(chunk.subarray(off, off + RECORD_HEADER_BYTES));
        if (!h || h.seq !== this.#at) {
          pos = Math.max(pos, this.#skipDamage(seg));
          progressed = true;
          break;
        }
        const size = RECORD_HEADER_BYTES + h.length;
        const cost = h.length + h.messages * HELD_BYTES_PER_MESSAGE;
        if (records.length > 0 && held + cost > maxHeldBytes) {
          enough = true;
          break;
        }
        let whole: Buffer;
        if (off + size <= bytesRead) whole = chunk.subarray(off, off + size);
        else if (off > 0)
          break; // read on from this record
        else {
          whole = Buffer.allocUnsafe(size);
          await this.#handle!.read(whole, 0, size, this.#offset);
        }
        if (!recordIntact(whole)) {
          pos = Math.max(pos, this.#skipDamage(seg));
          progressed = true;
          break;
        }
        if (h.seq >= pos) {
          held += cost;
          records.push({
            seq: h.seq,
            messages: h.messages,
            appendedAt: h.appendedAt,
            batch: decodeBatch(whole.subarray(RECORD_HEADER_BYTES)),
          });
          pos = h.seq + 1;
        }
        off += size;
        this.#offset += size;
        this.#at++;
        progressed = true;
      }
      if (!progressed) break;
    }
    return { records, next: pos };
  }

  /**
   * The record at `#offset` is damaged: a scan of the segment finds where intact records go on (by header and
   * CRC), the damaged stretch is dropped (counted), and reading goes on after it. Returns the seq to read on from.
   */
  #skipDamage(seg: SegmentView): number {
    const at = this.#offset;
    const end = seg.first + seg.records;
    const found = scanSegment(seg.path, { verify: true }).damage.find((x) => x.offset === at);
    // Not found (the scan disagrees, e.g. the file changed under it): the rest of the segment is lost.
    const d: Damage =
      found && found.toSeq <= end
        ? found
        : {
            offset: at,
            fromSeq: this.#at,
            toSeq: end,
            resume: limitOf(seg),
            messages: undefined,
            why: `damaged record at byte ${at}`,
          };
    this.store.dropUnreadable(seg.path, d);
    this.#offset = d.toSeq < end ? d.resume : limitOf(seg);
    const to = d.toSeq;
    this.#at = to;
    return to;
  }

  async #openAt(seg: SegmentView): Promise<void> {
    await this.close();
    this.#handle = await open(seg.path, "r");
    this.#segFirst = seg.first;
    this.#offset = SEGMENT_HEADER_BYTES;
    this.#at = seg.first;
  }

  async close(): Promise<void> {
    const h = this.#handle;
    this.#handle = undefined;
    this.#segFirst = undefined;
    await h?.close().catch(() => undefined);
  }
}

/** Where a segment's records end: before its trailer once sealed. */
function limitOf(seg: SegmentView): number {
  return seg.sealed ? seg.size - TRAILER_BYTES : seg.size;
}

/** The index of the segment holding `seq` (the last whose first seq is at most `seq`), or -1. */
function findSegment(segs: readonly SegmentView[], seq: number): number {
  let lo = 0;
  let hi = segs.length - 1;
  let found = -1;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    if (segs[mid]!.first <= seq) {
      found = mid;
      lo = mid + 1;
    } else hi = mid - 1;
  }
  return found;
}
