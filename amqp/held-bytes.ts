import type { OutgoingBatch } from "./sink.js";

/**
 * What one reading or refused payload costs in memory beside its bytes while it waits for its confirm: the message
 * object, the Buffer around its datum, its entry in the pending queue (about 280 bytes measured on Node 20 for a
 * batch of 8,000 readings, rounded up for the allocator's slack).
 */
export const HELD_BYTES_PER_MESSAGE = 320;

/** About the bytes `batch` holds in memory until it is confirmed: for a byte budget, not an exact figure. */
export function heldBytes(batch: OutgoingBatch): number {
  let bytes = batch.length * HELD_BYTES_PER_MESSAGE;
  for (const m of batch) bytes += m.route === "readings" ? m.datum.length : m.body.length;
  return bytes;
}
