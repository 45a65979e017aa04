import { mkdirSync } from "node:fs";
import type { OutgoingBatch } from "../amqp/sink.js";
import { backoffDelay } from "../common/backoff.js";
import type { Logger } from "../common/log.js";
import { HEALTHY, type Health } from "../common/pipeline.js";
import { Fifo } from "./fifo.js";
import { CursorFile, listSegments, readCursor, releaseLock, takeLock } from "./files.js";
import {
  encodeBatch,
  encodeRecord,
  RECORD_HEADER_BYTES,
  SEGMENT_HEADER_BYTES,
  TRAILER_BYTES,
} from "./format.js";
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
  readonly tooBig: ((recordBytes: number) => void) | undefined;
}

/** Records written per fsync at most (a group commit): bounds the memory of one write. */
const GROUP_MAX_BYTES = 4_194_304;
const HOUSEKEEPING_MS = 1_000;
/** The cursor is rewritten at most this often: a stale cursor only means duplicates after a crash. */
const CURSOR_EVERY_MS = 200;
/** A failing disk operation is retried after 1 s, doubling up to 30 s. */
const RETRY_MIN_MS = 1_000;
const RETRY_MAX_MS = 30_000;

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
  /** Disk operations failing now, by operation (append, seal, delete, cursor): each names its error. */
  readonly #failing = new Map<string, string>();
  #failures = 0;
  /** A record that cannot fit even in an empty spool and has nowhere else to go: held, unacknowledged. */
  #oversize: string | undefined;
  readonly #cursor: CursorFile;
  #closed = false;
  #retryTimer: NodeJS.Timeout | undefined;
  readonly #timer: NodeJS.Timeout;
  readonly #listeners = new Set<() => void>();

  private constructor(opts: SpoolOptions) {
    this.#opts = opts;
    this.#cursor = new CursorFile(opts.dir, CURSOR_EVERY_MS);
    this.#timer = setInterval(() => this.#housekeeping(), HOUSEKEEPING_MS);
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
    this.#log = SegmentLog.load(dir, this.#opts, this.#opts.log, (tail, path) =>
      this.#countLost(path, tail.offset, tail.fromSeq, tail.toSeq, tail.messages, tail.why),
    );
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

  /** The largest record (header and payload) that fits in an empty spool. */
  get maxRecordBytes(): number {
    return this.#opts.maxBytes - SEGMENT_HEADER_BYTES - TRAILER_BYTES;
  }

  /**
   * Not ready while the disk fails (naming the operation and the error), while a record too large for the spool is
   * held, or while full under the block policy (PUBACKs held).
   */
  health(): Health {
    const failing = [...this.#failing.values()];
    if (failing.length > 0) {
      return { ready: false, reason: `spool disk error, PUBACKs held, retrying: ${failing.join("; ")}` };
    }
    if (this.#oversize) return { ready: false, reason: this.#oversize };
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
   * freed. A batch whose record cannot fit even in an empty spool (larger than SPOOL_MAX_BYTES) is never dropped,
   * whatever the policy: it is handed to `tooBig` (which must see it delivered another way) or, without one, held
   * unsettled at the head of the queue with `health()` saying why. Never throws; a failing disk is retried with
   * backoff and shown by `health()`.
   */
  append(
    batch: OutgoingBatch,
    settle: (stored: boolean) => void,
    tooBig?: (recordBytes: number) => void,
  ): void {
    if (this.#closed) return;
    this.#queue.push({ payload: encodeBatch(batch), messages: batch.length, settle, tooBig });
    void this.#commit();
  }

  /** Runs `op`, a disk operation named `name`: a failure is logged, shown by `health()` and retried with backoff. */
  #disk(name: string, op: () => void): boolean {
    try {
      op();
      this.#recovered(name);
      return true;
    } catch (err) {
      this.#diskFailed(name, err);
      return false;
    }
  }

  #recovered(name: string): void {
    if (!this.#failing.delete(name)) return;
    if (this.#failing.size === 0) this.#failures = 0;
    this.#opts.log.info({ op: name }, "spool disk operation works again");
  }

  #diskFailed(name: string, err: unknown): void {
    const e = err as NodeJS.ErrnoException;
    const what = `${name}: ${e.code ?? "error"} ${e.message}`;
    if (this.#failing.get(name) !== what) {
      this.#opts.log.error(
        { op: name, code: e.code, err: e.message },
        "spool disk operation failed; PUBACKs held, retrying",
      );
    }
    this.#failing.set(name, what);
    if (this.#retryTimer || this.#closed) return;
    const delay = backoffDelay(++this.#failures, RETRY_MIN_MS, RETRY_MAX_MS);
    this.#retryTimer = setTimeout(() => {
      this.#retryTimer = undefined;
      this.#retry();
    }, delay);
    this.#retryTimer.unref();
  }

  /** Tries again every operation that failed. */
  #retry(): void {
    if (this.#closed) return;
    if (this.#failing.has("delete")) this.#disk("delete", () => this.#reclaim());
    if (this.#failing.has("cursor"))
      this.#disk("cursor", () => this.#cursor.write(this.#ledger.prefix, true));
    void this.#commit();
  }

  async #commit(): Promise<void> {
    if (this.#committing || this.#closed) return;
    this.#committing = true;
    try {
      while (this.#queue.length > 0 && !this.#closed) {
        if (!this.#disk("seal", () => this.#log.sealIfDue(this.#next))) return;
        const group: { pending: Pending; record: Buffer }[] = [];
        let groupBytes = 0;
        let projected = this.#log.bytes;
        // A group stays within the active segment's size, so segments (the unit of reclaiming) keep their size.
        const room = Math.min(GROUP_MAX_BYTES, this.#log.segmentBytes - this.#log.active.size);
        while (this.#queue.length > 0 && (group.length === 0 || groupBytes < room)) {
          const p = this.#queue.peek()!;
          const size = RECORD_HEADER_BYTES + p.payload.length;
          if (size > this.maxRecordBytes) {
            // No policy makes room for it: dropping the whole spool would not do. Never drop it.
            if (group.length > 0) break;
            if (!this.#tooBig(p, size)) return;
            continue;
          }
          if (projected + size + TRAILER_BYTES > this.#opts.maxBytes) {
            if (this.#opts.full === "drop-newest") {
              this.#queue.shift();
              this.#opts.onDrop?.("drop-newest", 1, p.messages);
              this.#dropLog("drop-newest", 1, p.messages);
              p.settle(false);
              continue;
            }
            if (group.length > 0) break; // write the group first; the next round makes room
            if (this.#opts.full === "drop-oldest") {
              let dropped: boolean;
              try {
                dropped = this.#dropOldest();
              } catch (err) {
                this.#diskFailed("delete", err);
                return;
              }
              if (dropped) {
                projected = this.#log.bytes;
                continue;
              }
            }
            // block: wait for the drain to free whole segments; an active segment holding records is sealed so that
            // it can be freed too.
            if (this.#log.active.records > 0 && !this.#disk("seal", () => this.#log.seal(this.#next))) return;
            this.#setFull(true);
            return;
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
          // Put the group back in order and retry with the data itself (after a failed fsync the kernel may have
          // dropped the dirty pages: fsyncing again would report success for data that is gone). What a failed
          // write left past the durable size is overwritten.
          this.#queue.unshift(group.map((g) => g.pending));
          this.#log.writeFailed();
          this.#diskFailed("append", err);
          return;
        }
        this.#recovered("append");
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

  /**
   * A record larger than the spool: handed to its `tooBig` callback, or held (false: the queue waits behind it).
   */
  #tooBig(p: Pending, size: number): boolean {
    const why =
      `spool record of ${size} bytes (${p.messages} readings) cannot fit SPOOL_MAX_BYTES ${this.#opts.maxBytes} ` +
      "even empty";
    if (p.tooBig) {
      this.#queue.shift();
      this.#opts.log.warn(
        { bytes: size, readings: p.messages },
        `${why}: sent to RabbitMQ directly, PUBACK after its confirm`,
      );
      p.tooBig(size);
      return true;
    }
    if (this.#oversize === undefined)
      this.#opts.log.error({ bytes: size, readings: p.messages }, `${why}: held, not PUBACKed`);
    this.#oversize = `${why}: held, not PUBACKed; raise SPOOL_MAX_BYTES`;
    return false;
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

  /**
   * Drops the oldest sealed segment for room (drop-oldest); false when only the active one is left. Throws on a
   * disk error (the segment stays listed, done, and is deleted when the disk works again).
   */
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
    this.#disk("delete", () => this.#reclaim());
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
    if (!this.#committing && (this.#log.active.sealed || this.#log.oldEnough(now))) {
      this.#disk("seal", () => this.#log.seal(this.#next));
    }
    const segments = this.#log.segments;
    this.#disk("delete", () => {
      while (segments.length > 1) {
        const s = segments[0]!;
        if (!s.sealed || now - s.lastAppendedAt < this.#opts.maxAgeMs) break;
        this.#dropSegment(s, "max-age");
      }
    });
    this.#disk("cursor", () => this.#cursor.write(this.#ledger.prefix, false));
    if (this.#full) void this.#commit();
  }

  /** A reader of its own position (several may read at once). */
  reader(): SpoolReader {
    return new SpoolReader(this, () => this.#log.segments);
  }

  /**
   * Records `from` .. `to` (exclusive) of the segment file `path`, damaged from byte `offset`, cannot be read:
   * they count as dropped (`corrupt`), in readings when `messages` is known, else in records (the log says which).
   */
  dropUnreadable(
    path: string,
    offset: number,
    from: number,
    to: number,
    messages: number | undefined,
    why: string,
  ): void {
    let first = true;
    let records = 0;
    for (let s = from; s < to; s++) {
      if (this.#closed || !this.#ledger.confirm(s, first ? (messages ?? 0) : 0)) continue;
      first = false;
      records++;
    }
    if (records === 0) return;
    this.#countLost(path, offset, from, to, messages, why);
    this.#disk("delete", () => this.#reclaim());
  }

  #countLost(
    path: string,
    offset: number,
    from: number,
    to: number,
    messages: number | undefined,
    why: string,
  ) {
    const records = to - from;
    this.#opts.log.error(
      { segment: path, offset, fromSeq: from, toSeq: to, records, readings: messages, why },
      messages === undefined
        ? "spool records damaged; dropped (their readings are unknown: counted as one per record)"
        : "spool records damaged; dropped",
    );
    this.#opts.onDrop?.("corrupt", records, messages ?? records);
  }

  /** Persists the cursor and closes the files; appends not yet durable are never settled (not PUBACKed). */
  close(): void {
    if (this.#closed) return;
    try {
      this.#cursor.write(this.#ledger.prefix, true);
    } catch (err) {
      // An older cursor only means readings sent again after the restart (the store's key absorbs them).
      this.#opts.log.warn({ err: (err as Error).message }, "spool cursor not saved at close");
    }
    this.#closed = true;
    clearInterval(this.#timer);
    clearTimeout(this.#retryTimer);
    this.#queue.clear();
    this.#log.close();
    releaseLock(this.#opts.dir);
  }
}
