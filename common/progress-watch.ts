/**
 * Tells a service that is connected but stuck from one that is idle: it is stalled when work has been waiting
 * and nothing has progressed for longer than `limitMs`. Call `touch()` on every bit of progress (a confirm, a
 * commit) and when work arrives at an idle service, so that idle time never counts as a stall.
 */
export class ProgressWatch {
  #last: number;

  constructor(
    readonly limitMs: number,
    private readonly now: () => number = Date.now,
  ) {
    this.#last = now();
  }

  touch(): void {
    this.#last = this.now();
  }

  /** Milliseconds without progress while work waits, when over the limit; undefined otherwise. */
  stalledFor(waiting: boolean): number | undefined {
    if (!waiting) return undefined;
    const idle = this.now() - this.#last;
    return idle > this.limitMs ? idle : undefined;
  }
}
