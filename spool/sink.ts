import { sleep } from "../common/backoff.js";
import type { OutgoingBatch } from "../common/outgoing.js";
import type { Delivery, Health, Sink } from "../common/pipeline.js";
import type { SpoolStore } from "./store.js";

const SETTLE_POLL_MS = 10;
const SETTLE_TIMEOUT_MS = 5_000;

/**
 * The spool as the gateway's sink: each delivery's batch is appended to the spool file and the delivery acked (the
 * MQTT PUBACK) once it is durable there, many per fsync. Under SPOOL_FULL=drop-newest a batch refused for want of
 * space is acked too, and counted as dropped by the store; under block it waits, unacked, for space. A batch whose
 * record is larger than the whole spool goes to `uplink` (RabbitMQ) directly and is acked only once confirmed there,
 * as without a spool; while the uplink is down it waits, unacked, and `health()` says why. Without an uplink the
 * store holds it (unacked).
 */
export class SpoolSink implements Sink<OutgoingBatch> {
  #inFlight = 0;
  #stopped = false;
  /** Batches too large for the spool, sent to the uplink directly and not yet confirmed, with their record size. */
  readonly #direct = new Map<symbol, number>();

  constructor(
    private readonly store: SpoolStore,
    private readonly uplink?: Sink<OutgoingBatch>,
  ) {}

  write(delivery: Delivery<OutgoingBatch>): void {
    if (this.#stopped) return; // never acked: the MQTT broker delivers it again
    this.#inFlight++;
    const settled = () => {
      this.#inFlight--;
      delivery.ack();
    };
    const uplink = this.uplink;
    const direct = uplink
      ? (bytes: number) => {
          const token = Symbol();
          this.#direct.set(token, bytes);
          uplink.write({
            item: delivery.item,
            ack: () => {
              this.#direct.delete(token);
              settled();
            },
          });
        }
      : undefined;
    this.store.append(delivery.item, settled, direct);
  }

  get inFlight(): number {
    return this.#inFlight;
  }

  /** The store's health, or not ready while a batch too large for the spool waits for a down uplink. */
  health(): Health {
    const stored = this.store.health();
    if (!stored.ready || this.#direct.size === 0 || !this.uplink || this.uplink.health().ready) return stored;
    const bytes = Math.max(...this.#direct.values());
    return {
      ready: false,
      reason:
        `a record of ${bytes} bytes is larger than the spool (SPOOL_MAX_BYTES): holding its PUBACK until RabbitMQ ` +
        "confirms it",
    };
  }

  /** Waits (up to 5 s) for appends already taken to become durable; what is still waiting is never acked. */
  async stop(): Promise<void> {
    this.#stopped = true;
    const deadline = Date.now() + SETTLE_TIMEOUT_MS;
    while (this.#inFlight > 0 && !this.store.full && Date.now() < deadline) await sleep(SETTLE_POLL_MS);
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.stop();
  }
}
