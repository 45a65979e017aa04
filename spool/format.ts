/**
 * The spool's on-disk format, pure (no I/O): a spool is a directory of segment files `<first seq>.seg`, each a
 * segment header then records, closed by a trailer once the next segment starts.
 *
 * segment header (16 B): magic "TSPOOLS1" (8), first seq u64
 * record (32 B + payload): magic u32, payload length u32, seq u64, appended-at f64 (epoch ms), messages u32,
 *   CRC-32 u32 over the 28 header bytes before it and the payload
 * trailer (48 B): magic u32, records u32, messages u32, 0 u32, last seq u64, first appended-at f64,
 *   last appended-at f64, CRC-32 u32 over the 40 bytes before it, 0 u32
 *
 * Seqs are consecutive within a segment and across segments. A record whose length, CRC or seq does not hold is
 * where the good data ends: at open, the newest segment is cut there (a torn write from a crash).
 */
import { crc32 } from "node:zlib";
import type { Options } from "amqplib";
import type { OutgoingBatch, OutgoingMessage } from "../common/outgoing.js";

export const SEGMENT_MAGIC = Buffer.from("TSPOOLS1", "latin1");
export const SEGMENT_HEADER_BYTES = 16;
export const RECORD_MAGIC = 0x5350_5231; // "SPR1"
export const RECORD_HEADER_BYTES = 32;
export const TRAILER_MAGIC = 0x5350_5445; // "SPTE"
export const TRAILER_BYTES = 48;
/** A record larger than this is corrupt (an MQTT message is at most 256 MiB; the gateway's are far smaller). */
export const MAX_RECORD_PAYLOAD = 268_435_456;
const SEGMENT_SUFFIX = ".seg";
const ROUTE_READINGS = 1;
const ROUTE_REJECTED = 2;
const NO_ID = 0xffff;

/** The file name of the segment whose first record is `firstSeq` (zero-padded so names sort by seq). */
export function segmentName(firstSeq: number): string {
  return `${String(firstSeq).padStart(16, "0")}${SEGMENT_SUFFIX}`;
}

/** The first seq a segment file name stands for, or undefined for any other file. */
export function parseSegmentName(name: string): number | undefined {
  const m = /^(\d{16})\.seg$/.exec(name);
  return m ? Number(m[1]) : undefined;
}

export function encodeSegmentHeader(firstSeq: number): Buffer {
  const b = Buffer.alloc(SEGMENT_HEADER_BYTES);
  SEGMENT_MAGIC.copy(b, 0);
  b.writeBigUInt64BE(BigInt(firstSeq), 8);
  return b;
}

/** The first seq a segment header holds, or undefined when the header is torn or not a spool's. */
export function parseSegmentHeader(b: Buffer): number | undefined {
  if (b.length < SEGMENT_HEADER_BYTES || !b.subarray(0, 8).equals(SEGMENT_MAGIC)) return undefined;
  return Number(b.readBigUInt64BE(8));
}

/** One record's header as read back. */
export interface RecordHeader {
  readonly seq: number;
  readonly length: number;
  readonly appendedAt: number;
  readonly messages: number;
  readonly crc: number;
}

/** A whole record: header, payload, CRC over both. */
export function encodeRecord(seq: number, appendedAt: number, messages: number, payload: Buffer): Buffer {
  const b = Buffer.allocUnsafe(RECORD_HEADER_BYTES + payload.length);
  b.writeUInt32BE(RECORD_MAGIC, 0);
  b.writeUInt32BE(payload.length, 4);
  b.writeBigUInt64BE(BigInt(seq), 8);
  b.writeDoubleBE(appendedAt, 16);
  b.writeUInt32BE(messages, 24);
  payload.copy(b, RECORD_HEADER_BYTES);
  b.writeUInt32BE(crc32(payload, crc32(b.subarray(0, 28))), 28);
  return b;
}

/** The header at `b`'s start, or undefined when it is not a record header (wrong magic, impossible length). */
export function parseRecordHeader(b: Buffer): RecordHeader | undefined {
  if (b.length < RECORD_HEADER_BYTES || b.readUInt32BE(0) !== RECORD_MAGIC) return undefined;
  const length = b.readUInt32BE(4);
  if (length > MAX_RECORD_PAYLOAD) return undefined;
  return {
    length,
    seq: Number(b.readBigUInt64BE(8)),
    appendedAt: b.readDoubleBE(16),
    messages: b.readUInt32BE(24),
    crc: b.readUInt32BE(28),
  };
}

/** Whether `record` (header and payload) matches the CRC its header holds. */
export function recordIntact(record: Buffer): boolean {
  if (record.length < RECORD_HEADER_BYTES) return false;
  const expected = crc32(record.subarray(RECORD_HEADER_BYTES), crc32(record.subarray(0, 28)));
  return record.readUInt32BE(28) === expected;
}

/** What a sealed segment holds, from its trailer (or a scan when the trailer is missing). */
export interface SegmentSummary {
  readonly records: number;
  readonly messages: number;
  readonly lastSeq: number;
  readonly firstAppendedAt: number;
  readonly lastAppendedAt: number;
}

export function encodeTrailer(s: SegmentSummary): Buffer {
  const b = Buffer.alloc(TRAILER_BYTES);
  b.writeUInt32BE(TRAILER_MAGIC, 0);
  b.writeUInt32BE(s.records, 4);
  b.writeUInt32BE(s.messages, 8);
  b.writeBigUInt64BE(BigInt(s.lastSeq), 16);
  b.writeDoubleBE(s.firstAppendedAt, 24);
  b.writeDoubleBE(s.lastAppendedAt, 32);
  b.writeUInt32BE(crc32(b.subarray(0, 40)), 40);
  return b;
}

/** The trailer in `b` (exactly its 48 bytes), or undefined when it is not an intact trailer. */
export function parseTrailer(b: Buffer): SegmentSummary | undefined {
  if (b.length !== TRAILER_BYTES || b.readUInt32BE(0) !== TRAILER_MAGIC) return undefined;
  if (b.readUInt32BE(40) !== crc32(b.subarray(0, 40))) return undefined;
  return {
    records: b.readUInt32BE(4),
    messages: b.readUInt32BE(8),
    lastSeq: Number(b.readBigUInt64BE(16)),
    firstAppendedAt: b.readDoubleBE(24),
    lastAppendedAt: b.readDoubleBE(32),
  };
}

/**
 * An outgoing batch as a record payload, exactly as the AMQP sink will take it: per message a route byte and the
 * receive time, then a reading's message id (or none) and datum, or a refused payload's publish properties (JSON)
 * and body.
 */
export function encodeBatch(batch: OutgoingBatch): Buffer {
  const parts: Buffer[] = [];
  const count = Buffer.alloc(4);
  count.writeUInt32BE(batch.length, 0);
  parts.push(count);
  for (const msg of batch) {
    const head = Buffer.alloc(9);
    head.writeUInt8(msg.route === "readings" ? ROUTE_READINGS : ROUTE_REJECTED, 0);
    head.writeDoubleBE(msg.receivedAt, 1);
    parts.push(head);
    if (msg.route === "readings") {
      const id = msg.messageId === undefined ? undefined : Buffer.from(msg.messageId, "utf8");
      const lens = Buffer.alloc(6);
      lens.writeUInt16BE(id ? id.length : NO_ID, 0);
      lens.writeUInt32BE(msg.datum.length, 2);
      parts.push(lens);
      if (id) parts.push(id);
      parts.push(msg.datum);
    } else {
      const props = Buffer.from(JSON.stringify(msg.properties), "utf8");
      const lens = Buffer.alloc(8);
      lens.writeUInt32BE(props.length, 0);
      lens.writeUInt32BE(msg.body.length, 4);
      parts.push(lens, props, msg.body);
    }
  }
  return Buffer.concat(parts);
}

/** The batch `encodeBatch` wrote; throws on a payload that is not one (the CRC makes that a bug, not bit rot). */
export function decodeBatch(payload: Buffer): OutgoingBatch {
  let at = 0;
  const need = (n: number) => {
    if (at + n > payload.length) throw new Error(`spool record payload truncated at byte ${at}`);
    const from = at;
    at += n;
    return from;
  };
  const count = payload.readUInt32BE(need(4));
  const out: OutgoingMessage[] = [];
  for (let i = 0; i < count; i++) {
    const route = payload.readUInt8(need(1));
    const receivedAt = payload.readDoubleBE(need(8));
    if (route === ROUTE_READINGS) {
      const idLength = payload.readUInt16BE(need(2));
      const datumLength = payload.readUInt32BE(need(4));
      let messageId: string | undefined;
      if (idLength !== NO_ID) {
        const from = need(idLength);
        messageId = payload.toString("utf8", from, from + idLength);
      }
      const from = need(datumLength);
      out.push({
        route: "readings",
        messageId,
        receivedAt,
        datum: Buffer.from(payload.subarray(from, from + datumLength)),
      });
    } else if (route === ROUTE_REJECTED) {
      const propsLength = payload.readUInt32BE(need(4));
      const bodyLength = payload.readUInt32BE(need(4));
      const p = need(propsLength);
      const properties = JSON.parse(payload.toString("utf8", p, p + propsLength)) as Options.Publish;
      const b = need(bodyLength);
      out.push({
        route: "rejected",
        properties,
        receivedAt,
        body: Buffer.from(payload.subarray(b, b + bodyLength)),
      });
    } else {
      throw new Error(`spool record holds an unknown route ${route}`);
    }
  }
  return out;
}
