import { describe, expect, it } from "vitest";
import type { OutgoingBatch } from "../../common/outgoing.js";
import {
  decodeBatch,
  encodeBatch,
  encodeRecord,
  encodeTrailer,
  parseRecordHeader,
  parseSegmentName,
  parseTrailer,
  RECORD_HEADER_BYTES,
  recordIntact,
  segmentName,
} from "../../spool/format.js";

const batch: OutgoingBatch = [
  { route: "readings", datum: Buffer.from([1, 2, 3]), messageId: undefined, receivedAt: 1_700_000_000_123 },
  { route: "readings", datum: Buffer.from("datum"), messageId: "id-ü", receivedAt: 1_700_000_000_124 },
  {
    route: "rejected",
    body: Buffer.from("not json"),
    properties: {
      contentType: "application/octet-stream",
      timestamp: 1_700_000_000,
      headers: { topic: "a/b", reason: "bad" },
    },
    receivedAt: 1_700_000_000_125,
  },
];

describe("spool record format", () => {
  it("gives back a batch exactly as it was spooled: datums, message ids, refused payloads with their headers", () => {
    expect(decodeBatch(encodeBatch(batch))).toEqual(batch);
    expect(decodeBatch(encodeBatch([]))).toEqual([]);
  });

  it("a record's CRC catches any flipped bit in its header or payload", () => {
    const record = encodeRecord(42, 1_700_000_000_000, 3, encodeBatch(batch));
    expect(recordIntact(record)).toBe(true);
    expect(parseRecordHeader(record)).toMatchObject({
      seq: 42,
      messages: 3,
      length: record.length - RECORD_HEADER_BYTES,
    });
    for (const at of [9, 20, RECORD_HEADER_BYTES, record.length - 1]) {
      const damaged = Buffer.from(record);
      damaged[at]! ^= 0x10;
      expect(recordIntact(damaged), `bit flipped at byte ${at}`).toBe(false);
    }
  });

  it("refuses a header that is not a record's (a torn write leaves zeros or foreign bytes)", () => {
    expect(parseRecordHeader(Buffer.alloc(RECORD_HEADER_BYTES))).toBeUndefined();
    expect(parseRecordHeader(Buffer.alloc(10))).toBeUndefined();
  });

  it("a trailer reads back, and a damaged one is refused", () => {
    const s = { records: 7, messages: 9, lastSeq: 106, firstAppendedAt: 1.5, lastAppendedAt: 2.5 };
    const t = encodeTrailer(s);
    expect(parseTrailer(t)).toEqual(s);
    t[5]! ^= 1;
    expect(parseTrailer(t)).toBeUndefined();
  });

  it("segment file names sort by their first seq and parse back", () => {
    expect(parseSegmentName(segmentName(12_345))).toBe(12_345);
    expect(segmentName(9) < segmentName(10)).toBe(true);
    expect(parseSegmentName("cursor")).toBeUndefined();
  });
});
