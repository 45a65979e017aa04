/** Reading a spool's segment files as bytes, for the tests that damage them on purpose. */
import { readFileSync } from "node:fs";
import { RECORD_HEADER_BYTES, RECORD_MAGIC, SEGMENT_HEADER_BYTES } from "../../spool/format.js";

/** The byte offset of each record in the segment file at `path`, in order, up to the first that is not one. */
export function recordOffsets(path: string): number[] {
  const bytes = readFileSync(path);
  const out: number[] = [];
  for (let at = SEGMENT_HEADER_BYTES; at + RECORD_HEADER_BYTES <= bytes.length; ) {
    if (bytes.readUInt32BE(at) !== RECORD_MAGIC) break;
    out.push(at);
    at += RECORD_HEADER_BYTES + bytes.readUInt32BE(at + 4);
  }
  return out;
}
