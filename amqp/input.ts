import type { ConsumeMessage, MessageProperties } from "amqplib";
import { sleep } from "../common/backoff.js";
import type { Logger } from "../common/log.js";
import { type FailableDelivery, type Failure, HEALTHY, type Health, type Input } from "../common/pipeline.js";
import { ProgressWatch } from "../common/progress-watch.js";
import { RateLimitedLog } from "../common/rate-limited-log.js";
import type { TlsMaterial } from "../common/tls.js";
import { AckCoalescer, bounded, type Consuming, publishCopy } from "./consumer-channel.js";
import { AmqpSession } from "./session.js";
import { declareTopologyOn, type QueueType, queueNames, warnLegacyQueues } from "./topology.js";

/** One message consumed from `<QUEUE>`. */
export interface AmqpMessage {
  readonly body: Buffer;
  readonly properties: MessageProperties;
}

/**
 * A delivery from `<QUEUE>`: `ack` once durable downstream, `fail` to move the whole message to `<QUEUE>.dead`, or
 * `setAside` to put one part of it there (a reading out of a batch, as a message of its own) while the rest is stored:
 * `then` runs once RabbitMQ confirmed that copy, and never if the channel went first (the whole message then comes
 * again). `ack` or `fail` settles the delivery; `setAside` does not.
 */
export interface AmqpDelivery extends FailableDelivery<AmqpMessage> {
  setAside(body: Buffer, failure: Failure, then: () => void): void;
}

export interface AmqpInputOptions {
  readonly url: string;
  /** CA, client certificate and key for an `amqps://` URL. */
  readonly tls?: TlsMaterial | undefined;
  readonly queue: string;
  readonly queueType: QueueType;
  /** Unacknowledged deliveries RabbitMQ may send ahead: the bound on what the input holds. */
  readonly prefetch: number;
  /** Connection name shown by RabbitMQ. */
  readonly name: string;
  readonly log: Logger;
  /** How long `stop()` waits for held deliveries to be settled before closing anyway. */
  readonly drainTimeoutMs: number;
  /** Deliveries held or messages ready on the queue with nothing settled for this long: `health()` reports a stall. */
  readonly stallTimeoutMs: number;
  /** Called once per message copied to `<QUEUE>.dead` (and then acked). */
  readonly onDeadLettered?: (failure: Failure) => void;
  /** Called once per message handed back to `<QUEUE>` by `pause()` (copied, then acked). */
  readonly onHandedBack?: () => void;
}

const DRAIN_POLL_MS = 20;
/** The ready-message check runs at this fraction of the stall timeout, at least once a second. */
const QUEUE_CHECKS_PER_STALL = 3;
const MIN_QUEUE_CHECK_MS = 1_000;

/**
 * Consumes `<QUEUE>` with manual acks and a prefetch window, and hands each message on with `ack` (settled once
 * the reading is durable downstream) and `fail` (copied to `<QUEUE>.dead` with `x-failure-kind` and
 * `x-failure-reason`, then acked; the copy is retried until RabbitMQ confirms it). Deliveries of a channel that
 * has gone are never acked on another: RabbitMQ delivers them again. Reconnects by itself.
 */
export class AmqpInput implements Input {
  readonly #session: AmqpSession;
  readonly #names;
  readonly #progress: ProgressWatch;
  readonly #deadLog: RateLimitedLog;
  readonly #onLegacy: (queue: string) => void;
  #current: Consuming | undefined;
  #held = 0;
  #queueReady = 0;
  #queueCheck: NodeJS.Timeout | undefined;
  #stopping = false;
  #paused = false;
  #stopped: Promise<void> | undefined;
  #prefetch: number;
  #resubscribing: Promise<void> = Promise.resolve();

  constructor(
    private readonly opts: AmqpInputOptions,
    private readonly handler: (delivery: AmqpDelivery) => void,
  ) {
    this.#names = queueNames(opts.queue);
    this.#prefetch = opts.prefetch;
    this.#progress = new ProgressWatch(opts.stallTimeoutMs);
    this.#deadLog = new RateLimitedLog(opts.log, "dead-lettered a message");
    this.#onLegacy = warnLegacyQueues(opts.log);
    this.#session = new AmqpSession({
      url: opts.url,
      tls: opts.tls,
      name: opts.name,
      log: opts.log,
      onConnect: async (conn) => {
        const ch = await conn.createConfirmChannel();
        ch.on("error", (err: Error) => opts.log.warn({ err: err.message }, "amqp channel error"));
        ch.on("close", () => {
          if (this.#current?.ch === ch) this.#lost();
          // stop() closes the channel itself and then the session; otherwise a dead channel means reconnect.
          if (!this.#stopping) conn.close().catch(() => undefined);
        });
        await declareTopologyOn(conn, opts.queue, opts.queueType, this.#onLegacy);
        await ch.prefetch(this.#prefetch);
        const consuming: Consuming = {
          ch,
          acks: new AckCoalescer(ch),
          unsettled: new Map(),
          consumerTag: undefined,
          returns: 0,
          prefetch: this.#prefetch,
        };
        ch.on("return", () => {
          consuming.returns++;
        });
        this.#current = consuming;
        this.#held = 0;
        if (!this.#paused) await this.#subscribe(consuming);
      },
      onDisconnect: () => this.#lost(),
    });
  }

  /** Connects, declares the queues and starts consuming; resolves once the first connection is up. */
  async start(): Promise<void> {
    await this.#session.start();
    // Catches "connected but not consuming": messages ready on the queue that never reach us.
    this.#queueCheck = setInterval(
      () => this.#checkQueue(),
      Math.max(MIN_QUEUE_CHECK_MS, Math.floor(this.opts.stallTimeoutMs / QUEUE_CHECKS_PER_STALL)),
    );
    this.#queueCheck.unref();
  }

  get connected(): boolean {
    return this.#session.connected;
  }

  /**
   * Changes how many messages RabbitMQ may send ahead (from the next deliveries on, and on every reconnect): the
   * processor keeps the readings it holds near its bound when messages carry many readings each.
   */
  setPrefetch(messages: number): void {
    if (messages === this.#prefetch) return;
    this.#prefetch = messages;
    const consuming = this.#current;
    if (!consuming?.consumerTag || this.#stopping || this.#paused) return;
    // One at a time: two overlapping subscriptions would both replace the same old consumer and leave one behind.
    this.#resubscribing = this.#resubscribing.then(() => this.#resubscribe(consuming));
  }

  /**
   * RabbitMQ applies a consumer's prefetch when it subscribes (`basic.qos` with global false only reaches consumers
   * created after it), so a new window means a new consumer on the same channel: consume with the new prefetch,
   * then cancel the old consumer. What the old one was delivered stays unacked on the channel and is acked as usual
   * (delivery tags are per channel), so for a moment the two windows add up.
   */
  async #resubscribe(consuming: Consuming): Promise<void> {
    const window = this.#prefetch;
    if (
      this.#current !== consuming ||
      this.#stopping ||
      this.#paused ||
      !consuming.consumerTag ||
      consuming.prefetch === window
    )
      return;
    try {
      await consuming.ch.prefetch(window);
      const old = consuming.consumerTag;
      await this.#subscribe(consuming);
      if (old) await consuming.ch.cancel(old);
    } catch {
      // The channel is going: the reconnect subscribes again with the current window.
    }
  }

  async #subscribe(consuming: Consuming): Promise<void> {
    const window = this.#prefetch;
    const ok = await consuming.ch.consume(this.#names.readings, (msg) => this.#onDelivery(consuming, msg), {
      noAck: false,
    });
    consuming.consumerTag = ok.consumerTag;
    consuming.prefetch = window;
  }

  /**
   * For a downstream that refuses writes (the store is failing): stops consuming, and hands back every delivery
   * held (and any still arriving) by publishing a copy of it to `<QUEUE>` and acking it once RabbitMQ confirmed
   * the copy. Held deliveries cannot simply wait: RabbitMQ 3.10's `consumer_timeout` (30 min by default) closes a
   * channel whose oldest unacked delivery is older than that, whether its consumer was cancelled or not, and a
   * quorum queue counts every delivery returned by a channel close, a nack or a reject towards its delivery limit,
   * past which the message goes to `<QUEUE>.dead`. A copy is a new message: its count starts at 0, so an outage of
   * any length uses up nothing (a copy whose readings were stored meanwhile is a duplicate, absorbed by the key).
   * `resume()` consumes again. Idempotent.
   */
  pause(): void {
    if (this.#paused) return;
    this.#paused = true;
    const consuming = this.#current;
    if (!consuming) return;
    // After any #resubscribe under way, so that the consumer it may just have created is the one cancelled.
    this.#resubscribing = this.#resubscribing.then(async () => {
      const tag = consuming.consumerTag;
      if (!tag || !this.#paused) return;
      consuming.consumerTag = undefined;
      await bounded(consuming.ch.cancel(tag));
    });
    for (const { msg } of consuming.unsettled.values()) this.#handBack(consuming, msg);
  }

  /** Consumes again after `pause()`. */
  resume(): void {
    if (!this.#paused) return;
    this.#paused = false;
    const consuming = this.#current;
    if (!consuming || this.#stopping) return;
    this.#resubscribing = this.#resubscribing.then(async () => {
      if (this.#current !== consuming || this.#paused || this.#stopping || consuming.consumerTag) return;
      await this.#subscribe(consuming).catch(() => undefined); // a channel going: the reconnect subscribes
    });
  }

  /** True between `pause()` and `resume()`. */
  get paused(): boolean {
    return this.#paused;
  }

  /** Deliveries received and not yet settled (acked or dead-lettered). */
  get held(): number {
    return this.#held;
  }

  /** Messages ready on `<QUEUE>` at the last check: the backlog not yet delivered. */
  get queueReady(): number {
    return this.#queueReady;
  }

  health(): Health {
    if (this.#stopping) return { ready: false, reason: "stopping" };
    const session = this.#session.health();
    if (!session.ready) return session;
    if (!this.#current) return { ready: false, reason: "rabbitmq not connected" };
    // Paused by the downstream, which says why.
    if (this.#paused) return HEALTHY;
    if (!this.#current.consumerTag) return { ready: false, reason: "not consuming" };
    const stalled = this.#progress.stalledFor(this.#held > 0 || this.#queueReady > 0);
    if (stalled !== undefined) {
      return {
        ready: false,
        reason:
          `stalled: ${this.#held} deliveries held, ${this.#queueReady} ready on the queue, ` +
          `nothing committed for ${Math.round(stalled / 1000)} s`,
      };
    }
    return HEALTHY;
  }

  #lost(): void {
    this.#current = undefined;
    this.#held = 0;
  }

  #onDelivery(consuming: Consuming, msg: ConsumeMessage | null): void {
    if (msg === null) {
      this.opts.log.warn("consumer cancelled by RabbitMQ (queue deleted?); reconnecting");
      consuming.ch.close().catch(() => undefined);
      return;
    }
    if (this.#held === 0) this.#progress.touch();
    this.#held++;
    let settled = false;
    const settle = () => {
      if (settled || this.#current !== consuming) return;
      settled = true;
      consuming.unsettled.delete(msg.fields.deliveryTag);
      this.#held--;
      this.#progress.touch();
      consuming.acks.settle(msg);
    };
    consuming.unsettled.set(msg.fields.deliveryTag, { msg, settle });
    // Sent before the cancel reached RabbitMQ: back to the queue with the others.
    if (this.#paused) {
      this.#handBack(consuming, msg);
      return;
    }
    this.handler({
      item: { body: msg.content, properties: msg.properties },
      ack: settle,
      fail: (failure) => {
        if (settled) return;
        // On its way to <QUEUE>.dead: `pause()` must not hand it back as well.
        consuming.unsettled.delete(msg.fields.deliveryTag);
        void this.#deadLetter(consuming, msg, msg.content, failure).then((ok) => {
          if (!ok) return;
          this.opts.onDeadLettered?.(failure);
          settle();
        });
      },
      setAside: (body, failure, then) => {
        // Handed back: its copy comes again and sets the same part aside then.
        if (settled) return;
        void this.#deadLetter(consuming, msg, body, failure).then((ok) => {
          if (!ok) return;
          this.opts.onDeadLettered?.(failure);
          then();
        });
      },
    });
  }

  /**
   * Publishes `body` (the message's own, or one part of it) to `<QUEUE>.dead` with the message's properties and the
   * failure; true once confirmed, false if its channel went first.
   */
  #deadLetter(consuming: Consuming, msg: ConsumeMessage, body: Buffer, failure: Failure): Promise<boolean> {
    this.#deadLog.warn({ kind: failure.kind, reason: failure.reason, messageId: msg.properties.messageId });
    return publishCopy(
      consuming,
      () => this.#current === consuming,
      this.opts.log,
      msg,
      this.#names.dead,
      body,
      {
        ...msg.properties.headers,
        "x-failure-kind": failure.kind,
        "x-failure-reason": failure.reason,
        "x-original-queue": this.#names.readings,
      },
    );
  }

  /** `pause()`'s hand-back of one delivery: a copy to `<QUEUE>`, then the ack (see `pause`). */
  #handBack(consuming: Consuming, msg: ConsumeMessage): void {
    // RabbitMQ sets x-delivery-count on delivery; the copy must not carry the original's.
    const { "x-delivery-count": _, ...headers } = msg.properties.headers ?? {};
    void publishCopy(
      consuming,
      () => this.#current === consuming,
      this.opts.log,
      msg,
      this.#names.readings,
      msg.content,
      headers,
    ).then((ok) => {
      const entry = consuming.unsettled.get(msg.fields.deliveryTag);
      if (!ok || !entry) return;
      this.opts.onHandedBack?.();
      entry.settle();
    });
  }

  #checkQueue(): void {
    const ch = this.#current?.ch;
    if (!ch) return;
    ch.checkQueue(this.#names.readings).then(
      (q) => {
        if (this.#queueReady === 0 && q.messageCount > 0 && this.#held === 0) this.#progress.touch();
        this.#queueReady = q.messageCount;
      },
      () => undefined,
    );
  }

  /**
   * Stops consuming, waits up to `drainTimeoutMs` for held deliveries to be settled, closes the channel and then the
   * connection. What was not settled is delivered again by RabbitMQ.
   */
  stop(): Promise<void> {
    this.#stopped ??= (async () => {
      this.#stopping = true;
      clearInterval(this.#queueCheck);
      const consuming = this.#current;
      // Bounded: a hung broker never answers basic.cancel or channel.close; the session then drops the socket.
      if (consuming?.consumerTag) await bounded(consuming.ch.cancel(consuming.consumerTag));
      const deadline = Date.now() + this.opts.drainTimeoutMs;
      while (this.#held > 0 && this.#current && Date.now() < deadline) await sleep(DRAIN_POLL_MS);
      if (this.#held > 0) {
        this.opts.log.warn(
          { held: this.#held },
          "stopping with deliveries unacked; RabbitMQ redelivers them",
        );
      }
      // Close the channel before the connection: RabbitMQ drops the acks still on their way when the connection
      // closes at once, and redelivers batches already committed. close-ok comes after every earlier ack.
      await new Promise<void>((resolve) => queueMicrotask(resolve)); // let the last coalesced ack go out
      const open = this.#current;
      if (open) await bounded(open.ch.close());
      await this.#session.close();
      this.#deadLog.flush();
    })();
    return this.#stopped;
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.stop();
  }
}
