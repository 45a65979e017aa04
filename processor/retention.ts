/**
 * Retention (`RETENTION`, `RETENTION_1M`, `RETENTION_1H`, `RETENTION_1D`; docs/operations.md, "Retention"): the
 * processor deletes readings, and rows of each rollup tier, older than their retention period in small
 * transactions on the store's own thread, so ingestion goes on beside a long deletion.
 */
import { setTimeout as sleep } from "node:timers/promises";
import { Counter, type Registry } from "prom-client";
import type { Logger } from "../common/log.js";
import { type Running, running } from "../common/pipeline.js";
import type { ReadingStore } from "../store/index.js";
import { bucketStart, TIERS, type TierTable } from "../store/tiers.js";

/** The processor's retention settings; each undefined keeps everything of its kind. */
export interface RetentionConfig {
  /** Readings whose `ts` is older than now minus this are deleted. */
  readonly retentionMs?: number | undefined;
  /** Rows of `rollup_1m`, `rollup_1h`, `rollup_1d` whose bucket starts before now minus these are deleted. */
  readonly retention1mMs?: number | undefined;
  readonly retention1hMs?: number | undefined;
  readonly retention1dMs?: number | undefined;
}

/** How often a pass looks for old rows: the contract says at least once a minute. */
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

/** One kind of row retention deletes: raw readings or one tier. */
interface Job {
  readonly retentionMs: number;
  /** The cutoff for a time: a tier's is rounded down to its bucket width, so it deletes whole buckets only. */
  cutoff(now: number): number;
  delete(cutoff: number, limit: number): Promise<number>;
  readonly counter: { inc(n: number): void };
  readonly fields: Record<string, string>;
  readonly what: string;
}

const TIER_RETENTION: Record<TierTable, keyof RetentionConfig> = {
  rollup_1m: "retention1mMs",
  rollup_1h: "retention1hMs",
  rollup_1d: "retention1dMs",
};

/**
 * Starts the retention loop when any retention is set (else returns a no-op): a pass at once, then one every
 * {@link RETENTION_CHECK_MS}. A pass takes, per configured kind, the cutoff now - retention (for a tier, rounded
 * down to its bucket width) and calls `store.deleteOlderThan` (or `deleteTierOlderThan`) until it deletes fewer
 * than a batch; after each batch it waits three times as long as the batch took, so deletion holds the store's
 * thread at most about a quarter of the time while it catches up. Each kind whose pass deletes logs its rows and
 * duration (an empty pass only at debug) and adds to `telemetry_processor_retention_deleted_total` (readings) or
 * `telemetry_processor_tier_retention_deleted_total{tier}` (tier rows) on `registry`. A failed batch is logged and
 * tried again by the next pass. `stop()` lets the batch under way commit and ends the loop.
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
  const tierDeletedTotal = new Counter({
    name: "telemetry_processor_tier_retention_deleted_total",
    help: "Rollup tier rows deleted because their bucket started before RETENTION_1M, RETENTION_1H or RETENTION_1D",
    labelNames: ["tier"] as const,
    registers: [registry],
  });
  const jobs: Job[] = [];
  if (config.retentionMs !== undefined) {
    const retentionMs = config.retentionMs;
    jobs.push({
      retentionMs,
      cutoff: (now) => now - retentionMs,
      delete: (cutoff, limit) => store.deleteOlderThan(cutoff, limit),
      counter: deletedTotal,
      fields: {},
      what: "old readings",
    });
  }
  for (const t of TIERS) {
    const retentionMs = config[TIER_RETENTION[t.table]];
    if (retentionMs === undefined) continue;
    const tier = t.table.slice("rollup_".length);
    jobs.push({
      retentionMs,
      cutoff: (now) => bucketStart(now - retentionMs, t.ms),
      delete: (cutoff, limit) => store.deleteTierOlderThan(t.table, cutoff, limit),
      counter: tierDeletedTotal.labels(tier),
      fields: { tier },
      what: `old ${t.table} rows`,
    });
  }
  if (jobs.length === 0) return running({}, async () => undefined);
  const { checkMs = RETENTION_CHECK_MS, batchRows = RETENTION_BATCH_ROWS, now = Date.now } = opts;
  const stopping = new AbortController();

  const pass = async (job: Job): Promise<void> => {
    const cutoff = job.cutoff(now());
    const started = performance.now();
    let deleted = 0;
    for (;;) {
      const t = performance.now();
      const n = await job.delete(cutoff, batchRows);
      deleted += n;
      job.counter.inc(n);
      if (n < batchRows || stopping.signal.aborted) break;
      await sleep(PAUSE_FACTOR * (performance.now() - t), undefined, { signal: stopping.signal });
    }
    const fields = {
      ...job.fields,
      deleted,
      ms: Math.round(performance.now() - started),
      cutoff: new Date(cutoff).toISOString(),
    };
    if (deleted > 0) log.info(fields, `retention pass deleted ${job.what}`);
    else log.debug(fields, `retention pass: no ${job.what} before the cutoff`);
  };

  const loop = (async () => {
    while (!stopping.signal.aborted) {
      for (const job of jobs) {
        if (stopping.signal.aborted) break;
        try {
          await pass(job);
        } catch (err) {
          if (stopping.signal.aborted) break;
          log.warn(
            { ...job.fields, err: err instanceof Error ? err.message : String(err) },
            "retention pass failed; trying again at the next check",
          );
        }
      }
      await sleep(checkMs, undefined, { signal: stopping.signal }).catch(() => undefined);
    }
  })();
  log.info(
    {
      retentionMs: config.retentionMs,
      retention1mMs: config.retention1mMs,
      retention1hMs: config.retention1hMs,
      retention1dMs: config.retention1dMs,
      checkMs,
    },
    "retention on: deleting rows older than their retention period",
  );

  return running({}, async () => {
    stopping.abort();
    await loop;
  });
}
