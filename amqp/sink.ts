import type { ChannelModel, ConfirmChannel, Options } from "amqplib";
import { backoffDelay, sleep } from "../common/backoff.js";
import type { Logger } from "../common/log.js";
import type { OutgoingBatch, OutgoingMessage } from "../common/outgoing.js";
import { type Delivery, HEALTHY, type Health, type Sink } from "../common/pipeline.js";
import { ProgressWatch } from "../common/progress-watch.js";
import type { TlsMaterial } from "../common/tls.js";
import { type BatchPolicy, publishNow } from "./batching.js";
import { AmqpSession } from "./session.js";
import { declareTopologyOn, type QueueType, queueNames, warnLegacyQueues } from "./topology.js";

/** How reading datums become message bodies: the current schemas' single-object framing. */
export interface ReadingFraming {
  /** A single-reading message body. */
  single(datum: Buffer): Buffer;
  /** A batch message body holding `datums` in order (`bytes`: the sum of their lengths). */
  batch(datums: readonly Buffer[], bytes: number): Buffer;
}

export interface AmqpSinkOptions {
  readonly url: string;
  /** CA, client certificate and key for an `amqps://` URL. */
  readonly tls?: TlsMaterial | undefined;
  readonly queue: string;
  readonly queueType: QueueType;
  /** Connection name shown by RabbitMQ. */
  readonly name: string;
  readonly log: Logger;
  /** Messages waiting with none confirmed for this long: `health()` reports a stall. */
  readonly stallTimeoutMs: number;
  readonly framing: ReadingFraming;
  readonly batching: BatchPolicy;
  /** Names batch messages (`<prefix>-<n>`): unique per gateway process. */
  readonly messageIdPrefix: string;
  /** Called once per reading or refused payload RabbitMQ confirmed as routed to its queue. */
  readonly onConfirmed?: (msg: OutgoingMessage) => void;
  /** Called once per publish RabbitMQ nacked or returned (each is published again). */
  readonly onRefused?: (why: "nacked" | "returned") => void;
}

const RETRY_MIN_MS = 100;
const RETRY_MAX_MS = 5_000;
/** How long after the last nack or return `health()` still reports it (longer than the slowest retry). */
const REFUSAL_SHOWN_MS = 2 * RETRY_MAX_MS;
const COMPACT_AFTER = 4_096;
/**
 * No confirm for this long while publishes wait: RabbitMQ is not answering (hung, or the link cut without a reset).
 * A healthy broker confirms within milliseconds; heartbeats alone take two to three intervals to notice.
 */
const CONFIRM_OVERDUE_MS = 5_000;
/** Wait between a returned publish and declaring the queues again (see `#onReturn`). */
const REDECLARE_DELAY_MS = 2_000;
/** The error amqplib gives a confirm callback for `basic.nack`. */
const NACKED = "message nacked";
const AVRO_CONTENT_TYPE = "application/vnd.apache.avro+binary";
const EMPTY = Buffer.alloc(0);

interface Outgoing {
  readonly msg: OutgoingMessage;
  readonly confirmed: () => void;
}

/** Per-channel state: a return seen after a message was published makes its confirm untrustworthy. */
interface Channel {
  readonly ch: ConfirmChannel;
  /** The connection it is on, for declaring the queues again on channels of their own. */
  readonly conn: ChannelModel;
  returns: number;
}

/**
 * Publishes each delivery's messages as persistent, `mandatory` messages on a confirm channel, many in flight at
 * once, and acks the delivery once RabbitMQ has confirmed every one of them as routed to its queue.
 *
 * A message is delivered only when confirmed (no nack) and not returned. RabbitMQ confirms an unroutable message
 * too (the queue was deleted): it sends `basic.return` first, so any confirm arriving after a return on the channel
 * is not trusted; those messages are published again once the queues are declared again (duplicates are absorbed by
 * the store's key). A nack (a full queue with `x-overflow: reject-publish`, a broker refusing) and a lost channel
 * also put the message back; retries back off from 0.1 s to 5 s and go on until RabbitMQ takes it. Nothing is ever
 * dropped, and `health()` says why messages wait.
 */
export class AmqpSink implements Sink<OutgoingBatch> {
  readonly #session: AmqpSession;
  readonly #names;
  readonly #progress: ProgressWatch;
  readonly #onLegacy: (queue: string) => void;
  /** The same clock with a short limit: confirms overdue tell a hung broker or a cut link before heartbeats do. */
  readonly #overdue = new ProgressWatch(CONFIRM_OVERDUE_MS);
  #channel: Channel | undefined;
  #pending: Outgoing[] = [];
  #pendingHead = 0;
  /** Bytes of the reading datums in `#pending` from `#pendingHead` on. */
  #pendingBytes = 0;
  #waitingForDrain = false;
  #inFlight = 0;
  #retryTimer: NodeJS.Timeout | undefined;
  #failures = 0;
  #blocked: string | undefined;
  #lastRefusal: { at: number; why: string } | undefined;
  #redeclaring = false;
  /** A nack since the last retry: the next retry goes out on a fresh channel (see `#retry`). */
  #nackedSinceRetry = false;
  /** AMQP messages published and not yet confirmed (nor failed). */
  #unconfirmed = 0;
  /** Batch messages published so far, for their message ids. */
  #published = 0;
  readonly #window: number;
  #stopped: Promise<void> | undefined;

  constructor(private readonly opts: AmqpSinkOptions) {
    this.#names = queueNames(opts.queue);
    this.#progress = new ProgressWatch(opts.stallTimeoutMs);
    this.#onLegacy = warnLegacyQueues(opts.log);
    this.#window = opts.batching.maxReadings === 1 ? Number.POSITIVE_INFINITY : opts.batching.window;
    this.#session = new AmqpSession({
      url: opts.url,
      tls: opts.tls,
      name: opts.name,
      log: opts.log,
      onConnect: async (conn) => {
        const ch = await conn.createConfirmChannel();
        const state: Channel = { ch, conn, returns: 0 };
        ch.on("error", (err: Error) => opts.log.warn({ err: err.message }, "amqp channel error"));
        ch.on("close", () => {
          if (this.#channel === state) this.#channel = undefined;
          // A closed channel is useless on a live connection: close it so the session reconnects.
          conn.close().catch(() => undefined);
        });
        ch.on("drain", () => {
          this.#waitingForDrain = false;
          this.#flush();
        });
        ch.on("return", () => this.#onReturn(state));
        await declareTopologyOn(conn, opts.queue, opts.queueType, this.#onLegacy);
        this.#channel = state;
        this.#waitingForDrain = false;
        this.#flush();
      },
      onDisconnect: () => {
        this.#channel = undefined;
      },
    });
    this.#session.on("blocked", (reason: string) => {
      this.#blocked = reason;
      opts.log.warn({ reason }, "rabbitmq blocked publishers; holding acknowledgements so upstream buffers");
    });
    this.#session.on("unblocked", () => {
      this.#blocked = undefined;
      opts.log.info("rabbitmq unblocked publishers");
    });
  }

  /** Connects and declares the queues; resolves once the first connection is up. */
  start(): Promise<void> {
    return this.#session.start();
  }

  get inFlight(): number {
    return this.#inFlight;
  }

  /** Messages waiting to be (re)published: channel down, full, refused or returned. */
  get backlog(): number {
    return this.#pending.length - this.#pendingHead;
  }

  get connected(): boolean {
    return this.#session.connected;
  }

  get blocked(): boolean {
    return this.#blocked !== undefined;
  }

  health(): Health {
    const session = this.#session.health();
    if (!session.ready) return session;
    if (this.#blocked) return { ready: false, reason: `rabbitmq blocked publishers: ${this.#blocked}` };
    const refusal = this.#lastRefusal;
    if (refusal && this.#inFlight > 0 && Date.now() - refusal.at < REFUSAL_SHOWN_MS) {
      return { ready: false, reason: `${refusal.why}; ${this.#inFlight} deliveries waiting, retrying` };
    }
    const stalled = this.#progress.stalledFor(this.#inFlight > 0);
    if (stalled !== undefined) {
      return {
        ready: false,
        reason: `stalled: ${this.#inFlight} messages waiting, none confirmed for ${Math.round(stalled / 1000)} s`,
      };
    }
    const overdue = this.#overdue.stalledFor(this.#inFlight > 0 && this.#session.connected);
    if (overdue !== undefined) {
      return {
        ready: false,
        reason: `rabbitmq not answering: ${this.#inFlight} deliveries waiting, no confirm for ${Math.round(overdue / 1000)} s`,
      };
    }
    return HEALTHY;
  }

  write(delivery: Delivery<OutgoingBatch>): void {
    const messages = delivery.item;
    if (this.#inFlight === 0) {
      this.#progress.touch();
      this.#overdue.touch();
    }
    this.#inFlight++;
    let remaining = messages.length;
    const one = () => {
      if (--remaining > 0) return;
      this.#inFlight--;
      delivery.ack();
    };
    for (const msg of messages) this.#enqueue({ msg, confirmed: one });
  }

  #enqueue(out: Outgoing): void {
    this.#push(out);
    this.#flush();
  }

  #push(out: Outgoing): void {
    this.#pending.push(out);
    if (out.msg.route === "readings") this.#pendingBytes += out.msg.datum.length;
  }

  /** The next message from the head of the pending queue: a refused payload alone, or up to a batch of readings. */
  #take(): Outgoing[] {
    const first = this.#pending[this.#pendingHead++]!;
    if (first.msg.route !== "readings") return [first];
    const { maxReadings, maxBytes } = this.opts.batching;
    const taken = [first];
    let bytes = first.msg.datum.length;
    while (taken.length < maxReadings && this.#pendingHead < this.#pending.length) {
      const next = this.#pending[this.#pendingHead]!;
      if (next.msg.route !== "readings" || bytes + next.msg.datum.length > maxBytes) break;
      bytes += next.msg.datum.length;
      taken.push(next);
      this.#pendingHead++;
    }
    this.#pendingBytes -= bytes;
    return taken;
  }

  #publish(channel: Channel, entries: Outgoing[]): void {
    const first = entries[0]!.msg;
    const returnsBefore = channel.returns;
    let queue: string;
    let body: Buffer;
    let properties: Options.Publish;
    if (first.route === "rejected") {
      queue = this.#names.rejected;
      body = first.body;
      properties = { ...first.properties, persistent: true, mandatory: true };
    } else {
      queue = this.#names.readings;
      const single = this.opts.batching.maxReadings === 1;
      const datums = entries.map((e) => (e.msg.route === "readings" ? e.msg.datum : EMPTY));
      body = single
        ? this.opts.framing.single(first.datum)
        : this.opts.framing.batch(
            datums,
            datums.reduce((n, d) => n + d.length, 0),
          );
      properties = {
        persistent: true,
        mandatory: true,
        contentType: AVRO_CONTENT_TYPE,
        messageId: single ? first.messageId : `${this.opts.messageIdPrefix}-${++this.#published}`,
        timestamp: Math.floor(first.receivedAt / 1000),
      };
    }
    this.#unconfirmed++;
    const writable = channel.ch.sendToQueue(queue, body, properties, (err) => {
      this.#unconfirmed--;
      if (!err && channel.returns === returnsBefore) {
        this.#failures = 0;
        this.#progress.touch();
        this.#overdue.touch();
        for (const e of entries) {
          this.opts.onConfirmed?.(e.msg);
          e.confirmed();
        }
        this.#flush();
        return;
      }
      // amqplib fails every unconfirmed callback with "channel closed" when the channel goes; only a nack is a refusal.
      if (err?.message === NACKED) {
        this.#nackedSinceRetry = true;
        this.opts.onRefused?.("nacked");
        this.#refused("rabbitmq refused publishes (nack: queue full or broker refusing)");
      }
      for (const e of entries) this.#push(e);
      this.#scheduleRetry();
    });
    if (!writable) this.#waitingForDrain = true;
  }

  #refused(why: string): void {
    if (!this.#lastRefusal || Date.now() - this.#lastRefusal.at > REFUSAL_SHOWN_MS) {
      this.opts.log.warn({ reason: why }, "publishes refused by rabbitmq; keeping them and retrying");
    }
    this.#lastRefusal = { at: Date.now(), why };
  }

  #onReturn(channel: Channel): void {
    channel.returns++;
    this.opts.onRefused?.("returned");
    this.#refused(
      `rabbitmq returned publishes as unroutable: queue ${this.opts.queue} or its .rejected missing`,
    );
    if (this.#redeclaring || this.#channel !== channel) return;
    this.#redeclaring = true;
    // Not at once: RabbitMQ 3.10 leaves the consumers of a deleted quorum queue attached, as zombies that take
    // messages and never deliver them, to a queue of the same name declared within a few hundred ms of the deletion
    // (checked here: no basic.cancel at 0 ms, a proper cancel at 500 ms). The wait lets the processors' consumers be
    // cancelled first; meanwhile publishes keep being returned and retried.
    sleep(REDECLARE_DELAY_MS)
      .then(() =>
        this.#channel === channel
          ? declareTopologyOn(channel.conn, this.opts.queue, this.opts.queueType, this.#onLegacy)
          : undefined,
      )
      .then(
        () =>
          this.opts.log.info({ queue: this.opts.queue }, "queues declared again after returned publishes"),
        (err: unknown) =>
          this.opts.log.warn(
            { err: err instanceof Error ? err.message : String(err) },
            "could not declare the queues again",
          ),
      )
      .finally(() => {
        this.#redeclaring = false;
      });
  }

  #scheduleRetry(): void {
    if (this.#retryTimer || this.#stopped) return;
    this.#failures++;
    this.#retryTimer = setTimeout(
      () => this.#retry(),
      backoffDelay(this.#failures, RETRY_MIN_MS, RETRY_MAX_MS),
    );
  }

  #retry(): void {
    this.#retryTimer = undefined;
    const channel = this.#channel;
    if (this.#nackedSinceRetry && channel) {
      // A quorum queue that reached a length limit marks each publishing channel as rejected, and RabbitMQ (3.10 to
      // seen with 3.10.8 here; upstream rabbitmq-server#12206) does not lift that mark when the limit goes: the channel would be
      // nacked forever. A fresh connection and channel is told the queue's state anew; the session reconnects at
      // once and publishes the backlog again (in-flight messages fail with the channel and are kept).
      this.#nackedSinceRetry = false;
      this.#channel = undefined;
      channel.ch.close().catch(() => undefined);
      return;
    }
    this.#flush();
  }

  #flush(): void {
    const channel = this.#channel;
    while (
      channel &&
      this.#channel === channel &&
      !this.#waitingForDrain &&
      publishNow(this.#waiting(), this.opts.batching, this.#window)
    ) {
      this.#publish(channel, this.#take());
    }
    if (this.#pendingHead === this.#pending.length) {
      this.#pending = [];
      this.#pendingHead = 0;
    } else if (this.#pendingHead > COMPACT_AFTER && this.#pendingHead * 2 > this.#pending.length) {
      this.#pending = this.#pending.slice(this.#pendingHead);
      this.#pendingHead = 0;
    }
  }

  #waiting() {
    const pending = this.#pending.length - this.#pendingHead;
    const headAlone = pending > 0 && this.#pending[this.#pendingHead]!.msg.route !== "readings";
    return { unconfirmed: this.#unconfirmed, pending, pendingBytes: this.#pendingBytes, headAlone };
  }

  /** Closes the connection; deliveries not yet confirmed are never acknowledged (upstream delivers them again). */
  stop(): Promise<void> {
    this.#stopped ??= (async () => {
      clearTimeout(this.#retryTimer);
      await this.#session.close();
    })();
    return this.#stopped;
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.stop();
  }
}
