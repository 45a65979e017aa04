import {
  closeSync,
  existsSync,
  fsyncSync,
  ftruncateSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  unlinkSync,
  writeFileSync,
  writeSync,
} from "node:fs";
import { type FileHandle, open } from "node:fs/promises";
import { join } from "node:path";
import { crc32 } from "node:zlib";
import type { OutgoingBatch } from "../amqp/sink.js";
import type { Logger } from "../common/log.js";
import { HEALTHY, type Health } from "../common/pipeline.js";
import {
  decodeBatch,
  encodeBatch,
  encodeRecord,
  encodeSegmentHeader,
  encodeTrailer,
  parseRecordHeader,
  parseSegmentName,
  RECORD_HEADER_BYTES,
  recordIntact,
  SEGMENT_HEADER_BYTES,
  segmentName,
  TRAILER_BYTES,
  TRAILER_MAGIC,
} from "./format.js";
import { readTrailer, scanSegment } from "./segments.js";

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

/** One record read back: its seq, and the batch exactly as it was appended. */
export interface SpoolRecord {
  readonly seq: number;
  readonly messages: number;
  readonly appendedAt: number;
  readonly batch: OutgoingBatch;
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

interface Segment {
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

interface Pending {
  readonly payload: Buffer;
  readonly messages: number;
  readonly settle: (stored: boolean) => void;
}

/** Segments are about 1/16 of SPOOL_MAX_BYTES: drop-oldest and reclaiming free space in steps of ~6 %. */
const SEGMENTS_PER_SPOOL = 16;
const MIN_SEGMENT_BYTES = 65_536;
const MAX_SEGMENT_BYTES = 67_108_864;
/** A segment is also sealed once its first record is this fraction of SPOOL_MAX_AGE old, so age drops are fine-grained. */
const AGE_STEPS = 16;
/** Records written per fsync at most (a group commit): bounds the memory of one write. */
const GROUP_MAX_BYTES = 4_194_304;
const HOUSEKEEPING_MS = 1_000;
/** The cursor is rewritten at most this often: a stale cursor only means duplicates after a crash. */
const CURSOR_EVERY_MS = 200;
const RETRY_WRITE_MS = 1_000;
const CURSOR_FILE = "cursor";
const LOCK_FILE = "lock";
const CURSOR_MAGIC = 0x5350_4331; // "SPC1"
const READ_CHUNK_BYTES = 1_048_576;

function fsyncDir(dir: string): void {
  const fd = openSync(dir, "r");
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

/** The seq the cursor file names (the first not done), or undefined when it is missing or damaged. */
export function readCursor(dir: string): number | undefined {
  const path = join(dir, CURSOR_FILE);
  if (!existsSync(path)) return undefined;
  const b = readFileSync(path);
  if (
    b.length !== 16 ||
    b.readUInt32BE(12) !== CURSOR_MAGIC ||
    b.readUInt32BE(8) !== crc32(b.subarray(0, 8))
  ) {
    return undefined;
  }
  return Number(b.readBigUInt64BE(0));
}

/** The segment files of a spool directory, oldest first. */
export function listSegments(dir: string): { first: number; path: string }[] {
  return readdirSync(dir)
    .map((name) => ({ first: parseSegmentName(name), path: join(dir, name) }))
    .filter((s): s is { first: number; path: string } => s.first !== undefined)
    .sort((a, b) => a.first - b.first);
}

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
  readonly #segmentBytes: number;
  readonly #segments: Segment[] = [];
  #active!: Segment;
  #handle: FileHandle | undefined;
  /** The seq the next record gets. */
  #next = 0;
  /** Records below this seq are durable and readable. */
  #durableEnd = 0;
  /** The first seq not yet done; seqs above it that are done, as sorted [from, to) ranges. */
  #prefix = 0;
  #doneAbove: [number, number][] = [];
  #depthMessages = 0;
  #queue: Pending[] = [];
  #committing = false;
  #full = false;
  #failing: string | undefined;
  #cursorWritten = -1;
  #cursorAt = 0;
  #closed = false;
  #retryTimer: NodeJS.Timeout | undefined;
  readonly #timer: NodeJS.Timeout;
  readonly #listeners = new Set<() => void>();

  private constructor(opts: SpoolOptions) {
    this.#opts = opts;
    this.#segmentBytes = Math.min(
      MAX_SEGMENT_BYTES,
      Math.max(MIN_SEGMENT_BYTES, Math.floor(opts.maxBytes / SEGMENTS_PER_SPOOL)),
    );
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
    const { dir, log } = this.#opts;
    mkdirSync(dir, { recursive: true });
    takeLock(dir);
    const files = listSegments(dir);
    const cursor = readCursor(dir);
    for (const [i, f] of files.entries()) {
      const last = i === files.length - 1;
      const trailer = last ? undefined : readTrailer(f.path);
      if (trailer) {
        this.#segments.push({
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
      this.#segments.push({
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
    const newest = this.#segments.at(-1);
    this.#next = newest ? newest.first + newest.records : (cursor ?? 0);
    this.#durableEnd = this.#next;
    const oldest = this.#segments[0];
    this.#prefix = Math.min(this.#next, Math.max(cursor ?? 0, oldest?.first ?? this.#next));
    this.#depthMessages = 0;
    for (const s of this.#segments) {
      const end = s.first + s.records;
      if (end <= this.#prefix) continue;
      this.#depthMessages +=
        s.first >= this.#prefix
          ? s.messages
          : scanSegment(s.path, { verify: false, countFrom: this.#prefix }).messagesFrom;
    }
    this.#reclaim();
    this.#startSegment();
  }

  #startSegment(): void {
    const path = join(this.#opts.dir, segmentName(this.#next));
    const fd = openSync(path, "w");
    try {
      writeSync(fd, encodeSegmentHeader(this.#next));
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    fsyncDir(this.#opts.dir);
    this.#active = {
      first: this.#next,
      path,
      size: SEGMENT_HEADER_BYTES,
      records: 0,
      messages: 0,
      firstAppendedAt: 0,
      lastAppendedAt: 0,
      sealed: false,
    };
    this.#segments.push(this.#active);
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
    return this.#prefix;
  }

  /** The oldest seq still on disk. */
  get firstOnDisk(): number {
    return this.#segments[0]?.first ?? this.#next;
  }

  /** Appends waiting for space (block policy) or for their fsync. */
  get waiting(): number {
    return this.#queue.length;
  }

  get full(): boolean {
    return this.#full;
  }

  depth(): SpoolDepth {
    let bytes = 0;
    for (const s of this.#segments) bytes += s.size;
    const oldestSeg = this.#segments.find((s) => s.first + s.records > this.#prefix);
    return {
      records: this.#durableEnd - this.#prefix - this.#doneAbove.reduce((n, [a, b]) => n + b - a, 0),
      messages: this.#depthMessages,
      bytes,
      segments: this.#segments.length,
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
        this.#rollIfDue();
        const group: { pending: Pending; record: Buffer }[] = [];
        let groupBytes = 0;
        let projected = this.#bytesOnDisk();
        // A group stays within the active segment's size, so segments (the unit of reclaiming) keep their size.
        const room = Math.min(GROUP_MAX_BYTES, this.#segmentBytes - this.#active.size);
        while (this.#queue.length > 0 && (group.length === 0 || groupBytes < room)) {
          const p = this.#queue[0]!;
          const size = RECORD_HEADER_BYTES + p.payload.length;
          if (projected + size + TRAILER_BYTES > this.#opts.maxBytes) {
            if (this.#opts.full === "drop-oldest" && this.#dropOldest()) {
              projected = this.#bytesOnDisk() + groupBytes;
              continue;
            }
            if (this.#opts.full === "block" && group.length === 0 && this.#segments.length > 1) {
              this.#setFull(true);
              return;
            }
            if (this.#opts.full === "block" && group.length > 0) break;
            if (this.#opts.full !== "block" || this.#segments.length === 1) {
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
        const handle = await this.#activeHandle();
        try {
          await handle.writev(
            group.map((g) => g.record),
            this.#active.size,
          );
          await handle.datasync();
        } catch (err) {
          if (this.#closed) return; // closed under the write: none of the group is acknowledged
          // Put the group back in order and retry; what a failed write left past the durable size is overwritten.
          this.#queue.unshift(...group.map((g) => g.pending));
          this.#failing = (err as Error).message;
          this.#opts.log.error({ err: this.#failing }, "spool write failed; PUBACKs held, retrying");
          this.#retryTimer = setTimeout(() => void this.#commit(), RETRY_WRITE_MS);
          return;
        }
        this.#failing = undefined;
        const a = this.#active;
        for (const g of group) {
          const at = g.record.readDoubleBE(16);
          if (a.records === 0) a.firstAppendedAt = at;
          a.lastAppendedAt = at;
          a.records++;
          a.messages += g.pending.messages;
          this.#depthMessages += g.pending.messages;
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

  #bytesOnDisk(): number {
    let n = 0;
    for (const s of this.#segments) n += s.size;
    return n;
  }

  async #activeHandle(): Promise<FileHandle> {
    this.#handle ??= await open(this.#active.path, "r+");
    return this.#handle;
  }

  /** Seals the active segment when it is big or old enough, and starts the next one. */
  #rollIfDue(): void {
    const a = this.#active;
    const old = a.records > 0 && Date.now() - a.firstAppendedAt >= this.#opts.maxAgeMs / AGE_STEPS;
    if (a.size < this.#segmentBytes && !old) return;
    if (a.records === 0) return;
    this.#seal();
  }

  #seal(): void {
    const a = this.#active;
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
    const old = this.#handle;
    this.#handle = undefined;
    old?.close().catch(() => undefined);
    this.#startSegment();
  }

  /** Drops the oldest sealed segment for room (drop-oldest); false when only the active one is left. */
  #dropOldest(): boolean {
    if (this.#active.records > 0 && this.#segments.length === 1) this.#seal();
    const victim = this.#segments[0];
    if (!victim || victim === this.#active) return false;
    this.#dropSegment(victim, "drop-oldest");
    return true;
  }

  #dropSegment(victim: Segment, reason: DropReason): void {
    const end = victim.first + victim.records;
    let records = 0;
    let messages = 0;
    if (end > this.#prefix) {
      const countFrom = Math.max(victim.first, this.#prefix);
      messages =
        countFrom === victim.first
          ? victim.messages
          : scanSegment(victim.path, { verify: false, countFrom }).messagesFrom;
      records = end - countFrom;
      for (const [a, b] of this.#doneAbove) records -= Math.max(0, Math.min(b, end) - Math.max(a, countFrom));
    }
    this.#segments.shift();
    unlinkSync(victim.path);
    if (end > this.#prefix) {
      this.#depthMessages = Math.max(0, this.#depthMessages - messages);
      this.#advanceTo(end);
      this.#opts.onDrop?.(reason, records, messages);
      this.#dropLog(reason, records, messages);
    }
  }

  /** Everything below `seq` counts as done (dropped). */
  #advanceTo(seq: number): void {
    if (seq <= this.#prefix) return;
    this.#prefix = seq;
    this.#doneAbove = this.#doneAbove.filter(([, b]) => b > seq).map(([a, b]) => [Math.max(a, seq), b]);
    this.#mergePrefix();
  }

  #mergePrefix(): void {
    while (this.#doneAbove[0] && this.#doneAbove[0][0] <= this.#prefix) {
      this.#prefix = Math.max(this.#prefix, this.#doneAbove.shift()![1]);
    }
  }

  /**
   * Marks record `seq` as confirmed downstream; `messages` its message count. Once every record of a sealed
   * segment is done, the segment file is deleted. Ignores a seq already done or dropped.
   */
  markDone(seq: number, messages: number): void {
    if (seq < this.#prefix || this.#closed) return;
    const ranges = this.#doneAbove;
    let i = ranges.length - 1;
    while (i >= 0 && ranges[i]![0] > seq) i--;
    const at = ranges[i];
    if (at && seq < at[1]) return; // already done
    this.#depthMessages = Math.max(0, this.#depthMessages - messages);
    if (at && at[1] === seq) at[1] = seq + 1;
    else ranges.splice(i + 1, 0, [seq, seq + 1]);
    const j = at && at[1] === seq + 1 ? i : i + 1;
    const cur = ranges[j]!;
    const nxt = ranges[j + 1];
    if (nxt && nxt[0] === cur[1]) {
      cur[1] = nxt[1];
      ranges.splice(j + 1, 1);
    }
    this.#mergePrefix();
    this.#reclaim();
  }

  /** Deletes sealed segments every record of which is done; a blocked writer may go on. */
  #reclaim(): void {
    let freed = false;
    while (this.#segments.length > 0) {
      const s = this.#segments[0]!;
      if (!s.sealed || s.first + s.records > this.#prefix) break;
      this.#segments.shift();
      unlinkSync(s.path);
      freed = true;
    }
    if (freed && this.#full) void this.#commit();
  }

  #housekeeping(): void {
    if (this.#closed) return;
    const now = Date.now();
    const a = this.#active;
    if (!this.#committing && a.records > 0 && now - a.firstAppendedAt >= this.#opts.maxAgeMs / AGE_STEPS) {
      this.#seal();
    }
    while (this.#segments.length > 1) {
      const s = this.#segments[0]!;
      if (!s.sealed || now - s.lastAppendedAt < this.#opts.maxAgeMs) break;
      this.#dropSegment(s, "max-age");
    }
    this.#writeCursor(false);
    if (this.#full) void this.#commit();
  }

  #writeCursor(force: boolean): void {
    if (this.#prefix === this.#cursorWritten) return;
    if (!force && Date.now() - this.#cursorAt < CURSOR_EVERY_MS) return;
    const b = Buffer.alloc(16);
    b.writeBigUInt64BE(BigInt(this.#prefix), 0);
    b.writeUInt32BE(crc32(b.subarray(0, 8)), 8);
    b.writeUInt32BE(CURSOR_MAGIC, 12);
    const tmp = join(this.#opts.dir, `${CURSOR_FILE}.tmp`);
    // No fsync: a cursor lost in a power cut is an older one, and older only means readings sent again (the
    // store's key absorbs them). The rename makes a process crash leave the old cursor or the new one, never half.
    writeFileSync(tmp, b);
    renameSync(tmp, join(this.#opts.dir, CURSOR_FILE));
    this.#cursorWritten = this.#prefix;
    this.#cursorAt = Date.now();
  }

  /** A reader of its own position (several may read at once). */
  reader(): SpoolReader {
    return new SpoolReader(this, () => this.#segments);
  }

  /** Records `from` .. `to` (exclusive) cannot be read (a corrupt record): they count as dropped. */
  dropUnreadable(from: number, to: number, why: string): void {
    const records = Math.max(0, to - Math.max(from, this.#prefix));
    this.#opts.log.error({ from, to, why }, "spool records unreadable; dropped");
    this.#opts.onDrop?.("corrupt", records, 0);
    for (let s = from; s < to; s++) this.markDone(s, 0);
  }

  /** Persists the cursor and closes the files; appends not yet durable are never settled (not PUBACKed). */
  close(): void {
    if (this.#closed) return;
    this.#writeCursor(true);
    this.#closed = true;
    clearInterval(this.#timer);
    clearTimeout(this.#retryTimer);
    this.#queue = [];
    this.#handle?.close().catch(() => undefined);
    this.#handle = undefined;
    rmSync(join(this.#opts.dir, LOCK_FILE), { force: true });
  }
}

/**
 * Claims the directory for this process: two gateways appending to one spool would interleave their records. The
 * lock file names the owner's pid; a lock whose process is gone (killed) is taken over. Best effort on one host: a
 * pid is not unique across containers sharing a volume.
 */
function takeLock(dir: string): void {
  const path = join(dir, LOCK_FILE);
  if (existsSync(path)) {
    const owner = Number(readFileSync(path, "utf8").trim());
    if (Number.isSafeInteger(owner) && owner > 0 && owner !== process.pid && processAlive(owner)) {
      throw new Error(
        `spool ${dir} is in use by process ${owner} (another gateway?); give each gateway its own SPOOL_PATH`,
      );
    }
  }
  writeFileSync(path, `${process.pid}\n`);
}

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}

/** Information a reader needs about one segment. */
type SegmentView = Pick<Segment, "first" | "path" | "size" | "records" | "sealed">;

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
    private readonly store: SpoolStore,
    private readonly segments: () => readonly SegmentView[],
  ) {}

  /**
   * Up to `max` durable records with seq in [`from`, `to`), in order. `next` is where to read on: past the last
   * record returned, or past records that no longer exist (dropped) or cannot be read (counted as dropped).
   */
  async read(from: number, to: number, max: number): Promise<{ records: SpoolRecord[]; next: number }> {
    const records: SpoolRecord[] = [];
    const end = Math.min(to, this.store.durableEnd);
    let pos = Math.max(from, this.store.firstOnDisk);
    while (records.length < max && pos < end) {
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
          this.#corrupt(seg, `bad record header at byte ${this.#offset + off}`);
          pos = seg.first + seg.records;
          progressed = true;
          break;
        }
        const size = RECORD_HEADER_BYTES + h.length;
        let whole: Buffer;
        if (off + size <= bytesRead) whole = chunk.subarray(off, off + size);
        else if (off > 0)
          break; // read on from this record
        else {
          whole = Buffer.allocUnsafe(size);
          await this.#handle!.read(whole, 0, size, this.#offset);
        }
        if (!recordIntact(whole)) {
          this.#corrupt(seg, `record ${h.seq} fails its CRC`);
          pos = seg.first + seg.records;
          progressed = true;
          break;
        }
        if (h.seq >= pos) {
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

  #corrupt(seg: SegmentView, why: string): void {
    this.store.dropUnreadable(this.#at, seg.first + seg.records, `${seg.path}: ${why}`);
    this.#offset = seg.sealed ? seg.size - TRAILER_BYTES : seg.size;
    this.#at = seg.first + seg.records;
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
