import type { Logger } from "./log.js";

const WINDOW_MS = 10_000;
const LINES_PER_WINDOW = 10;

/**
 * Logs the first few events of a kind in each 10 s window, then counts the rest and reports how many were
 * suppressed, so a device sending garbage at 1,000/s cannot flood the log.
 */
export class RateLimitedLog {
  #windowStart = 0;
  #written = 0;
  #suppressed = 0;

  constructor(
    private readonly log: Logger,
    private readonly message: string,
    private readonly now: () => number = Date.now,
  ) {}

  warn(fields: Record<string, unknown>): void {
    const t = this.now();
    if (t - this.#windowStart >= WINDOW_MS) {
      this.flush();
      this.#windowStart = t;
      this.#written = 0;
    }
    if (this.#written < LINES_PER_WINDOW) {
      this.#written++;
      this.log.warn(fields, this.message);
    } else {
      this.#suppressed++;
    }
  }

  /** Reports the count suppressed in the current window, if any. */
  flush(): void {
    if (this.#suppressed > 0) {
      this.log.warn({ suppressed: this.#suppressed }, `${this.message}: more suppressed`);
      this.#suppressed = 0;
    }
  }
}
