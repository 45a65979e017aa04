import { backoffDelay } from "../common/backoff.js";
import type { Logger } from "../common/log.js";

/** A failing disk operation is retried after 1 s, doubling up to 30 s (with jitter). */
const RETRY_MIN_MS = 1_000;
const RETRY_MAX_MS = 30_000;

/**
 * The spool's disk operations that fail now (appending, sealing, deleting, writing the cursor), each named with its
 * error until it works again. A failure is logged once per distinct error and schedules one retry with backoff; the
 * spool decides what retrying means. Never throws: a full, read-only or failing disk makes the gateway not ready,
 * never exit.
 */
export class DiskFaults {
  readonly #failing = new Map<string, string>();
  #attempts = 0;
  #timer: NodeJS.Timeout | undefined;
  #closed = false;

  constructor(
    private readonly log: Logger,
    /** Called after the backoff with the operations still failing, to try them again. */
    private readonly retry: (failing: ReadonlySet<string>) => void,
  ) {}

  /** Runs `op`, the disk operation `name`: true when it worked, false when it threw (then failing, retried). */
  run(name: string, op: () => void): boolean {
    try {
      op();
    } catch (err) {
      this.failed(name, err);
      return false;
    }
    this.worked(name);
    return true;
  }

  /** `name` worked: no longer failing. */
  worked(name: string): void {
    if (!this.#failing.delete(name)) return;
    if (this.#failing.size === 0) this.#attempts = 0;
    this.log.info({ op: name }, "spool disk operation works again");
  }

  /** `name` failed with `err`: shown by `reason`, logged (once per distinct error), retried with backoff. */
  failed(name: string, err: unknown): void {
    const e = err as NodeJS.ErrnoException;
    const what = `${name}: ${e.code ?? "error"} ${e.message}`;
    if (this.#failing.get(name) !== what) {
      this.log.error(
        { op: name, code: e.code, err: e.message },
        "spool disk operation failed; PUBACKs held, retrying",
      );
    }
    this.#failing.set(name, what);
    if (this.#timer || this.#closed) return;
    this.#timer = setTimeout(
      () => {
        this.#timer = undefined;
        if (!this.#closed) this.retry(new Set(this.#failing.keys()));
      },
      backoffDelay(++this.#attempts, RETRY_MIN_MS, RETRY_MAX_MS),
    );
    this.#timer.unref();
  }

  /** What fails now, for readiness; undefined when every operation works. */
  get reason(): string | undefined {
    if (this.#failing.size === 0) return undefined;
    return `spool disk error, PUBACKs held, retrying: ${[...this.#failing.values()].join("; ")}`;
  }

  close(): void {
    this.#closed = true;
    clearTimeout(this.#timer);
  }
}
