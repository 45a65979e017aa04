import { createHash } from "node:crypto";
import type { ConfirmChannel, Options } from "amqplib";
import { AmqpSession } from "../amqp/session.js";
import { declareTopology, type QueueType, queueNames } from "../amqp/topology.js";
import type { Logger } from "../common/log.js";
import type { Reading, SchemaRegistry } from "../schemas/index.js";

/** Content type of every message on `<QUEUE>`: Avro single-object encoding. */
export const AVRO_CONTENT_TYPE = "application/vnd.apache.avro+binary";
const RETRY_AFTER_NACK_MS = 1_000;

/** What the gateway hands downstream: the readings of one MQTT message, or that message's raw payload refused. */
export type Envelope =
  | { readonly kind: "readings"; readonly readings: readonly Reading[] }
  | {
      readonly kind: "rejected";
      readonly topic: string;
      readonly payload: Buffer;
      readonly reason: string;
      readonly receivedAt: number;
    };

/**
 * Where the gateway's input hands each message, with the function that acknowledges it upstream. `write` never
 * fails: the sink keeps the envelope until it is durable downstream (retrying across reconnects) and only then
 * calls `ack`, once. A future disk spool implements this same interface in front of the AMQP output.
 */
export interface ReadingSink {
  write(envelope: Envelope, ack: () => void): void;
  /** Envelopes written and not yet acknowledged. */
  readonly inFlight: number;
}

/** The stable message id of a reading: the same (device, sensor, ts) always gets the same id. */
export function messageIdOf(r: Pick<Reading, "device_id" | "sensor" | "ts">): string {
  return createHash("sha256").update(`${r.device_id}\0${r.sensor}\0${r.ts}`).digest("base64url").slice(0, 32);
}

interface Outgoing {
  readonly queue: string;
  readonly body: Buffer;
  readonly options: Options.Publish;
  readonly confirmed: () => void;
}

export interface AmqpOutputOptions {
  url: string;
  queue: string;
  queueType: QueueType;
  gatewayId: string;
  registry: SchemaRegistry;
  log: Logger;
  onConfirm?: (envelope: Envelope) => void;
}

/**
 * Publishes envelopes as persistent messages on a confirm channel, many in flight at once. A message whose
 * confirm fails (nack, channel or connection lost) is published again once the channel is back, so `ack` is
 * called for every envelope exactly once, after RabbitMQ has confirmed all its messages.
 */
export class AmqpOutput implements ReadingSink {
  readonly session: AmqpSession;
  #channel: ConfirmChannel | undefined;
  #pending: Outgoing[] = [];
  #pendingHead = 0;
  #waitingForDrain = false;
  #inFlight = 0;
  #retryTimer: NodeJS.Timeout | undefined;
  readonly #names;

  constructor(private readonly opts: AmqpOutputOptions) {
    this.#names = queueNames(opts.queue);
    this.session = new AmqpSession({
      url: opts.url,
      name: `telemetry-gateway ${opts.gatewayId}`,
      log: opts.log,
      onConnect: async (conn) => {
        const ch = await conn.createConfirmChannel();
        ch.on("error", (err: Error) => opts.log.warn({ err: err.message }, "amqp channel error"));
        ch.on("close", () => {
          if (this.#channel === ch) this.#channel = undefined;
          // A closed channel is useless on a live connection: close it so the session reconnects.
          conn.close().catch(() => undefined);
        });
        ch.on("drain", () => {
          this.#waitingForDrain = false;
          this.#flush();
        });
        await declareTopology(ch, opts.queue, opts.queueType);
        this.#channel = ch;
        this.#waitingForDrain = false;
        this.#flush();
      },
      onDisconnect: () => {
        this.#channel = undefined;
      },
    });
  }

  get inFlight(): number {
    return this.#inFlight;
  }

  /** Messages waiting to be (re)published because the channel is down or full. */
  get backlog(): number {
    return this.#pending.length - this.#pendingHead;
  }

  start(): Promise<void> {
    return this.session.start();
  }

  write(envelope: Envelope, ack: () => void): void {
    this.#inFlight++;
    const done = () => {
      this.#inFlight--;
      this.opts.onConfirm?.(envelope);
      ack();
    };
    if (envelope.kind === "rejected") {
      this.#enqueue({
        queue: this.#names.rejected,
        body: envelope.payload,
        options: {
          persistent: true,
          contentType: "application/octet-stream",
          timestamp: Math.floor(envelope.receivedAt / 1000),
          headers: {
            topic: envelope.topic,
            reason: envelope.reason,
            gateway_id: this.opts.gatewayId,
            received_at: envelope.receivedAt,
          },
        },
        confirmed: done,
      });
      return;
    }
    let remaining = envelope.readings.length;
    const one = () => {
      if (--remaining === 0) done();
    };
    for (const r of envelope.readings) {
      this.#enqueue({
        queue: this.#names.readings,
        body: this.opts.registry.encode(r),
        options: {
          persistent: true,
          contentType: AVRO_CONTENT_TYPE,
          messageId: messageIdOf(r),
          timestamp: Math.floor(r.received_at / 1000),
        },
        confirmed: one,
      });
    }
  }

  #enqueue(msg: Outgoing): void {
    if (this.#channel && !this.#waitingForDrain && this.backlog === 0) this.#publish(this.#channel, msg);
    else this.#pending.push(msg);
  }

  #publish(ch: ConfirmChannel, msg: Outgoing): void {
    const writable = ch.sendToQueue(msg.queue, msg.body, msg.options, (err) => {
      if (!err) {
        msg.confirmed();
        return;
      }
      // Nacked or lost with the channel: keep it and publish it again.
      this.#pending.push(msg);
      if (this.#channel === ch) this.#scheduleRetry();
    });
    if (!writable) this.#waitingForDrain = true;
  }

  #scheduleRetry(): void {
    if (this.#retryTimer) return;
    this.#retryTimer = setTimeout(() => {
      this.#retryTimer = undefined;
      this.#flush();
    }, RETRY_AFTER_NACK_MS);
  }

  #flush(): void {
    const ch = this.#channel;
    while (ch && this.#channel === ch && !this.#waitingForDrain && this.#pendingHead < this.#pending.length) {
      const msg = this.#pending[this.#pendingHead]!;
      this.#pendingHead++;
      this.#publish(ch, msg);
    }
    if (this.#pendingHead === this.#pending.length) {
      this.#pending = [];
      this.#pendingHead = 0;
    } else if (this.#pendingHead > 4_096 && this.#pendingHead * 2 > this.#pending.length) {
      this.#pending = this.#pending.slice(this.#pendingHead);
      this.#pendingHead = 0;
    }
  }

  /** Closes the connection; envelopes not yet confirmed are never acknowledged (the MQTT broker redelivers). */
  async close(): Promise<void> {
    clearTimeout(this.#retryTimer);
    await this.session.close();
  }
}
