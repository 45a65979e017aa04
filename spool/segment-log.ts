/**
 * The spool's segment files in order: opening them (sealed ones by their trailer, the newest scanned and its torn
 * tail cut), the active segment appended to, sealing it, and deleting the oldest.
 */
import {
  closeSync,
  fsyncSync,
  ftruncateSync,
  openSync,
  renameSync,
  statSync,
  unlinkSync,
  writeSync,
} from "node:fs";
import { type FileHandle, open } from "node:fs/promises";
import { join } from "node:path";
import type { Logger } from "../common/log.js";
import { fsyncDir, listSegments } from "./files.js";
import {
  encodeSegmentHeader,
  encodeTrailer,
  SEGMENT_HEADER_BYTES,
  segmentName,
  TRAILER_BYTES,
} from "./format.js";
import { type Damage, readTrailer, scanSegment } from "./segments.js";

export interface Segment {
  readonly first: number;
  readonly path: string;
  /** Bytes on disk that are durable (fsynced), the trailer included once sealed. */
  size: number;
  records: number;
  messages: number;
  firstAppendedAt: number;
  lastAppendedAt: number;
  sealed: boolean;
}

/** Segments are about 1/16 of SPOOL_MAX_BYTES: drop-oldest and reclaiming free space in steps of ~6 %. */
const SEGMENTS_PER_SPOOL = 16;
const MIN_SEGMENT_BYTES = 65_536;
const MAX_SEGMENT_BYTES = 67_108_864;
/** A segment is also sealed once its first record is this fraction of SPOOL_MAX_AGE old, so age drops are fine-grained. */
const AGE_STEPS = 16;

/** Information a reader needs about one segment. */
export type SegmentView = Pick<Segment, "first" | "path" | "size" | "records" | "sealed">;

/**
 * The segments of one spool directory, oldest first; once `start` has run, the last is the active one (unsealed,
 * appended to). Every other segment is sealed: a trailer summarises its records.
 */
export class SegmentLog {
  readonly segments: Segment[] = [];
  /** The size a segment is sealed at (records are not split: a segment may end a group past it). */
  readonly segmentBytes: number;
  readonly #sealAgeMs: number;
  #active: Segment | undefined;
  #handle: FileHandle | undefined;

  private constructor(
    private readonly dir: string,
    limits: { maxBytes: number; maxAgeMs: number },
  ) {
    this.segmentBytes = Math.min(
      MAX_SEGMENT_BYTES,
      Math.max(MIN_SEGMENT_BYTES, Math.floor(limits.maxBytes / SEGMENTS_PER_SPOOL)),
    );
    this.#sealAgeMs = limits.maxAgeMs / AGE_STEPS;
  }

  /**
   * Opens the segments in `dir`, in bounded memory and time: a sealed segment costs one trailer read; the newest
   * (or one whose trailer is missing) is scanned, cut after its last good record (logged) and sealed; one without
   * records is deleted; one whose header is torn or foreign is set aside as `<name>.corrupt`. Damage in the middle
   * of a segment is left for the reader to skip (it costs the damaged records only); a torn tail is cut and handed
   * to `onTornTail` to be counted.
   */
  static load(
    dir: string,
    limits: { maxBytes: number; maxAgeMs: number },
    log: Logger,
    onTornTail: (tail: Damage, path: string) => void,
  ): SegmentLog {
    const out = new SegmentLog(dir, limits);
    const files = listSegments(dir);
    for (const [i, f] of files.entries()) {
      const last = i === files.length - 1;
      const trailer = last ? undefined : readTrailer(f.path);
      if (trailer) {
        out.segments.push({
          first: f.first,
          path: f.path,
          size: statSync(f.path).size,
          records: trailer.records,
          messages: trailer.messages,
          firstAppendedAt: trailer.firstAppendedAt,
          lastAppendedAt: trailer.lastAppendedAt,
          sealed: true,
        });
        continue;
      }
      // The newest segment (or one whose trailer is missing): scan it, cut a torn tail, seal it.
      const scan = scanSegment(f.path, { verify: last });
      if (scan.firstSeq !== f.first) {
        log.error({ file: f.path }, "spool segment header torn or foreign; set aside as .corrupt");
        renameSync(f.path, `${f.path}.corrupt`);
        continue;
      }
      if (scan.problem && !(scan.trailer && scan.goodBytes + TRAILER_BYTES === scan.fileBytes)) {
        log.warn(
          { file: f.path, problem: scan.problem, cutBytes: scan.fileBytes - scan.goodBytes },
          "spool segment ends in a torn or corrupt write (a crash mid-append); cut off",
        );
        if (scan.tail && scan.tail.toSeq > scan.tail.fromSeq) onTornTail(scan.tail, f.path);
      }
      if (scan.summary.records === 0) {
        unlinkSync(f.path);
        continue;
      }
      const fd = openSync(f.path, "r+");
      try {
        ftruncateSync(fd, scan.goodBytes);
        writeSync(fd, encodeTrailer(scan.summary), 0, TRAILER_BYTES, scan.goodBytes);
        fsyncSync(fd);
      } finally {
        closeSync(fd);
      }
      out.segments.push({
        first: f.first,
        path: f.path,
        size: scan.goodBytes + TRAILER_BYTES,
        records: scan.summary.records,
        messages: scan.summary.messages,
        firstAppendedAt: scan.summary.firstAppendedAt,
        lastAppendedAt: scan.summary.lastAppendedAt,
        sealed: true,
      });
    }
    return out;
  }

  /** The segment appended to; `start` must have run. */
  get active(): Segment {
    if (!this.#active) throw new Error("spool: no active segment");
    return this.#active;
  }

  /** Bytes of segment files on disk. */
  get bytes(): number {
    let n = 0;
    for (const s of this.segments) n += s.size;
    return n;
  }

  /**
   * Creates (durably) the active segment, whose first record will have seq `first`. Throws on a disk error, leaving
   * the previous active segment in place; a retry rewrites the file from scratch.
   */
  start(first: number): void {
    const path = join(this.dir, segmentName(first));
    const fd = openSync(path, "w");
    try {
      writeSync(fd, encodeSegmentHeader(first));
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    fsyncDir(this.dir);
    this.#active = {
      first,
      path,
      size: SEGMENT_HEADER_BYTES,
      records: 0,
      messages: 0,
      firstAppendedAt: 0,
      lastAppendedAt: 0,
      sealed: false,
    };
    this.segments.push(this.#active);
  }

  /**
   * Writes `records` (holding `messages` each) after the active segment's durable bytes and makes them durable (one
   * fsync), then counts them in the active segment; throws, counting nothing, unless every byte was written and synced.
   */
  async write(records: readonly Buffer[], messages: readonly number[]): Promise<void> {
    if (this.active.sealed) throw new Error("spool: the active segment is sealed (a seal was interrupted)");
    this.#handle ??= await open(this.active.path, "r+");
    const at = this.active.size;
    const total = records.reduce((n, r) => n + r.length, 0);
    let written = (await this.#handle.writev(records as Buffer[], at)).bytesWritten;
    if (written < total) {
      // A short write (a disk filling up writes what fits, then fails): write the rest, which throws ENOSPC.
      const all = Buffer.concat(records as Buffer[]);
      while (written < total) {
        const { bytesWritten } = await this.#handle.write(all, written, total - written, at + written);
        if (bytesWritten === 0)
          throw new Error(`spool: wrote 0 of ${total - written} bytes to ${this.active.path}`);
        written += bytesWritten;
      }
    }
    await this.#handle.datasync();
    const a = this.active;
    for (const [i, r] of records.entries()) {
      const appendedAt = r.readDoubleBE(16);
      if (a.records === 0) a.firstAppendedAt = appendedAt;
      a.lastAppendedAt = appendedAt;
      a.records++;
      a.messages += messages[i]!;
    }
    a.size += total;
  }

  /** Whether the active segment holds records and its first is old enough to seal it (SPOOL_MAX_AGE / 16). */
  oldEnough(now: number): boolean {
    const a = this.active;
    return a.records > 0 && now - a.firstAppendedAt >= this.#sealAgeMs;
  }

  /**
   * Seals the active segment when it holds records and is big or old enough; the next one starts at `next`. Also
   * finishes a seal that a disk error interrupted (trailer written, next segment not created).
   */
  sealIfDue(next: number): void {
    const a = this.active;
    if (a.sealed || (a.records > 0 && (a.size >= this.segmentBytes || this.oldEnough(Date.now()))))
      this.seal(next);
  }

  /**
   * Writes the active segment's trailer, then starts the next active segment at `next`. Throws on a disk error;
   * calling it again carries on where it stopped (the trailer is not written twice).
   */
  seal(next: number): void {
    const a = this.active;
    if (!a.sealed) this.#writeTrailer(a);
    this.start(next);
  }

  #writeTrailer(a: Segment): void {
    const trailer = encodeTrailer({
      records: a.records,
      messages: a.messages,
      lastSeq: a.first + a.records - 1,
      firstAppendedAt: a.firstAppendedAt,
      lastAppendedAt: a.lastAppendedAt,
    });
    const fd = openSync(a.path, "r+");
    try {
      writeSync(fd, trailer, 0, TRAILER_BYTES, a.size);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    a.size += TRAILER_BYTES;
    a.sealed = true;
    this.#closeHandle();
  }

  /** Deletes the oldest segment's file, then forgets it (a failed delete leaves it listed, to be tried again). */
  removeOldest(): void {
    const s = this.segments[0];
    if (!s) return;
    try {
      unlinkSync(s.path);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw err;
    }
    this.segments.shift();
  }

  /** Deletes the sealed segments whose records are all below `done`; true when one went. Throws on a disk error. */
  removeDone(done: number): boolean {
    let removed = false;
    for (let s = this.segments[0]; s?.sealed && s.first + s.records <= done; s = this.segments[0]) {
      this.removeOldest();
      removed = true;
    }
    return removed;
  }

  /** Forgets the open handle of the active segment after a failed write, so the next write starts afresh. */
  writeFailed(): void {
    this.#closeHandle();
  }

  close(): void {
    this.#closeHandle();
  }

  #closeHandle(): void {
    const old = this.#handle;
    this.#handle = undefined;
    old?.close().catch(() => undefined);
  }
}
