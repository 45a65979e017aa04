import { Registry } from "prom-client";
import { type AmqpDelivery, AmqpInput } from "../amqp/input.js";
import type { QueueType } from "../amqp/topology.js";
import { startHttp } from "../common/http.js";
import type { Logger } from "../common/log.js";
import {
  type Failure,
  firstUnhealthy,
  type Health,
  mapDelivery,
  type Running,
  running,
} from "../common/pipeline.js";
import type { AmqpSecurityConfig } from "../common/settings.js";
import { readTls } from "../common/tls.js";
import { SchemaRegistry } from "../schemas/index.js";
import type { ReadingStore } from "../store/index.js";
import { decodeMessage } from "./decode.js";
import { processorMetrics } from "./metrics.js";
import { PrefetchWindow } from "./prefetch.js";
import { type RetentionConfig, startRetention } from "./retention.js";
import { startSilenceGauge } from "./silence.js";
import { StoreSink } from "./store-sink.js";

/** Everything the processor needs, parsed and checked by the CLI (or built by a test); TLS files for `amqps://`. */
export interface ProcessorConfig extends RetentionConfig, AmqpSecurityConfig {
  readonly amqpUrl: string;
  readonly queue: string;
  readonly queueType: QueueType;
  /** Unacknowledged deliveries RabbitMQ may send ahead; at least `batchSize`. */
  readonly prefetch: number;
  /** Readings per transaction at most. */
  readonly batchSize: number;
  /** Longest a delivery waits for its batch to fill before the batch is committed anyway. */
  readonly batchDelayMs: number;
  /** How long SIGTERM waits for the last batches to commit and be acked. */
  readonly drainTimeoutMs: number;
  /** Deliveries waiting (held, or ready on the queue) with nothing committed for this long: /readyz reports a stall. */
  readonly stallTimeoutMs: number;
  readonly httpHost: string;
  readonly httpPort: number;
  /** Folder of the `reading.v<N>.avsc` files to decode with; the installation's `schemas/` when absent. */
  readonly schemasDir?: string | undefined;
  /** Set when the store is PostgreSQL (`DATABASE_URL`): /readyz and the logs name the backend. */
  readonly databaseUrl?: string | undefined;
  /** The SQLite file and `SILENT_MIN`: with both (and SQLite), the processor exports its silent-devices gauge. */
  readonly dbPath?: string | undefined;
  readonly silentMin?: number | undefined;
}

export interface RunningProcessor extends Running {
  readonly httpPort: number;
  readonly registry: Registry;
  health(): Health;
}

/**
 * Starts the processor: AMQP input -> decode -> batch -> store sink. Each delivery travels with its ack, which the
 * sink calls once the transaction holding it has committed; what cannot be decoded or validated, and readings that
 * conflict with a stored one, go to `<QUEUE>.dead`. `store` is opened (and later closed) by the caller. `stop()`
 * stops consuming, commits and acks what is held (bounded by `drainTimeoutMs`) and closes; unacked deliveries are
 * redelivered by RabbitMQ. While the store refuses writes, the processor consumes nothing and hands what it holds
 * back to `<QUEUE>` as new messages (amqp/input.ts, `pause`), retrying its batches until one commits: an outage of
 * any length moves nothing to `<QUEUE>.dead`. `signal` abandons a start still waiting for RabbitMQ: the promise
 * rejects.
 */
export async function startProcessor(
  config: ProcessorConfig,
  store: ReadingStore,
  log: Logger,
  signal?: AbortSignal,
): Promise<RunningProcessor> {
  const schemas = SchemaRegistry.load(config.schemasDir);
  const registry = new Registry();
  const m = processorMetrics(registry);
  let stopping = false;

  const window = new PrefetchWindow(config.prefetch);
  const sink = new StoreSink({
    store,
    storeName: config.databaseUrl ? "PostgreSQL" : "SQLite",
    batchSize: config.batchSize,
    batchDelayMs: config.batchDelayMs,
    drainTimeoutMs: config.drainTimeoutMs,
    stallTimeoutMs: config.stallTimeoutMs,
    log,
    metrics: m,
    onStoreFailing: (failing) => {
      if (!failing) return input.resume();
      log.warn(
        "store failing: not consuming, and handing back held deliveries to the queue until a commit succeeds",
      );
      input.pause();
    },
  });
  const onDelivery = (d: AmqpDelivery) => {
    m.deliveries.inc();
    const decoded = decodeMessage(d.item.body, schemas);
    if (!decoded.ok) return d.fail(decoded.failure);
    m.readingsReceived.inc(decoded.readings.length);
    const prefetch = window.observe(decoded.readings.length);
    if (prefetch !== undefined) input.setPrefetch(prefetch);
    if (!decoded.batch) {
      // One reading: what is set aside is the message itself, bytes and schema version as they came.
      const { reading, problem } = decoded.readings[0]!;
      if (problem) d.fail({ kind: "invalid", reason: problem });
      else sink.write(mapDelivery(d, reading));
      return;
    }
    // A batch: each reading travels on its own and the message is acked once every one is stored or set aside
    // (as a single-reading message on <QUEUE>.dead), so one bad reading never sinks the others.
    let open = decoded.readings.length;
    const settled = () => {
      if (--open === 0) d.ack();
    };
    for (const { reading, problem } of decoded.readings) {
      const setAside = (failure: Failure) => d.setAside(schemas.encode(reading), failure, settled);
      if (problem) setAside({ kind: "invalid", reason: problem });
      else sink.write({ item: reading, ack: settled, fail: setAside });
    }
  };
  const input = new AmqpInput(
    {
      url: config.amqpUrl,
      tls: readTls({ caFile: config.amqpCaFile, certFile: config.amqpCertFile, keyFile: config.amqpKeyFile }),
      queue: config.queue,
      queueType: config.queueType,
      prefetch: window.initial,
      name: "telemetry-processor",
      log,
      drainTimeoutMs: config.drainTimeoutMs,
      stallTimeoutMs: config.stallTimeoutMs,
      onDeadLettered: (failure) => m.dead.inc({ kind: failure.kind }),
      onHandedBack: () => m.handedBack.inc(),
    },
    onDelivery,
  );

  const health = (): Health =>
    stopping ? { ready: false, reason: "stopping" } : firstUnhealthy(input.health(), sink.health());
  // The health endpoint first, so that /readyz tells an orchestrator what the processor is waiting for.
  const http = await startHttp({
    host: config.httpHost,
    port: config.httpPort,
    readiness: health,
    registry,
    beforeMetrics: () => {
      m.held.set(input.held);
      m.heldReadings.set(sink.inFlight);
      m.connected.set(input.connected ? 1 : 0);
      m.queueReady.set(input.queueReady);
    },
  });
  const onAbort = () => void input.stop();
  signal?.addEventListener("abort", onAbort, { once: true });
  try {
    await input.start();
    if (signal?.aborted) throw new Error("start abandoned: the service was told to stop");
  } catch (err) {
    await input.stop();
    await http.close();
    throw err;
  } finally {
    signal?.removeEventListener("abort", onAbort);
  }
  log.info(
    {
      queue: config.queue,
      prefetch: config.prefetch,
      batchSize: config.batchSize,
      httpPort: http.port,
      schemas: schemas.versions.map((v) => v.file),
    },
    "processor started",
  );

  const retention = startRetention(config, store, log, registry);
  // On PostgreSQL, counting silent devices reads every row (there is no per-series rollup there yet): not every 15 s.
  if (config.databaseUrl)
    log.info("no silent-devices gauge on PostgreSQL: ask telemetry status or query devices");
  const silence =
    config.silentMin === undefined || config.dbPath === undefined || config.databaseUrl
      ? undefined
      : await startSilenceGauge(
          { ...config, dbPath: config.dbPath, silentMin: config.silentMin },
          registry,
          log,
        );
  return running({ httpPort: http.port, registry, health }, async () => {
    stopping = true;
    await silence?.stop();
    await retention.stop();
    await input.stop();
    await sink.stop();
    await http.close();
    log.info("processor stopped");
  });
}
