import type { ByteBudget } from "../common/byte-budget.js";
import { AckSequencer } from "./ack-sequencer.js";

/** What the window asks of the connection it serves. Each hook must not throw. */
export interface WindowHooks<T> {
  /** Hand `item` on; `ack` (idempotent) releases its PUBACK. Called in arrival order. */
  deliver(item: T, ack: () => void): void;
  /** Write the PUBACK for `messageId`: it and every earlier QoS 1 arrival are acked. */
  puback(messageId: number): void;
  /**
   * The held queue reached the limit, or the byte budget is full: stop reading the socket, let the broker's
   * packets wait in TCP buffers and the broker.
   */
  pause(): void;
  /** The held queue is empty again: read the socket again. */
  resume(): void;
  /** The broker exceeded the Receive Maximum for the first time on this connection (worth one warning). */
  overflow(): void;
}

const noop = (): void => {};

interface Arrival<T> {
  readonly messageId: number | undefined;
  readonly item: T;
  /** Gives the arrival's bytes back to the budget. */
  readonly release: () => void;
}

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
 *
 * With a byte budget, each arrival holds its bytes from arrival until its `ack`, and a message is handed on only
 * while the budget has room or this window has nothing handed on and unacked (so a message larger than the whole
 * budget still passes alone). A message that finds the budget full is held and the connection asked to stop
 * reading, as for the count; acks and room in the budget hand held messages on and read again.
 */
export class InflightWindow<T> {
  private readonly acks: AckSequencer<number>;
  private held: Arrival<T>[] = [];
  private heldHead = 0;
  private drainScheduled = false;
  private overflowed = false;
  private pausedNow = false;
  private intake = true;
  private closed = false;
  /** Messages handed on (QoS 0 included) whose `ack` has not been called yet. */
  private outstanding = 0;
  private readonly stopWatchingBudget: () => void;

  /**
   * @param limit the Receive Maximum sent in CONNECT, at least 1
   * @param schedule runs a drain of the held queue later; a PUBACK is released from inside an `ack` call, and
   *   handing on held messages right there would re-enter the caller's handler (injectable for tests)
   * @param budget the bytes the whole service may hold, shared with its other parts (none: count only)
   */
  constructor(
    private readonly limit: number,
    private readonly hooks: WindowHooks<T>,
    private readonly schedule: (run: () => void) => void = process.nextTick,
    private readonly budget?: ByteBudget,
  ) {
    this.acks = new AckSequencer<number>((messageId) => {
      if (this.closed) return;
      this.hooks.puback(messageId);
      this.scheduleDrain();
    });
    this.stopWatchingBudget = budget?.onRoom(() => this.scheduleDrain()) ?? noop;
  }

  /**
   * A PUBLISH arrived, `bytes` long as held in memory: hand it on now if there is room (count and budget) and
   * nothing is held, else hold it.
   */
  arrive(messageId: number | undefined, item: T, bytes = 0): void {
    if (!this.intake) return;
    const arrival: Arrival<T> = { messageId, item, release: this.budget?.hold(bytes) ?? noop };
    if (this.heldCount === 0 && this.canHandOn(messageId)) {
      this.deliver(arrival);
      return;
    }
    // Held for want of bytes is our own choice; held beyond our Receive Maximum is the broker's violation.
    if (messageId !== undefined && this.full && !this.overflowed) {
      this.overflowed = true;
      this.hooks.overflow();
    }
    this.held.push(arrival);
    if (!this.pausedNow && (this.heldCount >= this.limit || this.budgetBlocks)) {
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
    for (let i = this.heldHead; i < this.held.length; i++) this.held[i]?.release();
    this.held = [];
    this.heldHead = 0;
    this.stopWatchingBudget();
  }

  private get full(): boolean {
    return this.acks.pending >= this.limit;
  }

  /** The budget is full and this window holds something of its own already. */
  private get budgetBlocks(): boolean {
    return this.budget?.full === true && this.outstanding > 0;
  }

  private canHandOn(messageId: number | undefined): boolean {
    return !(messageId !== undefined && this.full) && !this.budgetBlocks;
  }

  private deliver(arrival: Arrival<T>): void {
    const puback = arrival.messageId === undefined ? noop : this.acks.push(arrival.messageId);
    let acked = false;
    this.outstanding++;
    this.hooks.deliver(arrival.item, () => {
      if (acked) return;
      acked = true;
      this.outstanding--;
      arrival.release();
      puback();
      // Our last message gone lets one more through even while other parts keep the budget full.
      if (this.outstanding === 0) this.scheduleDrain();
    });
  }

  private scheduleDrain(): void {
    if (this.closed || this.heldCount === 0 || this.drainScheduled) return;
    this.drainScheduled = true;
    this.schedule(() => this.drain());
  }

  private drain(): void {
    this.drainScheduled = false;
    if (!this.intake) return;
    for (;;) {
      const next = this.held[this.heldHead];
      if (next === undefined) break;
      if (!this.canHandOn(next.messageId)) return;
      this.heldHead++;
      this.deliver(next);
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
