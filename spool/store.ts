import { mkdirSync } from "node:fs";
import type { OutgoingBatch } from "../common/outgoing.js";
import { HEALTHY, type Health } from "../common/pipeline.js";
import { DiskFaults } from "./disk-faults.js";
import { SpoolEvents } from "./events.js";
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
import type { DropReason, SpoolDepth, SpoolOptions } from "./options.js";
import { SpoolReader } from "./reader.js";
import { type Segment, SegmentLog } from "./segment-log.js";
import type { Damage } from "./segments.js";

export type { DropReason, FullPolicy, SpoolDepth, SpoolOptions } from "./options.js";
export { SpoolReader, type SpoolRecord } from "./reader.js";
export { listSegments, readCursor };

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
  readonly #disk: DiskFaults;
  readonly #events: SpoolEvents;
  /** A record that cannot fit even in an empty spool and has nowhere else to go: held, unacknowledged. */
  #oversize: string | undefined;
  readonly #cursor: CursorFile;
  #closed = false;
  readonly #timer: NodeJS.Timeout;
  readonly #listeners = new Set<() => void>();

  private constructor(opts: SpoolOptions) {
    this.#opts = opts;
    this.#cursor = new CursorFile(opts.dir, CURSOR_EVERY_MS);
    this.#disk = new DiskFaults(opts.log, (failing) => this.#retry(failing));
    this.#events = new SpoolEvents(opts.log, opts.maxBytes, opts.onDrop);
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
      this.#events.damaged(path, tail),
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
    const failing = this.#disk.reason;
    if (failing) return { ready: false, reason: failing };
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

  /** Tries again the disk operations that failed (appends and seals by committing again). */
  #retry(failing: ReadonlySet<string>): void {
    if (this.#closed) return;
    if (failing.has("seal") && !this.#committing)
      this.#disk.run("seal", () => this.#log.sealIfDue(this.#next));
    if (failing.has("delete")) this.#disk.run("delete", () => this.#reclaim());
    if (failing.has("cursor")) this.#disk.run("cursor", () => this.#cursor.write(this.#ledger.prefix, true));
    void this.#commit();
  }

  async #commit(): Promise<void> {
    if (this.#committing || this.#closed) return;
    this.#committing = true;
    try {
      while (this.#queue.length > 0 && !this.#closed) {
        if (!this.#disk.run("seal", () => this.#log.sealIfDue(this.#next))) return;
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
              this.#events.policy("drop-newest", 1, p.messages);
              p.settle(false);
              continue;
            }
            if (group.length > 0) break; // write the group first; the next round makes room
            if (this.#opts.full === "drop-oldest") {
              let dropped: boolean;
              try {
                dropped = this.#dropOldest();
              } catch (err) {
                this.#disk.failed("delete", err);
                return;
              }
              if (dropped) {
                projected = this.#log.bytes;
                continue;
              }
            }
            // block: wait for the drain to free whole segments; an active segment holding records is sealed so that
            // it can be freed too.
            if (this.#log.active.records > 0 && !this.#disk.run("seal", () => this.#log.seal(this.#next)))
              return;
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
          await this.#log.write(
            group.map((g) => g.record),
            group.map((g) => g.pending.messages),
          );
        } catch (err) {
          if (this.#closed) return; // closed under the write: none of the group is acknowledged
          // Put the group back in order and retry with the data itself (after a failed fsync the kernel may have
          // dropped the dirty pages: fsyncing again would report success for data that is gone). What a failed
          // write left past the durable size is overwritten.
          this.#queue.unshift(group.map((g) => g.pending));
          this.#log.writeFailed();
          this.#disk.failed("append", err);
          return;
        }
        this.#disk.worked("append");
        for (const g of group) this.#ledger.added(g.pending.messages);
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
    const reason = this.#events.tooBig(
      size,
      p.messages,
      p.tooBig !== undefined,
      this.#oversize === undefined,
    );
    if (!p.tooBig) {
      this.#oversize = reason;
      return false;
    }
    this.#queue.shift();
    p.tooBig(size);
    return true;
  }

  #setFull(full: boolean): void {
    if (full === this.#full) return;
    this.#full = full;
    this.#events.full(full, this.#queue.length);
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
    if (dropped) this.#events.policy(reason, dropped.records, dropped.messages);
  }

  /**
   * Marks record `seq` as confirmed downstream; `messages` its message count. Once every record of a sealed
   * segment is done, the segment file is deleted. Ignores a seq already done or dropped.
   */
  markDone(seq: number, messages: number): void {
    if (this.#closed || !this.#ledger.confirm(seq, messages)) return;
    this.#disk.run("delete", () => this.#reclaim());
  }

  /** Deletes sealed segments every record of which is done; a blocked writer may go on. */
  #reclaim(): void {
    if (this.#log.removeDone(this.#ledger.prefix) && this.#full) void this.#commit();
  }

  #housekeeping(): void {
    if (this.#closed) return;
    const now = Date.now();
    if (!this.#committing && (this.#log.active.sealed || this.#log.oldEnough(now))) {
      this.#disk.run("seal", () => this.#log.seal(this.#next));
    }
    const segments = this.#log.segments;
    this.#disk.run("delete", () => {
      this.#reclaim();
      while (segments.length > 1) {
        const s = segments[0]!;
        if (!s.sealed || now - s.lastAppendedAt < this.#opts.maxAgeMs) break;
        this.#dropSegment(s, "max-age");
      }
    });
    this.#disk.run("cursor", () => this.#cursor.write(this.#ledger.prefix, false));
    if (this.#full) void this.#commit();
  }

  /** A reader of its own position (several may read at once). */
  reader(): SpoolReader {
    return new SpoolReader(this, () => this.#log.segments);
  }

  /**
   * The records of `damage` in segment file `segment` cannot be read: they count as dropped (`corrupt`), in readings
   * when the damage knows them, else one per record (the log says which). Records already done are not counted.
   */
  dropUnreadable(segment: string, damage: Damage): void {
    let records = 0;
    for (let s = damage.fromSeq; s < damage.toSeq; s++) {
      const messages = records === 0 ? (damage.messages ?? 0) : 0;
      if (!this.#closed && this.#ledger.confirm(s, messages)) records++;
    }
    if (records === 0) return;
    this.#events.damaged(segment, damage);
    this.#disk.run("delete", () => this.#reclaim());
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
    this.#disk.close();
    this.#queue.clear();
    this.#log.close();
    releaseLock(this.#opts.dir);
  }
}
