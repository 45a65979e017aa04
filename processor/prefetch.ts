/** Messages RabbitMQ may always send ahead, whatever they hold: enough to keep a transaction filling. */
const MIN_MESSAGES = 4;
/**
 * The window before the first message says what messages hold: small, because a backlog of batch messages sent
 * ahead at once stays in memory (a window lowered later does not take back what was delivered).
 */
const START_MESSAGES = 16;
/** How much each message moves the running mean of readings per message. */
const WEIGHT = 0.05;
/** A new window is asked for only when it differs by more than this share from the current one. */
const HYSTERESIS = 0.25;

/**
 * Keeps the readings a processor holds near `PREFETCH` when messages carry many readings (batches) or one (older
 * gateways): RabbitMQ's prefetch counts messages, so the window in messages follows the running mean of readings per
 * message. Pure: `observe` returns the new window in messages when it should change, else undefined.
 */
export class PrefetchWindow {
  #mean: number | undefined;
  #current: number;

  constructor(private readonly readings: number) {
    this.#current = Math.min(readings, START_MESSAGES);
  }

  /** The window to consume with before any message arrived. */
  get initial(): number {
    return Math.min(this.readings, START_MESSAGES);
  }

  observe(readingsInMessage: number): number | undefined {
    const first = this.#mean === undefined;
    this.#mean = first ? readingsInMessage : this.#mean! + (readingsInMessage - this.#mean!) * WEIGHT;
    const wanted = Math.max(MIN_MESSAGES, Math.min(this.readings, Math.round(this.readings / this.#mean)));
    // The first message says what messages hold: follow it at once; after that, only past the hysteresis.
    if (
      wanted === this.#current ||
      (!first && Math.abs(wanted - this.#current) <= this.#current * HYSTERESIS)
    ) {
      return undefined;
    }
    this.#current = wanted;
    return wanted;
  }
}
