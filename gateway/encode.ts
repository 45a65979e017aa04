import { createHash } from "node:crypto";
import type { OutgoingBatch, OutgoingMessage } from "../common/outgoing.js";
import type { Reading, SchemaRegistry } from "../schemas/index.js";

/** Content type of every message on `<QUEUE>`: Avro single-object encoding. */
export const AVRO_CONTENT_TYPE = "application/vnd.apache.avro+binary";
const RAW_CONTENT_TYPE = "application/octet-stream";

/** What validation makes of one MQTT message: its readings, or its raw payload refused with the reason. */
export type Envelope =
  | { readonly kind: "readings"; readonly readings: readonly Reading[] }
  | {
      readonly kind: "rejected";
      readonly topic: string;
      readonly payload: Buffer;
      readonly reason: string;
      readonly receivedAt: number;
    };

/** The stable message id of a reading: the same (device, sensor, ts) always gets the same id. */
export function messageIdOf(r: Pick<Reading, "device_id" | "sensor" | "ts">): string {
  return createHash("sha256").update(`${r.device_id}\0${r.sensor}\0${r.ts}`).digest("base64url").slice(0, 32);
}

/**
 * The gateway's encode step: an envelope becomes what the AMQP sink publishes. Each reading becomes its Avro datum
 * with the current schema (the sink frames datums into batch messages, or into single-reading messages when
 * `singleMessageIds` is set, which then carry the reading's stable message id); a refused payload becomes its raw
 * bytes with the topic and the reason in headers, for `<QUEUE>.rejected`. Pure: no I/O, so a spool can keep its
 * output as it is.
 */
export function encodeEnvelope(
  envelope: Envelope,
  schemas: SchemaRegistry,
  gatewayId: string,
  singleMessageIds: boolean,
): OutgoingBatch {
  if (envelope.kind === "rejected") {
    return [
      {
        route: "rejected",
        body: envelope.payload,
        properties: {
          contentType: RAW_CONTENT_TYPE,
          timestamp: Math.floor(envelope.receivedAt / 1000),
          headers: {
            topic: envelope.topic,
            reason: envelope.reason,
            gateway_id: gatewayId,
            received_at: envelope.receivedAt,
          },
        },
        receivedAt: envelope.receivedAt,
      },
    ];
  }
  return envelope.readings.map(
    (r): OutgoingMessage => ({
      route: "readings",
      datum: schemas.encodeDatum(r),
      messageId: singleMessageIds ? messageIdOf(r) : undefined,
      receivedAt: r.received_at,
    }),
  );
}
