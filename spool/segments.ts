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
  recordIntact,
  SEGMENT_HEADER_BYTES,
  type SegmentSummary,
  TRAILER_BYTES,
  TRAILER_MAGIC,
} from "./format.js";

const CHUNK_BYTES = 1_048_576;

/** What a scan found in one segment file. */
export interface SegmentScan {
  /** The first seq its header names; undefined when the header is torn or not a spool's. */
  readonly firstSeq: number | undefined;
  /** Records, messages and times of the good records (lastSeq = firstSeq - 1 when there are none). */
  readonly summary: SegmentSummary;
  /** Bytes from the file's start to the end of the last good record (the trailer excluded). */
  readonly goodBytes: number;
  readonly fileBytes: number;
  /** The trailer, when one closes the good records. */
  readonly trailer: SegmentSummary | undefined;
  /** Why the good data ends before the file does (torn or corrupt), or undefined when the whole file is good. */
  readonly problem: string | undefined;
  /** Messages in the good records whose seq is at least `countFrom`. */
  readonly messagesFrom: number;
}

/**
 * Reads a segment from start to end. `verify` checks each record's CRC (reading every payload); without it only
 * headers are read (the payloads are skipped, not checked). Never throws for a damaged file: `problem` says where
 * and why the good data ends. `countFrom` makes `messagesFrom` count only records at or after that seq.
 */
export function scanSegment(path: string, opts: { verify: boolean; countFrom?: number }): SegmentScan {
  const fd = openSync(path, "r");
  try {
    const fileBytes = fstatSync(fd).size;
    const head = Buffer.alloc(SEGMENT_HEADER_BYTES);
    const firstSeq =
      readSync(fd, head, 0, SEGMENT_HEADER_BYTES, 0) === SEGMENT_HEADER_BYTES
        ? parseSegmentHeader(head)
        : undefined;
    const empty = {
      records: 0,
      messages: 0,
      lastSeq: (firstSeq ?? 0) - 1,
      firstAppendedAt: 0,
      lastAppendedAt: 0,
    };
    if (firstSeq === undefined) {
      return {
        firstSeq,
        summary: empty,
        goodBytes: 0,
        fileBytes,
        trailer: undefined,
        problem: "segment header torn or missing",
        messagesFrom: 0,
      };
    }
    let offset = SEGMENT_HEADER_BYTES;
    let records = 0;
    let messages = 0;
    let messagesFrom = 0;
    let firstAppendedAt = 0;
    let lastAppendedAt = 0;
    let expected = firstSeq;
    let trailer: SegmentSummary | undefined;
    let problem: string | undefined;
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
    while (offset < fileBytes) {
      const word = bytesAt(offset, 4);
      if (word?.readUInt32BE(0) === TRAILER_MAGIC) {
        const t = bytesAt(offset, TRAILER_BYTES);
        trailer = t ? parseTrailer(Buffer.from(t)) : undefined;
        if (!trailer) problem = `torn trailer at byte ${offset}`;
        else if (trailer.records !== records || trailer.lastSeq !== expected - 1) {
          problem = `trailer at byte ${offset} disagrees with the records before it`;
          trailer = undefined;
        } else if (offset + TRAILER_BYTES !== fileBytes) problem = `bytes after the trailer at ${offset}`;
        break;
      }
      const h = bytesAt(offset, RECORD_HEADER_BYTES);
      const header = h ? parseRecordHeader(h) : undefined;
      if (!header) {
        problem =
          h && h.readUInt32BE(0) === RECORD_MAGIC
            ? `bad record header at byte ${offset}`
            : `torn or foreign bytes at byte ${offset}`;
        break;
      }
      if (header.seq !== expected) {
        problem = `record at byte ${offset} has seq ${header.seq}, expected ${expected}`;
        break;
      }
      const size = RECORD_HEADER_BYTES + header.length;
      if (offset + size > fileBytes) {
        problem = `record ${header.seq} torn at byte ${offset} (${fileBytes - offset} of ${size} bytes)`;
        break;
      }
      if (opts.verify) {
        const whole = bytesAt(offset, size);
        if (!whole || !recordIntact(whole)) {
          problem = `record ${header.seq} at byte ${offset} fails its CRC`;
          break;
        }
      }
      if (records === 0) firstAppendedAt = header.appendedAt;
      lastAppendedAt = header.appendedAt;
      records++;
      messages += header.messages;
      if (header.seq >= (opts.countFrom ?? 0)) messagesFrom += header.messages;
      expected++;
      offset += size;
    }
    return {
      firstSeq,
      summary: { records, messages, lastSeq: expected - 1, firstAppendedAt, lastAppendedAt },
      goodBytes: offset,
      fileBytes,
      trailer,
      problem,
      messagesFrom,
    };
  } finally {
    closeSync(fd);
  }
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
