import type { ConfirmChannel, ConsumeMessage } from "amqplib";
import { backoffDelay, sleep } from "../common/backoff.js";
import type { Logger } from "../common/log.js";

/** What `AmqpInput` (input.ts) keeps per channel it consumes on. */
export interface Consuming {
  readonly ch: ConfirmChannel;
  readonly acks: AckCoalescer;
  /** Deliveries not settled yet, by delivery tag, with what settles each: what `pause()` hands back. */
  readonly unsettled: Map<number, { readonly msg: ConsumeMessage; readonly settle: () => void }>;
  consumerTag: string | undefined;
  /** Returns seen on the channel: a dead letter confirmed after one was not necessarily routed. */
  returns: number;
  /** The prefetch the current consumer subscribed with. */
  prefetch: number;
}

/** How long a cancel or a channel close waits for RabbitMQ to answer (a hung broker never does). */
const BROKER_ANSWER_MS = 2_000;
const COPY_RETRY_MIN_MS = 100;
const COPY_RETRY_MAX_MS = 5_000;

/**
 * Acks in bulk: acks given in any order are sent as one `basic.ack` with `multiple` for the longest run of settled
 * delivery tags, once per turn of the event loop. A batch of 500 committed deliveries costs one frame, not 500.
 */
export class AckCoalescer {
  #low = 1;
  readonly #settled = new Map<number, ConsumeMessage>();
  #scheduled = false;

  constructor(private readonly ch: ConfirmChannel) {}

  settle(msg: ConsumeMessage): void {
    this.#settled.set(msg.fields.deliveryTag, msg);
    if (this.#scheduled) return;
    this.#scheduled = true;
    queueMicrotask(() => this.#flush());
  }

  #flush(): void {
    this.#scheduled = false;
    let last: ConsumeMessage | undefined;
    for (let tag = this.#low; ; tag++) {
      const msg = this.#settled.get(tag);
      if (!msg) break;
      this.#settled.delete(tag);
      last = msg;
    }
    if (!last) return;
    this.#low = last.fields.deliveryTag + 1;
    this.ch.ack(last, true);
  }
}

/**
 * Publishes `body` to `queue` on the consuming channel with `msg`'s properties and `headers`, persistent and
 * mandatory, retried with backoff until RabbitMQ confirms it (a confirm after a return does not count: not routed);
 * true once confirmed, false once `current()` says the channel went (its deliveries then come again).
 */
export async function publishCopy(
  consuming: Consuming,
  current: () => boolean,
  log: Logger,
  msg: ConsumeMessage,
  queue: string,
  body: Buffer,
  headers: Record<string, unknown>,
): Promise<boolean> {
  const p = msg.properties;
  for (let attempt = 1; current(); attempt++) {
    const returnsBefore = consuming.returns;
    const confirmed = await new Promise<boolean>((resolve) => {
      consuming.ch.publish(
        "",
        queue,
        body,
        {
          persistent: true,
          mandatory: true,
          contentType: p.contentType,
          messageId: p.messageId,
          timestamp: p.timestamp,
          headers,
        },
        (err) => resolve(!err && consuming.returns === returnsBefore),
      );
    });
    if (confirmed) return true;
    if (!current()) break;
    log.warn({ attempt, queue }, "copy not taken by rabbitmq; retrying");
    await sleep(backoffDelay(attempt, COPY_RETRY_MIN_MS, COPY_RETRY_MAX_MS));
  }
  return false;
}

/** Waits for `p` (its failure ignored) at most 2 s: for a cancel or a close that a hung broker never answers. */
export async function bounded(p: Promise<unknown>): Promise<void> {
  const timeout = new AbortController();
  await Promise.race([p.catch(() => undefined), sleep(BROKER_ANSWER_MS, timeout.signal)]);
  timeout.abort();
}
