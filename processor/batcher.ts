/**
 * Collects items into batches and hands each batch to `flush` when it reaches `maxSize` items or when its first
 * item has waited `maxDelayMs`, whichever comes first. Pure policy: what a flush does is the caller's business.
 */
export class Batcher<T> {
  #items: T[] = [];
  #timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly maxSize: number,
    private readonly maxDelayMs: number,
    private readonly flush: (items: T[]) => void,
  ) {}

  get size(): number {
    return this.#items.length;
  }

  add(item: T): void {
    this.#items.push(item);
    if (this.#items.length >= this.maxSize) this.flushNow();
    else if (this.#items.length === 1) this.#timer = setTimeout(() => this.flushNow(), this.maxDelayMs);
  }

  /** Hands over what has been collected, if anything, without waiting. */
  flushNow(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    if (this.#items.length === 0) return;
    const items = this.#items;
    this.#items = [];
    this.flush(items);
  }
}
