import type { OutgoingBatch } from "../amqp/sink.js";
import { sleep } from "../common/backoff.js";
import type { Delivery, Health, Sink } from "../common/pipeline.js";
import type { SpoolStore } from "./store.js";

const SETTLE_POLL_MS = 10;
const SETTLE_TIMEOUT_MS = 5_000;

/**
 * The spool as the gateway's sink: each delivery's batch is appended to the spool file and the delivery acked (the
 * MQTT PUBACK) once it is durable there, many per fsync. Under SPOOL_FULL=drop-newest a batch refused for want of
 * space is acked too, and counted as dropped by the store; under block it waits, unacked, for space.
 */
export class SpoolSink implements Sink<OutgoingBatch> {
  #inFlight = 0;
  #stopped = false;

  constructor(private readonly store: SpoolStore) {}

  write(delivery: Delivery<OutgoingBatch>): void {
    if (this.#stopped) return; // never acked: the MQTT broker delivers it again
    this.#inFlight++;
    this.store.append(delivery.item, () => {
      this.#inFlight--;
      delivery.ack();
    });
  }

  get inFlight(): number {
    return this.#inFlight;
  }

  health(): Health {
    return this.store.health();
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
