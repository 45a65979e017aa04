/**
 * Synchronous reading of segment files, shared by the spool at open and by `telemetry spool inspect|verify`: a scan
 * walks a segment's records in bounded memory (1 MiB chunks) and says where its good data ends.
 */
import { closeSync, fstatSync, openSync, readFileSync, readSync } from "node:fs";
import {
  parseRecordHeader,
  parseSegmentHeader,
  parseTrailer,
  RECORD_HEADER_BYTES,
  RECORD_MAGIC,
  type RecordHeader,
  recordIntact,
  SEGMENT_HEADER_BYTES,
  type SegmentSummary,
  TRAILER_BYTES,
  TRAILER_MAGIC,
} from "./format.js";

const CHUNK_BYTES = 1_048_576;
const MAGIC_BYTES = Buffer.from([0x53, 0x50, 0x52, 0x31]); // RECORD_MAGIC, big-endian

/** Why and where a stretch of records cannot be read, and where intact records go on. */
export interface Damage {
  /** Byte offset where the damage starts (the record that fails). */
  readonly offset: number;
  /** The first seq lost. */
  readonly fromSeq: number;
  /** The seq after the last lost: the next intact record's (or the segment's end). */
  readonly toSeq: number;
  /** Byte offset where intact data goes on (the next intact record, or the end of the records). */
  readonly resume: number;
  /** Readings lost, when known (from the trailer, or from a header whose record lines up); else undefined. */
  readonly messages: number | undefined;
  readonly why: string;
}

/** What a scan found in one segment file. */
export interface SegmentScan {
  /** The first seq its header names; undefined when the header is torn or not a spool's. */
  readonly firstSeq: number | undefined;
  /**
   * Records (seqs spanned, lost ones included), messages (intact ones, plus lost ones when known) and times of the
   * records up to the last intact one (lastSeq = firstSeq - 1 when there are none).
   */
  readonly summary: SegmentSummary;
  /** Bytes from the file's start to the end of the last intact record (the trailer excluded). */
  readonly goodBytes: number;
  readonly fileBytes: number;
  /** The trailer, when one closes the records. */
  readonly trailer: SegmentSummary | undefined;
  /** Damaged stretches followed by intact records or by the trailer: reading skips them (each costs its records). */
  readonly damage: readonly Damage[];
  /**
   * Why the data ends before the file does with nothing intact after it (a torn tail, cut at open), or undefined.
   * `tail` says what the cut costs: the torn record when its header is readable.
   */
  readonly problem: string | undefined;
  readonly tail: Damage | undefined;
  /** Messages in the intact records whose seq is at least `countFrom`. */
  readonly messagesFrom: number;
}

/**
 * Reads a segment from start to end. `verify` checks each record's CRC (reading every payload); without it only
 * headers are read (the payloads are skipped, not checked). Never throws for a damaged file. A record that fails
 * (bad header, wrong seq, CRC, torn) costs that record only: the scan looks forward for the next header whose seq
 * follows and whose CRC verifies, and goes on from there (`damage`); with nothing intact after it, the good data
 * ends there (`problem`, `tail`). `countFrom` makes `messagesFrom` count only records at or after that seq.
 */
export function scanSegment(path: string, opts: { verify: boolean; countFrom?: number }): SegmentScan {
  const fd = openSync(path, "r");
  try {
    return scanOpen(fd, opts);
  } finally {
    closeSync(fd);
  }
}

function scanOpen(fd: number, opts: { verify: boolean; countFrom?: number }): SegmentScan {
  const fileBytes = fstatSync(fd).size;
  let chunk = Buffer.alloc(CHUNK_BYTES);
  let chunkStart = 0;
  let chunkLength = 0;
  /** `n` bytes at `at`, from the chunk when it holds them, else read anew; undefined past the end of the file. */
  const bytesAt = (at: number, n: number): Buffer | undefined => {
    if (at + n > fileBytes) return undefined;
    if (at < chunkStart || at + n > chunkStart + chunkLength) {
      if (n > chunk.length) chunk = Buffer.alloc(n);
      chunkStart = at;
      chunkLength = readSync(fd, chunk, 0, Math.min(chunk.length, fileBytes - at), at);
    }
    return chunk.subarray(at - chunkStart, at - chunkStart + n);
  };
  const head = bytesAt(0, SEGMENT_HEADER_BYTES);
  const firstSeq = head ? parseSegmentHeader(Buffer.from(head)) : undefined;
  if (firstSeq === undefined) {
    return {
      firstSeq,
      summary: { records: 0, messages: 0, lastSeq: -1, firstAppendedAt: 0, lastAppendedAt: 0 },
      goodBytes: 0,
      fileBytes,
      trailer: undefined,
      damage: [],
      problem: "segment header torn or missing",
      tail: undefined,
      messagesFrom: 0,
    };
  }
  // A sealed segment ends with its trailer: the records end before it, and it names the last seq.
  const end0 =
    fileBytes >= SEGMENT_HEADER_BYTES + TRAILER_BYTES
      ? bytesAt(fileBytes - TRAILER_BYTES, TRAILER_BYTES)
      : undefined;
  const closing = end0 ? parseTrailer(Buffer.from(end0)) : undefined;
  const sealedTrailer = closing && closing.lastSeq >= firstSeq - 1 ? closing : undefined;
  const recordsEnd = sealedTrailer ? fileBytes - TRAILER_BYTES : fileBytes;
  const lastSeq = sealedTrailer ? sealedTrailer.lastSeq : Number.MAX_SAFE_INTEGER;

  /** The header at `at` when a whole record follows it within the records and (if `verify`) its CRC holds. */
  const intactAt = (at: number, checkCrc: boolean): RecordHeader | undefined => {
    const h = bytesAt(at, RECORD_HEADER_BYTES);
    const header = h ? parseRecordHeader(h) : undefined;
    if (!header || at + RECORD_HEADER_BYTES + header.length > recordsEnd) return undefined;
    if (checkCrc) {
      const whole = bytesAt(at, RECORD_HEADER_BYTES + header.length);
      if (!whole || !recordIntact(whole)) return undefined;
    }
    return header;
  };
  /** The next intact record after `from` whose seq lies in (`after`, lastSeq], found by its magic and CRC. */
  const resync = (from: number, after: number): { at: number; header: RecordHeader } | undefined => {
    for (let at = from; at + RECORD_HEADER_BYTES <= recordsEnd; ) {
      const window = bytesAt(at, Math.min(CHUNK_BYTES, recordsEnd - at));
      if (!window) return undefined;
      let i = window.indexOf(MAGIC_BYTES);
      while (i >= 0) {
        const header = intactAt(at + i, true);
        if (header && header.seq > after && header.seq <= lastSeq) return { at: at + i, header };
        // intactAt may have moved the chunk: take the window again
        const again = bytesAt(at, Math.min(CHUNK_BYTES, recordsEnd - at))!;
        i = again.indexOf(MAGIC_BYTES, i + 1);
      }
      at += Math.max(1, window.length - (MAGIC_BYTES.length - 1));
    }
    return undefined;
  };

  let offset = SEGMENT_HEADER_BYTES;
  let intact = 0;
  let intactMessages = 0;
  let messagesFrom = 0;
  let firstAppendedAt = 0;
  let lastAppendedAt = 0;
  let expected = firstSeq;
  let goodBytes = offset;
  let trailer: SegmentSummary | undefined;
  let problem: string | undefined;
  let tail: Damage | undefined;
  const damage: Damage[] = [];
  while (offset < recordsEnd) {
    const word = bytesAt(offset, 4);
    if (!sealedTrailer && word?.readUInt32BE(0) === TRAILER_MAGIC) {
      const t = bytesAt(offset, TRAILER_BYTES);
      trailer = t ? parseTrailer(Buffer.from(t)) : undefined;
      if (!trailer) problem = `torn trailer at byte ${offset}`;
      else if (trailer.lastSeq !== expected - 1) {
        problem = `trailer at byte ${offset} disagrees with the records before it`;
        trailer = undefined;
      } else problem = `bytes after the trailer at ${offset}`;
      break;
    }
    const h = bytesAt(offset, RECORD_HEADER_BYTES);
    const header = h ? parseRecordHeader(h) : undefined;
    const size = header ? RECORD_HEADER_BYTES + header.length : 0;
    let why: string | undefined;
    if (!header) {
      why = !h
        ? `torn record header at byte ${offset}`
        : h.readUInt32BE(0) === RECORD_MAGIC
          ? `bad record header at byte ${offset}`
          : `torn or foreign bytes at byte ${offset}`;
    } else if (header.seq !== expected) {
      why = `record at byte ${offset} has seq ${header.seq}, expected ${expected}`;
    } else if (offset + size > recordsEnd) {
      why = `record ${header.seq} torn at byte ${offset} (${recordsEnd - offset} of ${size} bytes)`;
    } else if (opts.verify && !intactAt(offset, true)) {
      why = `record ${header.seq} at byte ${offset} fails its CRC`;
    }
    if (why) {
      // A header that names this seq and the next intact record right after it: the record itself is what broke.
      const own = header && header.seq === expected ? header : undefined;
      const next = resync(offset, expected);
      if (next || sealedTrailer) {
        const toSeq = next ? next.header.seq : lastSeq + 1;
        const resume = next ? next.at : recordsEnd;
        const linedUp = own && toSeq === expected + 1 && offset + size === resume;
        damage.push({
          offset,
          fromSeq: expected,
          toSeq,
          resume,
          messages: linedUp ? own.messages : undefined,
          why,
        });
        expected = toSeq;
        offset = resume;
        goodBytes = offset;
        continue;
      }
      problem = why;
      tail = {
        offset,
        fromSeq: expected,
        toSeq: own ? expected + 1 : expected,
        resume: offset,
        messages: own?.messages,
        why,
      };
      break;
    }
    const ok = header!;
    if (intact === 0) firstAppendedAt = ok.appendedAt;
    lastAppendedAt = ok.appendedAt;
    intact++;
    intactMessages += ok.messages;
    if (ok.seq >= (opts.countFrom ?? 0)) messagesFrom += ok.messages;
    expected++;
    offset += size;
    goodBytes = offset;
  }
  if (sealedTrailer) {
    trailer = sealedTrailer;
    if (expected !== sealedTrailer.lastSeq + 1) {
      problem ??= `trailer names seq ${sealedTrailer.lastSeq}, the records end at ${expected - 1}`;
    }
    // The trailer counts every reading: what the intact records lack is what the damage cost. When the headers of
    // the damaged records do not add up to it (one is unreadable, or the flipped byte is in its count), the total
    // stays exact and goes to the first stretch: which stretch lost how many is then not known.
    const lostTotal = Math.max(0, sealedTrailer.messages - intactMessages);
    const fromHeaders = damage.reduce((n, d) => n + (d.messages ?? Number.NaN), 0);
    if (damage.length > 0 && fromHeaders !== lostTotal) {
      for (const [k, d] of damage.entries()) damage[k] = { ...d, messages: k === 0 ? lostTotal : 0 };
    }
  }
  const lost = damage.reduce((n, d) => n + (d.messages ?? 0), 0);
  return {
    firstSeq,
    summary: {
      records: expected - firstSeq,
      messages: sealedTrailer ? sealedTrailer.messages : intactMessages + lost,
      lastSeq: expected - 1,
      firstAppendedAt: sealedTrailer && intact > 0 ? sealedTrailer.firstAppendedAt : firstAppendedAt,
      lastAppendedAt: sealedTrailer ? sealedTrailer.lastAppendedAt : lastAppendedAt,
    },
    goodBytes,
    fileBytes,
    trailer,
    damage,
    problem,
    tail,
    messagesFrom,
  };
}

/**
 * The trailer of a sealed segment read from its last 48 bytes (no scan), or undefined when the file does not end
 * with an intact trailer.
 */
export function readTrailer(path: string): SegmentSummary | undefined {
  const fd = openSync(path, "r");
  try {
    const size = fstatSync(fd).size;
    if (size < SEGMENT_HEADER_BYTES + TRAILER_BYTES) return undefined;
    const b = Buffer.alloc(TRAILER_BYTES);
    readSync(fd, b, 0, TRAILER_BYTES, size - TRAILER_BYTES);
    return parseTrailer(b);
  } finally {
    closeSync(fd);
  }
}

/**
 * Every intact record of a segment with its payload, in order, stopping at the first damaged one: for offline
 * tools and tests (it holds the whole segment's records in memory, at most one segment).
 */
export function readSegmentRecords(path: string): { seq: number; messages: number; payload: Buffer }[] {
  const bytes = readFileSync(path);
  const out: { seq: number; messages: number; payload: Buffer }[] = [];
  let offset = SEGMENT_HEADER_BYTES;
  while (offset + RECORD_HEADER_BYTES <= bytes.length) {
    const header = parseRecordHeader(bytes.subarray(offset, offset + RECORD_HEADER_BYTES));
    if (!header) break;
    const size = RECORD_HEADER_BYTES + header.length;
    const whole = bytes.subarray(offset, offset + size);
    if (whole.length < size || !recordIntact(whole)) break;
    out.push({ seq: header.seq, messages: header.messages, payload: whole.subarray(RECORD_HEADER_BYTES) });
    offset += size;
  }
  return out;
}
