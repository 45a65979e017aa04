const INITIAL_CAPACITY = 64;

/**
 * Releases acknowledgements in arrival order, whatever order the work behind them completes in.
 *
 * `push` registers an arrival and returns its done function; `release` is called for an item once it and every
 * earlier item are done, synchronously from the done call that completes the run. Items live in a ring buffer
 * indexed by a monotonic sequence number, so each item costs O(1) amortised.
 */
export class AckSequencer<T> {
  private items: (T | undefined)[] = new Array<T | undefined>(INITIAL_CAPACITY);
  private done = new Uint8Array(INITIAL_CAPACITY);
  private mask = INITIAL_CAPACITY - 1;
  /** Sequence number of the oldest item not yet released. */
  private head = 0;
  /** Sequence number the next pushed item gets. */
  private tail = 0;
  private releasing = false;

  /** @param release called once per item, in arrival order; it must not throw. */
  constructor(private readonly release: (item: T) => void) {}

  /**
   * Registers an arrival; returns a function that marks it done (idempotent). Done items are released in arrival
   * order: an item is released only when it and every earlier item are done.
   */
  push(item: T): () => void {
    if (this.tail - this.head > this.mask) this.grow();
    const seq = this.tail++;
    const slot = seq & this.mask;
    this.items[slot] = item;
    this.done[slot] = 0;
    return () => this.markDone(seq);
  }

  /** Arrived, not yet released. */
  get pending(): number {
    return this.tail - this.head;
  }

  /**
   * Drops everything pending without releasing (used when the connection those acks belong to is gone). Done
   * functions handed out before are no-ops from then on.
   */
  clear(): void {
    this.items.fill(undefined);
    this.head = this.tail;
  }

  private markDone(seq: number): void {
    // Below head: already released, or dropped by clear(), which moves head past every sequence number handed out.
    if (seq < this.head) return;
    this.done[seq & this.mask] = 1;
    // A release callback that marks another item done leaves the releasing to the loop already running.
    if (this.releasing) return;
    this.releasing = true;
    try {
      while (this.head < this.tail) {
        const slot = this.head & this.mask;
        if (this.done[slot] === 0) break;
        const item = this.items[slot] as T;
        this.items[slot] = undefined;
        this.head++;
        this.release(item);
      }
    } finally {
      this.releasing = false;
    }
  }

  private grow(): void {
    const capacity = (this.mask + 1) * 2;
    const items = new Array<T | undefined>(capacity);
    const done = new Uint8Array(capacity);
    const mask = capacity - 1;
    for (let seq = this.head; seq < this.tail; seq++) {
      items[seq & mask] = this.items[seq & this.mask];
      done[seq & mask] = this.done[seq & this.mask] ?? 0;
    }
    this.items = items;
    this.done = done;
    this.mask = mask;
  }
}
