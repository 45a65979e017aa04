/**
 * Retention (`RETENTION`; docs/operations.md, "Retention: `RETENTION`"): the processor deletes readings older than
 * the retention period in small transactions on the store's own thread, so ingestion goes on beside a long deletion.
 */
import { setTimeout as sleep } from "node:timers/promises";
import { Counter, type Registry } from "prom-client";
import type { Logger } from "../common/log.js";
import { type Running, running } from "../common/pipeline.js";
import type { ReadingStore } from "../store/index.js";

/** The processor's retention setting. */
export interface RetentionConfig {
  /** Readings whose `ts` is older than now minus this are deleted; undefined keeps everything. */
  readonly retentionMs?: number | undefined;
}

/** How often a pass looks for old readings: the contract says at least once a minute. */
export const RETENTION_CHECK_MS = 60_000;
/**
 * Rows per delete transaction: tens of ms of the store's thread, so a batch write waits at most that long. 5,000
 * took ~170 ms each beside ingestion and cut its rate from 17,200/s to 4,600/s (bench/retention.ts).
 */
export const RETENTION_BATCH_ROWS = 1_000;
/** After each delete transaction, pause this many times as long as it took: ingestion keeps 3/4 of the thread. */
const PAUSE_FACTOR = 3;

/** Knobs for tests; the defaults are the product's. */
export interface RetentionOptions {
  readonly checkMs?: number;
  readonly batchRows?: number;
  /** The clock the cutoff is taken from. */
  readonly now?: () => number;
}

/**
 * Starts the retention loop when `config.retentionMs` is set (else returns a no-op): a pass at once, then one every
 * {@link RETENTION_CHECK_MS}. A pass takes the cutoff now - retentionMs and calls `store.deleteOlderThan` until it
 * deletes fewer than a batch; after each batch it waits three times as long as the batch took, so deletion holds
 * the store's thread at most about a quarter of the time while it catches up. Each pass that deletes logs its rows and duration (an
 * empty pass only at debug) and adds to `telemetry_processor_retention_deleted_total` on `registry`. A failed batch
 * is logged and tried again by the next pass. `stop()` lets the batch under way commit and ends the loop.
 */
export function startRetention(
  config: RetentionConfig,
  store: ReadingStore,
  log: Logger,
  registry: Registry,
  opts: RetentionOptions = {},
): Running {
  const deletedTotal = new Counter({
    name: "telemetry_processor_retention_deleted_total",
    help: "Readings deleted because they were older than RETENTION",
    registers: [registry],
  });
  const retentionMs = config.retentionMs;
  if (retentionMs === undefined) return running({}, async () => undefined);
  const { checkMs = RETENTION_CHECK_MS, batchRows = RETENTION_BATCH_ROWS, now = Date.now } = opts;
  const stopping = new AbortController();

  const pass = async (): Promise<void> => {
    const cutoff = now() - retentionMs;
    const started = performance.now();
    let deleted = 0;
    for (;;) {
      const t = performance.now();
      const n = await store.deleteOlderThan(cutoff, batchRows);
      deleted += n;
      deletedTotal.inc(n);
      if (n < batchRows || stopping.signal.aborted) break;
      await sleep(PAUSE_FACTOR * (performance.now() - t), undefined, { signal: stopping.signal });
    }
    const fields = {
      deleted,
      ms: Math.round(performance.now() - started),
      cutoff: new Date(cutoff).toISOString(),
    };
    if (deleted > 0) log.info(fields, "retention pass deleted old readings");
    else log.debug(fields, "retention pass: nothing older than the cutoff");
  };

  const loop = (async () => {
    while (!stopping.signal.aborted) {
      try {
        await pass();
      } catch (err) {
        if (stopping.signal.aborted) break;
        log.warn(
          { err: err instanceof Error ? err.message : String(err) },
          "retention pass failed; trying again at the next check",
        );
      }
      await sleep(checkMs, undefined, { signal: stopping.signal }).catch(() => undefined);
    }
  })();
  log.info({ retentionMs, checkMs }, "retention on: deleting readings older than the retention period");

  return running({}, async () => {
    stopping.abort();
    await loop;
  });
}
