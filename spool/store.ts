import { mkdirSync } from "node:fs";
import type { OutgoingBatch } from "../amqp/sink.js";
import type { Logger } from "../common/log.js";
import { HEALTHY, type Health } from "../common/pipeline.js";
import { Fifo } from "./fifo.js";
import { CursorFile, listSegments, readCursor, releaseLock, takeLock } from "./files.js";
import { encodeBatch, encodeRecord, RECORD_HEADER_BYTES, TRAILER_BYTES } from "./format.js";
import { Ledger } from "./ledger.js";
import { SpoolReader } from "./reader.js";
import { type Segment, SegmentLog } from "./segment-log.js";

export { SpoolReader, type SpoolRecord } from "./reader.js";
export { listSegments, readCursor };

/** What the spool does with a new record when it is full (`SPOOL_FULL`). */
export type FullPolicy = "block" | "drop-oldest" | "drop-newest";
/** Why records left the spool unsent; the label of the drops metric. */
export type DropReason = "drop-oldest" | "drop-newest" | "max-age" | "corrupt";

export interface SpoolOptions {
  /** The spool's directory (created if missing). */
  readonly dir: string;
  /** Bytes of segment files at most (`SPOOL_MAX_BYTES`). */
  readonly maxBytes: number;
  /** Records older than this are dropped, a whole segment at a time (`SPOOL_MAX_AGE`). */
  readonly maxAgeMs: number;
  readonly full: FullPolicy;
  readonly log: Logger;
  /** Called for every drop with the records and messages dropped. */
  readonly onDrop?: (reason: DropReason, records: number, messages: number) => void;
}

/** Depth of the spool: what is stored and not yet confirmed downstream. */
export interface SpoolDepth {
  readonly records: number;
  readonly messages: number;
  /** Bytes of segment files on disk (done records too, until their whole segment goes). */
  readonly bytes: number;
  readonly segments: number;
  /** Append time of the oldest record not yet done, epoch ms; undefined when empty. */
  readonly oldestAppendedAt: number | undefined;
}

interface Pending {
  readonly payload: Buffer;
  readonly messages: number;
  readonly settle: (stored: boolean) => void;
}

/** Records written per fsync at most (a group commit): bounds the memory of one write. */
const GROUP_MAX_BYTES = 4_194_304;
const HOUSEKEEPING_MS = 1_000;
/** The cursor is rewritten at most this often: a stale cursor only means duplicates after a crash. */
const CURSOR_EVERY_MS = 200;
const RETRY_WRITE_MS = 1_000;

/**
 * The spool's files: an append-only log of records in segment files, with a cursor naming the first record not yet
 * confirmed downstream. One writer (`append`, group commit: all records waiting while an fsync runs go in the next
 * one) and any number of readers (`reader()`); a record is readable once durable.
 *
 * Opening reads each sealed segment's trailer (48 bytes) and scans only the newest segment, so it takes bounded
 * memory and time whatever the spool's size. A torn or corrupt tail of the newest segment (a crash mid-write) is
 * cut off and logged; a damaged segment header is set aside as `<name>.corrupt`. Records whose whole segment is done
 * are reclaimed by deleting the segment file.
 */
export class SpoolStore {
  readonly #opts: SpoolOptions;
  #log!: SegmentLog;
  /** The seq the next record gets. */
  #next = 0;
  /** Records below this seq are durable and readable. */
  #durableEnd = 0;
  #ledger!: Ledger;
  readonly #queue = new Fifo<Pending>();
  #committing = false;
  #full = false;
  #failing: string | undefined;
  readonly #cursor: CursorFile;
  #closed = false;
  #retryTimer: NodeJS.Timeout | undefined;
  readonly #timer: NodeJS.Timeout;
  readonly #listeners = new Set<() => void>();

  private constructor(opts: SpoolOptions) {
    this.#opts = opts;
    this.#cursor = new CursorFile(opts.dir, CURSOR_EVERY_MS);
    this.#timer = setInterval(() => {
      try {
        this.#housekeeping();
      } catch (err) {
        opts.log.error({ err: (err as Error).message }, "spool housekeeping failed; retrying");
      }
    }, HOUSEKEEPING_MS);
    this.#timer.unref();
  }

  /**
   * Opens (or creates) the spool in `opts.dir`, repairing a torn tail; throws only when the directory is unusable or
   * another live process holds it.
   */
  static open(opts: SpoolOptions): SpoolStore {
    const store = new SpoolStore(opts);
    try {
      store.#load();
    } catch (err) {
      clearInterval(store.#timer);
      throw err;
    }
    return store;
  }

  #load(): void {
    const { dir } = this.#opts;
    mkdirSync(dir, { recursive: true });
    takeLock(dir);
    const cursor = readCursor(dir);
    this.#log = SegmentLog.load(dir, this.#opts, this.#opts.log);
    const segments = this.#log.segments;
    const newest = segments.at(-1);
    this.#next = newest ? newest.first + newest.records : (cursor ?? 0);
    this.#durableEnd = this.#next;
    const oldest = segments[0];
    const prefix = Math.min(this.#next, Math.max(cursor ?? 0, oldest?.first ?? this.#next));
    this.#ledger = new Ledger(prefix, segments);
    this.#reclaim();
    this.#log.start(this.#next);
  }

  /** Calls `listener` each time records become durable or done (readers wait on it). */
  onChange(listener: () => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  #notify(): void {
    for (const l of this.#listeners) l();
  }

  /** The seq after the last durable record: readers read below it. */
  get durableEnd(): number {
    return this.#durableEnd;
  }

  /** The first seq not yet done (records below it are confirmed downstream or dropped). */
  get firstNotDone(): number {
    return this.#ledger.prefix;
  }

  /** The oldest seq still on disk. */
  get firstOnDisk(): number {
    return this.#log.segments[0]?.first ?? this.#next;
  }

  /** Appends waiting for space (block policy) or for their fsync. */
  get waiting(): number {
    return this.#queue.length;
  }

  get full(): boolean {
    return this.#full;
  }

  depth(): SpoolDepth {
    const prefix = this.#ledger.prefix;
    const oldestSeg = this.#log.segments.find((s) => s.first + s.records > prefix);
    return {
      records: this.#ledger.records(this.#durableEnd),
      messages: this.#ledger.messages,
      bytes: this.#log.bytes,
      segments: this.#log.segments.length,
      oldestAppendedAt: oldestSeg ? oldestSeg.firstAppendedAt : undefined,
    };
  }

  /** Not ready while full under the block policy (PUBACKs held) or while writes fail. */
  health(): Health {
    if (this.#failing) return { ready: false, reason: `spool failing: ${this.#failing}` };
    if (this.#full) {
      return {
        ready: false,
        reason: `spool full (SPOOL_MAX_BYTES ${this.#opts.maxBytes}, SPOOL_FULL=block): holding PUBACKs`,
      };
    }
    return HEALTHY;
  }

  /**
   * Appends a batch; `settle(true)` once it is durable (fsynced), `settle(false)` if the drop-newest policy
   * refused it for want of space. Under the block policy a full spool holds it (and all after it) until space is
   * freed. Never throws; a failing disk is retried every second and shown by `health()`.
   */
  append(batch: OutgoingBatch, settle: (stored: boolean) => void): void {
    if (this.#closed) return;
    this.#queue.push({ payload: encodeBatch(batch), messages: batch.length, settle });
    void this.#commit();
  }

  async #commit(): Promise<void> {
    if (this.#committing || this.#closed) return;
    this.#committing = true;
    try {
      while (this.#queue.length > 0 && !this.#closed) {
        this.#log.sealIfDue(this.#next);
        const group: { pending: Pending; record: Buffer }[] = [];
        let groupBytes = 0;
        let projected = this.#log.bytes;
        // A group stays within the active segment's size, so segments (the unit of reclaiming) keep their size.
        const room = Math.min(GROUP_MAX_BYTES, this.#log.segmentBytes - this.#log.active.size);
        while (this.#queue.length > 0 && (group.length === 0 || groupBytes < room)) {
          const p = this.#queue.peek()!;
          const size = RECORD_HEADER_BYTES + p.payload.length;
          if (projected + size + TRAILER_BYTES > this.#opts.maxBytes) {
            if (this.#opts.full === "drop-oldest" && this.#dropOldest()) {
              projected = this.#log.bytes + groupBytes;
              continue;
            }
            const segments = this.#log.segments.length;
            if (this.#opts.full === "block" && group.length === 0 && segments > 1) {
              this.#setFull(true);
              return;
            }
            if (this.#opts.full === "block" && group.length > 0) break;
            if (this.#opts.full !== "block" || segments === 1) {
              // drop-newest, or a record no amount of dropping makes room for.
              this.#queue.shift();
              this.#opts.onDrop?.("drop-newest", 1, p.messages);
              this.#dropLog("drop-newest", 1, p.messages);
              p.settle(false);
              continue;
            }
          }
          this.#queue.shift();
          const seq = this.#next + group.length;
          const record = encodeRecord(seq, Date.now(), p.messages, p.payload);
          group.push({ pending: p, record });
          groupBytes += record.length;
          projected += record.length;
        }
        if (group.length === 0) continue;
        this.#setFull(false);
        try {
          await this.#log.write(group.map((g) => g.record));
        } catch (err) {
          if (this.#closed) return; // closed under the write: none of the group is acknowledged
          // Put the group back in order and retry; what a failed write left past the durable size is overwritten.
          this.#queue.unshift(group.map((g) => g.pending));
          this.#failing = (err as Error).message;
          this.#opts.log.error({ err: this.#failing }, "spool write failed; PUBACKs held, retrying");
          this.#retryTimer = setTimeout(() => void this.#commit(), RETRY_WRITE_MS);
          return;
        }
        this.#failing = undefined;
        const a = this.#log.active;
        for (const g of group) {
          const at = g.record.readDoubleBE(16);
          if (a.records === 0) a.firstAppendedAt = at;
          a.lastAppendedAt = at;
          a.records++;
          a.messages += g.pending.messages;
          this.#ledger.added(g.pending.messages);
        }
        a.size += groupBytes;
        this.#next += group.length;
        this.#durableEnd = this.#next;
        for (const g of group) g.pending.settle(true);
        this.#notify();
      }
    } finally {
      this.#committing = false;
    }
  }

  #setFull(full: boolean): void {
    if (full === this.#full) return;
    this.#full = full;
    if (full) {
      this.#opts.log.warn(
        { maxBytes: this.#opts.maxBytes, waiting: this.#queue.length },
        "spool full (SPOOL_FULL=block): holding PUBACKs; the MQTT broker keeps the readings until space is freed",
      );
    } else this.#opts.log.info("spool has room again");
  }

  #dropLog(reason: DropReason, records: number, messages: number): void {
    this.#opts.log.warn({ reason, records, messages }, "spool dropped records");
  }

  /** Drops the oldest sealed segment for room (drop-oldest); false when only the active one is left. */
  #dropOldest(): boolean {
    if (this.#log.active.records > 0 && this.#log.segments.length === 1) this.#log.seal(this.#next);
    const victim = this.#log.segments[0];
    if (!victim || victim === this.#log.active) return false;
    this.#dropSegment(victim, "drop-oldest");
    return true;
  }

  /** Drops `victim`, the oldest segment, counting what in it was not done yet. */
  #dropSegment(victim: Segment, reason: DropReason): void {
    const dropped = this.#ledger.drop(victim);
    this.#log.removeOldest();
    if (dropped) {
      this.#opts.onDrop?.(reason, dropped.records, dropped.messages);
      this.#dropLog(reason, dropped.records, dropped.messages);
    }
  }

  /**
   * Marks record `seq` as confirmed downstream; `messages` its message count. Once every record of a sealed
   * segment is done, the segment file is deleted. Ignores a seq already done or dropped.
   */
  markDone(seq: number, messages: number): void {
    if (this.#closed || !this.#ledger.confirm(seq, messages)) return;
    this.#reclaim();
  }

  /** Deletes sealed segments every record of which is done; a blocked writer may go on. */
  #reclaim(): void {
    let freed = false;
    const segments = this.#log.segments;
    while (segments.length > 0) {
      const s = segments[0]!;
      if (!s.sealed || s.first + s.records > this.#ledger.prefix) break;
      this.#log.removeOldest();
      freed = true;
    }
    if (freed && this.#full) void this.#commit();
  }

  #housekeeping(): void {
    if (this.#closed) return;
    const now = Date.now();
    if (!this.#committing && this.#log.oldEnough(now)) this.#log.seal(this.#next);
    const segments = this.#log.segments;
    while (segments.length > 1) {
      const s = segments[0]!;
      if (!s.sealed || now - s.lastAppendedAt < this.#opts.maxAgeMs) break;
      this.#dropSegment(s, "max-age");
    }
    this.#cursor.write(this.#ledger.prefix, false);
    if (this.#full) void this.#commit();
  }

  /** A reader of its own position (several may read at once). */
  reader(): SpoolReader {
    return new SpoolReader(this, () => this.#log.segments);
  }

  /** Records `from` .. `to` (exclusive) cannot be read (a corrupt record): they count as dropped. */
  dropUnreadable(from: number, to: number, why: string): void {
    const records = Math.max(0, to - Math.max(from, this.#ledger.prefix));
    this.#opts.log.error({ from, to, why }, "spool records unreadable; dropped");
    this.#opts.onDrop?.("corrupt", records, 0);
    for (let s = from; s < to; s++) this.markDone(s, 0);
  }

  /** Persists the cursor and closes the files; appends not yet durable are never settled (not PUBACKed). */
  close(): void {
    if (this.#closed) return;
    this.#cursor.write(this.#ledger.prefix, true);
    this.#closed = true;
    clearInterval(this.#timer);
    clearTimeout(this.#retryTimer);
    this.#queue.clear();
    this.#log.close();
    releaseLock(this.#opts.dir);
  }
}
