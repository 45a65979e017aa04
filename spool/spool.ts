import type { Registry } from "prom-client";
import type { ByteBudget } from "../common/byte-budget.js";
import type { Logger } from "../common/log.js";
import type { OutgoingBatch } from "../common/outgoing.js";
import { firstUnhealthy, type Health, type Running, running, type Sink } from "../common/pipeline.js";
import { type SpoolInput, startSpoolInput } from "./input.js";
import { spoolMetrics } from "./metrics.js";
import { SpoolSink } from "./sink.js";
import { type FullPolicy, SpoolStore } from "./store.js";

/** The spool's part of the gateway's configuration. */
export interface SpoolConfig {
  readonly path: string;
  readonly maxBytes: number;
  readonly maxAgeMs: number;
  readonly full: FullPolicy;
  /** On stop, how long to wait for records in flight to RabbitMQ to be confirmed (the rest stays spooled). */
  readonly drainTimeoutMs: number;
  /** The gateway's byte budget, which bounds the drain's window in bytes too (see spool/input.ts). */
  readonly budget?: ByteBudget | undefined;
}

/** A started spool between the gateway's encode step and its uplink sink. */
export interface RunningSpool extends Running {
  /** Where the gateway writes: acks (PUBACK) once a batch is durable in the spool. */
  readonly sink: Sink<OutgoingBatch>;
  readonly input: SpoolInput;
  readonly store: SpoolStore;
  /** Not ready only when the spool is full (block) or failing; an uplink outage is what the spool is for. */
  health(): Health;
  /** Sets the spool's gauges; `uplinkUp` tells whether the uplink sink takes publishes now. */
  updateMetrics(uplinkUp: boolean): void;
}

/**
 * Opens the spool in `config.path` (cutting a torn tail) and starts its two halves: the sink the gateway writes
 * into, and the input that drains it into `uplink` (the AMQP sink), marking records done as RabbitMQ confirms them.
 * `stop()` stops taking batches, waits for appends and (up to `drainTimeoutMs`) for confirms, and closes the files;
 * the caller stops `uplink` afterwards. Throws when the directory cannot be used.
 */
export function startSpool(
  config: SpoolConfig,
  uplink: Sink<OutgoingBatch>,
  registry: Registry,
  log: Logger,
): RunningSpool {
  const m = spoolMetrics(registry);
  const store = SpoolStore.open({
    dir: config.path,
    maxBytes: config.maxBytes,
    maxAgeMs: config.maxAgeMs,
    full: config.full,
    log,
    onDrop: (reason, _records, messages) => m.dropped.inc({ reason }, messages),
  });
  const opened = store.depth();
  log.info(
    {
      path: config.path,
      records: opened.records,
      readings: opened.messages,
      bytes: opened.bytes,
      segments: opened.segments,
    },
    "spool opened",
  );
  const sink = new SpoolSink(store, uplink);
  const input = startSpoolInput(store, uplink, {
    log,
    drainTimeoutMs: config.drainTimeoutMs,
    budget: config.budget,
    onDone: (messages, backlog) => m.drained.inc({ from: backlog ? "backlog" : "live" }, messages),
  });
  return running(
    {
      sink,
      input,
      store,
      health: () => firstUnhealthy(sink.health(), input.health()),
      updateMetrics(uplinkUp: boolean) {
        const d = store.depth();
        m.depthReadings.set(d.messages);
        m.depthRecords.set(d.records);
        m.depthBytes.set(d.bytes);
        m.oldestAge.set(d.oldestAppendedAt === undefined ? 0 : (Date.now() - d.oldestAppendedAt) / 1_000);
        m.full.set(store.full ? 1 : 0);
        m.uplinkUp.set(uplinkUp ? 1 : 0);
      },
    },
    async () => {
      await sink.stop();
      await input.stop();
      store.close();
    },
  );
}
