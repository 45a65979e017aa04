import type { Options } from "amqplib";

/**
 * What the gateway hands on for RabbitMQ, encoded before any sink so that whatever sits in front of the AMQP sink
 * (a spool) keeps it as it is: a reading as its Avro datum (the AMQP sink frames datums into batch or
 * single-reading messages), or a refused payload as the whole message for `<QUEUE>.rejected`. The AMQP sink adds
 * `persistent` and `mandatory`. Here, below `amqp/` and `spool/`, because both take it.
 */
export type OutgoingMessage =
  | {
      readonly route: "readings";
      readonly datum: Buffer;
      /** The reading's stable message id, for single-reading messages (unbatched); batches get their own. */
      readonly messageId: string | undefined;
      /** Gateway receive time, epoch ms, for the latency metric. */
      readonly receivedAt: number;
    }
  | {
      readonly route: "rejected";
      readonly body: Buffer;
      readonly properties: Options.Publish;
      readonly receivedAt: number;
    };

/** What the sink takes per delivery: every reading (or the refused payload) of one upstream item. */
export type OutgoingBatch = readonly OutgoingMessage[];

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
