import { createHash } from "node:crypto";
import type { OutgoingBatch, OutgoingMessage } from "../amqp/sink.js";
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
 * The gateway's encode step: an envelope becomes the AMQP messages that carry it, Avro single-object encoded
 * with the current schema (one message per reading) or, for a refused payload, its raw bytes with the topic and the
 * reason in headers for `<QUEUE>.rejected`. Pure: no I/O, so a spool can keep its output as it is.
 */
export function encodeEnvelope(
  envelope: Envelope,
  schemas: SchemaRegistry,
  gatewayId: string,
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
        readings: 0,
        receivedAt: envelope.receivedAt,
      },
    ];
  }
  return envelope.readings.map(
    (r): OutgoingMessage => ({
      route: "readings",
      body: schemas.encode(r),
      properties: {
        contentType: AVRO_CONTENT_TYPE,
        messageId: messageIdOf(r),
        timestamp: Math.floor(r.received_at / 1000),
      },
      readings: 1,
      receivedAt: r.received_at,
    }),
  );
}
