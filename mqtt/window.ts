import { AckSequencer } from "./ack-sequencer.js";

/** What the window asks of the connection it serves. Each hook must not throw. */
export interface WindowHooks<T> {
  /** Hand `item` on; `ack` (idempotent) releases its PUBACK. Called in arrival order. */
  deliver(item: T, ack: () => void): void;
  /** Write the PUBACK for `messageId`: it and every earlier QoS 1 arrival are acked. */
  puback(messageId: number): void;
  /** The held queue reached the limit: stop reading the socket, let the broker's packets wait in TCP buffers. */
  pause(): void;
  /** The held queue is empty again: read the socket again. */
  resume(): void;
  /** The broker exceeded the Receive Maximum for the first time on this connection (worth one warning). */
  overflow(): void;
}

const noop = (): void => {};

/**
 * One connection's in-flight window, without I/O: hands on at most `limit` unacknowledged QoS 1 messages at a
 * time and releases their PUBACKs in arrival order (MQTT 5 section 4.6) whatever order they are acked in.
 *
 * A broker may send more than our Receive Maximum, a protocol violation (MQTT 5 section 4.9) that Mosquitto 2.0
 * commits when it has a backlog: each PUBACK for the oldest in-flight message moves up to Receive Maximum queued
 * messages into flight. Disconnecting with 0x93 would only loop, so the window holds the excess in arrival order,
 * hands it on as acks free room, and asks the connection to stop reading while the excess is `limit` or more.
 * QoS 0 messages (`messageId` undefined) take no room and need no PUBACK, but wait behind held ones so that
 * arrival order holds.
 */
export class InflightWindow<T> {
  private readonly acks: AckSequencer<number>;
  private held: { readonly messageId: number | undefined; readonly item: T }[] = [];
  private heldHead = 0;
  private drainScheduled = false;
  private overflowed = false;
  private pausedNow = false;
  private intake = true;
  private closed = false;

  /**
   * @param limit the Receive Maximum sent in CONNECT, at least 1
   * @param schedule runs a drain of the held queue later; a PUBACK is released from inside an `ack` call, and
   *   handing on held messages right there would re-enter the caller's handler (injectable for tests)
   */
  constructor(
    private readonly limit: number,
    private readonly hooks: WindowHooks<T>,
    private readonly schedule: (run: () => void) => void = process.nextTick,
  ) {
    this.acks = new AckSequencer<number>((messageId) => {
      if (this.closed) return;
      this.hooks.puback(messageId);
      if (this.heldCount > 0 && !this.drainScheduled) {
        this.drainScheduled = true;
        this.schedule(() => this.drain());
      }
    });
  }

  /** A PUBLISH arrived: hand it on now if there is room and nothing is held, else hold it. */
  arrive(messageId: number | undefined, item: T): void {
    if (!this.intake) return;
    if (this.heldCount === 0 && !(messageId !== undefined && this.full)) {
      this.deliver(messageId, item);
      return;
    }
    if (!this.overflowed) {
      this.overflowed = true;
      this.hooks.overflow();
    }
    this.held.push({ messageId, item });
    if (!this.pausedNow && this.heldCount >= this.limit) {
      this.pausedNow = true;
      this.hooks.pause();
    }
  }

  /** QoS 1 messages handed on whose PUBACK has not been released yet. */
  get inFlight(): number {
    return this.acks.pending;
  }

  /** Messages that arrived beyond the window and wait to be handed on. */
  get heldCount(): number {
    return this.held.length - this.heldHead;
  }

  /** Everything received on this connection and not yet PUBACKed: in flight plus held. */
  get unacked(): number {
    return this.inFlight + this.heldCount;
  }

  /** True between `pause` and `resume`. */
  get paused(): boolean {
    return this.pausedNow;
  }

  /** Stops taking and handing on messages (the session is stopping); acks still release PUBACKs. */
  stopIntake(): void {
    this.intake = false;
  }

  /**
   * The connection is gone: drops what is held and in flight without PUBACKs (the broker redelivers them on the
   * next connection) and makes every `ack` handed out a no-op.
   */
  close(): void {
    this.closed = true;
    this.intake = false;
    this.acks.clear();
    this.held = [];
    this.heldHead = 0;
  }

  private get full(): boolean {
    return this.acks.pending >= this.limit;
  }

  private deliver(messageId: number | undefined, item: T): void {
    this.hooks.deliver(item, messageId === undefined ? noop : this.acks.push(messageId));
  }

  private drain(): void {
    this.drainScheduled = false;
    if (!this.intake) return;
    for (;;) {
      const next = this.held[this.heldHead];
      if (next === undefined) break;
      if (next.messageId !== undefined && this.full) return;
      this.heldHead++;
      this.deliver(next.messageId, next.item);
      // The handler may have stopped the session from inside deliver.
      if (!this.intake) return;
    }
    this.held = [];
    this.heldHead = 0;
    if (this.pausedNow) {
      this.pausedNow = false;
      this.hooks.resume();
    }
  }
}
