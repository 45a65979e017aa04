/** CRC-64-AVRO, the fingerprint single-object encoding writes before every datum. */

const CRC64_EMPTY = 0xc15d213aa4d7a795n;
const CRC64_MASK = 0xffffffffffffffffn;
const CRC64_TABLE: readonly bigint[] = Array.from({ length: 256 }, (_, i) => {
  let fp = BigInt(i);
  for (let j = 0; j < 8; j++) fp = (fp >> 1n) ^ (CRC64_EMPTY & (-(fp & 1n) & CRC64_MASK));
  return fp;
});

/**
 * CRC-64-AVRO, the Rabin fingerprint of the Avro specification (EMPTY = 0xc15d213aa4d7a795), of the bytes of
 * `data` (a string is taken as UTF-8). Returned as 8 bytes, little-endian: the order single-object encoding writes.
 */
export function crc64Avro(data: Buffer | string): Buffer {
  const bytes = typeof data === "string" ? Buffer.from(data, "utf8") : data;
  let fp = CRC64_EMPTY;
  for (const b of bytes) fp = (fp >> 8n) ^ CRC64_TABLE[Number((fp ^ BigInt(b)) & 0xffn)]!;
  const out = Buffer.alloc(8);
  out.writeBigUInt64LE(fp);
  return out;
}
