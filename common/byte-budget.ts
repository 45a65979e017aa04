/**
 * One limit on the bytes a service holds in memory, shared by its parts (the gateway: the MQTT window, readings
 * awaiting RabbitMQ's confirm, the spool's drain). Each part holds what it takes and releases it once it is gone;
 * a part that finds the budget full takes nothing more until `onRoom` calls it, except one item when it holds
 * nothing itself, so that an item larger than the whole budget still passes and nothing waits forever.
 * What is held can pass the limit by the items taken while it was not yet full (one each, per part).
 */
export class ByteBudget {
  #held = 0;
  readonly #listeners = new Set<() => void>();

  /** @param limit bytes, at least 1 */
  constructor(readonly limit: number) {
    if (!(limit >= 1)) throw new RangeError(`a byte budget needs a limit of at least 1, not ${limit}`);
  }

  /** Bytes held now. */
  get held(): number {
    return this.#held;
  }

  /** What is held has reached the limit: take nothing more (but one item into a part that holds nothing). */
  get full(): boolean {
    return this.#held >= this.limit;
  }

  /**
   * Counts `bytes` as held until the returned function is called. That function is idempotent; when it takes the
   * budget from full to not full, every `onRoom` listener is called, synchronously.
   */
  hold(bytes: number): () => void {
    this.#held += bytes;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const wasFull = this.full;
      this.#held -= bytes;
      if (wasFull && !this.full) for (const listener of [...this.#listeners]) listener();
    };
  }

  /** Calls `listener` whenever the budget stops being full; returns the function that removes it. */
  onRoom(listener: () => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }
}
