import { defineCommand } from "../common/command.js";
import { effectiveConfig, parsers, setting } from "../common/config.js";
import { createLogger } from "../common/log.js";
import { runUntilSignal } from "../common/service.js";
import {
  amqpSecurity,
  common,
  httpHost,
  httpPort,
  securityProblem,
  stallTimeout,
} from "../common/settings.js";
import { params } from "../query/params.js";
import { SchemaRegistry } from "../schemas/index.js";
import { openStore } from "../store/index.js";
import { startProcessor } from "./processor.js";

/** Default port of the processor's /healthz, /readyz and /metrics. */
export const PROCESSOR_HTTP_PORT = 9_465;
/** RETENTION and RETENTION_1M/1H/1D bounds: an hour at least (shorter is more likely a missing `d` than a wish), a century at most. */
const MIN_RETENTION_MS = 3_600_000;
const MAX_RETENTION_MS = 36_500 * 86_400_000;

export const processorCommand = defineCommand({
  name: "processor",
  usage: "telemetry processor [options]",
  summary:
    "Consumes <QUEUE>, stores readings in SQLite in batches (one transaction each) and acks each delivery only\n" +
    "after the transaction holding it has committed. Each (device_id, sensor, ts) is stored once. What it cannot\n" +
    "decode or validate goes to <QUEUE>.dead with the reason. Runs until SIGINT/SIGTERM.",
  spec: {
    amqpUrl: common.amqpUrl,
    ...amqpSecurity,
    queue: common.queue,
    queueType: common.queueType,
    dbPath: common.dbPath,
    databaseUrl: common.databaseUrl,
    prefetch: setting({
      flag: "prefetch",
      env: "PREFETCH",
      default: 2_000,
      description:
        "Readings the processor may hold unacknowledged, about (bounds memory): RabbitMQ counts messages, so the window follows the mean readings per message, at least 4 messages. At least --batch-size.",
      parse: parsers.int(1, 65_535),
    }),
    batchSize: setting({
      flag: "batch-size",
      env: "BATCH_SIZE",
      default: 500,
      description: "Readings per SQLite transaction at most.",
      parse: parsers.int(1, 10_000),
    }),
    batchDelayMs: setting({
      flag: "batch-delay",
      env: "BATCH_DELAY",
      default: 50,
      description: "Longest a reading waits for its batch to fill before it is committed anyway (e.g. 50ms).",
      parse: parsers.duration(0, 10_000),
    }),
    drainTimeoutMs: setting({
      flag: "drain-timeout",
      env: "DRAIN_TIMEOUT",
      default: 10_000,
      description: "On SIGTERM, how long to wait for the last batches to commit.",
      parse: parsers.duration(0, 600_000),
    }),
    stallTimeoutMs: stallTimeout,
    silentMin: params.silentMin,
    retentionMs: setting({
      flag: "retention",
      env: "RETENTION",
      default: undefined as number | undefined,
      defaultLabel: "unset: keep everything",
      description:
        "Delete readings whose ts is older than this (e.g. 90d), in small batches beside ingestion, checked every minute.",
      parse: parsers.duration(MIN_RETENTION_MS, MAX_RETENTION_MS),
    }),
    retention1mMs: setting({
      flag: "retention-1m",
      env: "RETENTION_1M",
      default: undefined as number | undefined,
      defaultLabel: "unset: keep every row",
      description:
        "Delete rows of the rollup tier rollup_1m (per minute) whose bucket starts before this long ago (e.g. 30d), in small batches, checked every minute.",
      parse: parsers.duration(MIN_RETENTION_MS, MAX_RETENTION_MS),
    }),
    retention1hMs: setting({
      flag: "retention-1h",
      env: "RETENTION_1H",
      default: undefined as number | undefined,
      defaultLabel: "unset: keep every row",
      description:
        "Delete rows of the rollup tier rollup_1h (per hour) whose bucket starts before this long ago (e.g. 730d), in small batches, checked every minute.",
      parse: parsers.duration(MIN_RETENTION_MS, MAX_RETENTION_MS),
    }),
    retention1dMs: setting({
      flag: "retention-1d",
      env: "RETENTION_1D",
      default: undefined as number | undefined,
      defaultLabel: "unset: keep every row",
      description:
        "Delete rows of the rollup tier rollup_1d (per day) whose bucket starts before this long ago (e.g. 3650d), in small batches, checked every minute.",
      parse: parsers.duration(MIN_RETENTION_MS, MAX_RETENTION_MS),
    }),
    schemasDir: setting({
      flag: "schemas-dir",
      env: "SCHEMAS_DIR",
      default: undefined as string | undefined,
      defaultLabel: "the schemas/ folder of the installation",
      description:
        "Folder of the reading.v<N>.avsc files to decode with (the highest is current); to read a newer gateway's messages, one that also holds its version.",
      parse: (raw) => {
        SchemaRegistry.load(raw); // refuses, before anything connects, a folder it could not decode with
        return raw;
      },
    }),
    httpHost,
    httpPort: httpPort(PROCESSOR_HTTP_PORT),
    logLevel: common.logLevel,
  },
  check: (c) =>
    securityProblem(c) ??
    (c.prefetch < c.batchSize
      ? `--prefetch (${c.prefetch}) must be at least --batch-size (${c.batchSize}), or batches could never fill`
      : undefined),
  run: async (config) => {
    const log = createLogger("processor", config.logLevel);
    // Every setting as it took effect, secrets as ***: what an operator compares with what they meant to set.
    log.info({ config: effectiveConfig(processorCommand.spec, config) }, "configuration");
    const store = await openStore(config);
    try {
      return await runUntilSignal(log, (signal) => startProcessor(config, store, log, signal));
    } finally {
      await store.stop();
    }
  },
});
