import { backoffDelay, sleep } from "../common/backoff.js";
import type { Logger } from "../common/log.js";
import { type FailableDelivery, HEALTHY, type Health, type Sink } from "../common/pipeline.js";
import type { Reading } from "../schemas/index.js";
import type { ReadingStore, WriteResult } from "../store/index.js";
import { Batcher } from "./batcher.js";
import type { ProcessorMetrics } from "./metrics.js";

export interface StoreSinkOptions {
  readonly store: ReadingStore;
  /** What /readyz names when commits fail, e.g. "SQLite". */
  readonly storeName: string;
  /** Readings per transaction at most. */
  readonly batchSize: number;
  /** Longest a reading waits for its batch to fill. */
  readonly batchDelayMs: number;
  /** How long `stop()` waits for a commit under way (a hung disk never answers). */
  readonly drainTimeoutMs: number;
  /**
   * A commit under way for longer than this counts as a failing store (reported, `onStoreFailing` told) while it
   * goes on: a store that hangs (a lock held in PostgreSQL, a dead disk) must not keep deliveries past RabbitMQ's
   * consumer_timeout any more than one that refuses. Unset: only a failed commit counts.
   */
  readonly stallTimeoutMs?: number | undefined;
  readonly log: Logger;
  readonly metrics: ProcessorMetrics;
  /**
   * Told when commits start failing (true, at the first failure) and when one succeeds again (false): the
   * processor stops taking deliveries meanwhile and hands back what it holds (amqp/input.ts, `pause`).
   */
  readonly onStoreFailing?: (failing: boolean) => void;
}

const RETRY_MIN_MS = 100;
const RETRY_MAX_MS = 5_000;

type Item = FailableDelivery<Reading>;

/**
 * The processor's sink: batches readings (`batchSize` or `batchDelayMs`, whichever comes first), writes each batch
 * in one transaction and, once it has committed, acks every delivery in it. A reading whose key is stored with
 * another measurement is a conflict: the stored row is kept and the delivery fails (kind `conflict`, both
 * measurements in the reason) so an operator finds it on `<QUEUE>.dead`. A reading older than what retention
 * already deleted is expired: not stored, counted, logged once per batch and acked. A batch that cannot commit is retried with
 * backoff (0.1 s to 5 s) and nothing of it is acked meanwhile; `health()` says why and `onStoreFailing` is told.
 */
export class StoreSink implements Sink<Reading, Item> {
  readonly #batcher: Batcher<Item>;
  #commits: Promise<void> = Promise.resolve();
  /** Batches handed to the commit chain and not finished. */
  #committing = 0;
  #flushQueued = false;
  #inFlight = 0;
  #storeError: string | undefined;
  readonly #stopping = new AbortController();
  #stopped: Promise<void> | undefined;

  constructor(private readonly opts: StoreSinkOptions) {
    this.#batcher = new Batcher<Item>(opts.batchSize, opts.batchDelayMs, (batch) => {
      this.#committing++;
      this.#commits = this.#commits.then(async () => {
        await this.#commit(batch);
        this.#committing--;
        // What arrived during that commit goes at once: the next transaction holds everything that waited.
        if (this.#committing === 0) this.#batcher.flushNow();
      });
    });
  }

  get inFlight(): number {
    return this.#inFlight;
  }

  health(): Health {
    if (this.#storeError)
      return { ready: false, reason: `cannot commit to ${this.opts.storeName}: ${this.#storeError}` };
    return HEALTHY;
  }

  /**
   * Natural batching: with no transaction under way, what has arrived is committed at once (after the current turn
   * of the event loop, so the readings of one message or one socket read go together); while one is under way,
   * readings gather for the next, up to `batchSize`, or `batchDelayMs` at most.
   */
  write(delivery: Item): void {
    this.#inFlight++;
    this.#batcher.add(delivery);
    if (this.#committing > 0 || this.#flushQueued) return;
    this.#flushQueued = true;
    setImmediate(() => {
      this.#flushQueued = false;
      if (this.#committing === 0) this.#batcher.flushNow();
    });
  }

  async #commit(batch: Item[]): Promise<void> {
    const { log, metrics: m } = this.opts;
    const readings = batch.map((d) => d.item);
    let result: WriteResult | undefined;
    for (let attempt = 1; !result; attempt++) {
      try {
        const started = performance.now();
        const limit = this.opts.stallTimeoutMs;
        const slow =
          limit === undefined
            ? undefined
            : setTimeout(() => this.#failing(`commit under way for ${limit / 1000} s`), limit);
        try {
          result = await this.opts.store.writeBatch(readings);
        } finally {
          clearTimeout(slow);
        }
        m.commitSeconds.observe((performance.now() - started) / 1000);
      } catch (err) {
        m.storeErrors.inc();
        this.#failing(err instanceof Error ? err.message : String(err));
        log.error(
          { err: this.#storeError, readings: readings.length, attempt },
          `could not commit batch to ${this.opts.storeName}; nothing acked, retrying`,
        );
        // Stopping: leave the batch unacked, the upstream delivers it again.
        if (this.#stopping.signal.aborted) break;
        await sleep(backoffDelay(attempt, RETRY_MIN_MS, RETRY_MAX_MS), this.#stopping.signal);
        if (this.#stopping.signal.aborted) break;
      }
    }
    this.#inFlight -= batch.length;
    if (!result) return;
    if (this.#storeError) {
      log.info(`${this.opts.storeName} writable again; committed`);
      this.#storeError = undefined;
      this.opts.onStoreFailing?.(false);
    }
    m.stored.inc(result.inserted);
    m.duplicates.inc(result.duplicates);
    if (result.expired > 0) {
      // Acked with the rest: the operator's retention says they are not to be kept, and a retry would not change that.
      m.expired.inc(result.expired);
      log.warn(
        {
          expired: result.expired,
          horizon: result.horizon === undefined ? undefined : new Date(result.horizon).toISOString(),
        },
        "readings older than what retention already deleted were not stored",
      );
    }
    m.batchSize.observe(batch.length);
    const failed = new Set<number>();
    for (const c of result.conflicts) {
      failed.add(c.index);
      m.conflicts.inc();
      batch[c.index]?.fail({ kind: "conflict", reason: c.reason });
    }
    const now = Date.now();
    let newest = 0;
    batch.forEach((d, i) => {
      if (failed.has(i)) return;
      d.ack();
      m.latency.observe((now - d.item.received_at) / 1000);
      if (d.item.received_at > newest) newest = d.item.received_at;
    });
    if (newest) m.lag.set((now - newest) / 1000);
  }

  /** Records why commits fail (what /readyz says) and tells `onStoreFailing` when they start to. */
  #failing(why: string): void {
    const first = this.#storeError === undefined;
    this.#storeError = why;
    if (first) this.opts.onStoreFailing?.(true);
  }

  /**
   * Commits what is batched and waits up to `drainTimeoutMs` for the commits under way; a failing store is not
   * retried any more. What was not committed is not acked: the upstream delivers it again.
   */
  stop(): Promise<void> {
    this.#stopped ??= (async () => {
      this.#batcher.flushNow();
      this.#stopping.abort();
      const timeout = new AbortController();
      const settled = await Promise.race([
        this.#commits.then(() => true),
        sleep(this.opts.drainTimeoutMs, timeout.signal).then(() => false),
      ]);
      timeout.abort();
      if (!settled)
        this.opts.log.warn({ inFlight: this.#inFlight }, "stopping with a commit still under way");
    })();
    return this.#stopped;
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.stop();
  }
}
