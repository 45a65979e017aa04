import type { ConfirmChannel, ConsumeMessage } from "amqplib";
import { Counter, Gauge, Histogram, Registry } from "prom-client";
import { AmqpSession } from "../amqp/session.js";
import { declareTopology, type QueueType, queueNames } from "../amqp/topology.js";
import { backoffDelay, sleep } from "../common/backoff.js";
import { type HttpEndpoint, type Readiness, startHttp } from "../common/http.js";
import type { Logger } from "../common/log.js";
import { ProgressWatch } from "../common/progress-watch.js";
import { RateLimitedLog } from "../common/rate-limited-log.js";
import { ID_PATTERN } from "../common/settings.js";
import { DecodeError, type Reading, SchemaRegistry } from "../schemas/index.js";
import type { ReadingStore } from "../store/sqlite.js";
import { Batcher } from "./batcher.js";

export interface ProcessorConfig {
  readonly amqpUrl: string;
  readonly queue: string;
  readonly queueType: QueueType;
  /** Unacknowledged deliveries RabbitMQ may send ahead; at least `batchSize`. */
  readonly prefetch: number;
  /** Readings per SQLite transaction at most. */
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
}

export interface RunningProcessor {
  readonly httpPort: number;
  readonly registry: Registry;
  readiness(): Readiness;
  /** Stops consuming, commits and acks what it holds (bounded by `drainTimeoutMs`), closes. Unacked deliveries are redelivered by RabbitMQ. */
  stop(): Promise<void>;
}

type Failure = { readonly kind: string; readonly reason: string };
interface Item {
  readonly msg: ConsumeMessage;
  readonly channel: ConfirmChannel;
  readonly reading?: Reading;
  readonly failure?: Failure;
}

function createMetrics(registry: Registry) {
  const opts = { registers: [registry] };
  return {
    deliveries: new Counter({
      name: "telemetry_processor_deliveries_total",
      help: "Messages received from <QUEUE>",
      ...opts,
    }),
    stored: new Counter({
      name: "telemetry_processor_readings_stored_total",
      help: "Rows committed to SQLite",
      ...opts,
    }),
    duplicates: new Counter({
      name: "telemetry_processor_duplicates_total",
      help: "Readings already stored (redelivered or resent), not written again",
      ...opts,
    }),
    dead: new Counter({
      name: "telemetry_processor_dead_lettered_total",
      help: "Messages sent to <QUEUE>.dead, by failure kind",
      labelNames: ["kind"] as const,
      ...opts,
    }),
    storeErrors: new Counter({
      name: "telemetry_processor_store_errors_total",
      help: "Batches that failed to commit (retried; nothing acked)",
      ...opts,
    }),
    held: new Gauge({
      name: "telemetry_processor_inflight_deliveries",
      help: "Deliveries received and not yet acked",
      ...opts,
    }),
    connected: new Gauge({ name: "telemetry_processor_amqp_connected", help: "1 when connected", ...opts }),
    queueReady: new Gauge({
      name: "telemetry_processor_queue_ready_messages",
      help: "Messages ready on <QUEUE> at the last check (the backlog)",
      ...opts,
    }),
    lag: new Gauge({
      name: "telemetry_processor_lag_seconds",
      help: "Age (now - gateway receive time) of the newest reading committed",
      ...opts,
    }),
    batchSize: new Histogram({
      name: "telemetry_processor_batch_size",
      help: "Deliveries per committed batch",
      buckets: [1, 10, 50, 100, 250, 500, 1000, 2500, 5000],
      ...opts,
    }),
    commitSeconds: new Histogram({
      name: "telemetry_processor_commit_seconds",
      help: "Time to write and commit one batch",
      buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1],
      ...opts,
    }),
    latency: new Histogram({
      name: "telemetry_processor_latency_seconds",
      help: "From gateway receive to SQLite commit, per reading",
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5, 30],
      ...opts,
    }),
  };
}

/** Checks what Avro cannot: the ids and value rules of the contract, for messages from any writer. */
function invalidReason(r: Reading): string | undefined {
  if (!ID_PATTERN.test(r.device_id)) return "device_id breaks the id rules";
  if (!ID_PATTERN.test(r.sensor)) return "sensor breaks the id rules";
  if (!Number.isFinite(r.value)) return "value is not a finite number";
  return undefined;
}

/** Starts the processor: opens nothing itself but the health endpoint and RabbitMQ; `store` is already open. */
export async function startProcessor(
  config: ProcessorConfig,
  store: ReadingStore,
  log: Logger,
): Promise<RunningProcessor> {
  const schemas = SchemaRegistry.load(config.schemasDir);
  const names = queueNames(config.queue);
  const registry = new Registry();
  const m = createMetrics(registry);
  const deadLog = new RateLimitedLog(log, "dead-lettered a message");
  let channel: ConfirmChannel | undefined;
  let consumerTag: string | undefined;
  let stopping = false;
  let held = 0;
  let commits: Promise<void> = Promise.resolve();
  let storeError: string | undefined;
  /** Ready messages on the queue at the last check: work waiting that has not been delivered. */
  let queueReady = 0;
  const progress = new ProgressWatch(config.stallTimeoutMs);

  const publishDead = (ch: ConfirmChannel, item: Item, failure: Failure) =>
    new Promise<void>((resolve, reject) => {
      const p = item.msg.properties;
      ch.publish(
        "",
        names.dead,
        item.msg.content,
        {
          persistent: true,
          contentType: p.contentType,
          messageId: p.messageId,
          timestamp: p.timestamp,
          headers: {
            ...p.headers,
            "x-failure-kind": failure.kind,
            "x-failure-reason": failure.reason,
            "x-original-queue": names.readings,
          },
        },
        (err) => (err ? reject(err) : resolve()),
      );
    });

  const commit = async (items: Item[]): Promise<void> => {
    const ch = items[0]!.channel;
    if (ch !== channel) return; // the channel these came on is gone; RabbitMQ redelivers them
    const readings: Reading[] = [];
    for (const it of items) if (it.reading) readings.push(it.reading);
    let attempt = 0;
    for (;;) {
      try {
        const started = performance.now();
        const result = await store.writeBatch(readings);
        m.commitSeconds.observe((performance.now() - started) / 1000);
        m.stored.inc(result.inserted);
        m.duplicates.inc(result.duplicates);
        if (storeError) log.info({ attempts: attempt + 1 }, "SQLite writable again; committing");
        storeError = undefined;
        break;
      } catch (err) {
        m.storeErrors.inc();
        attempt++;
        storeError = err instanceof Error ? err.message : String(err);
        log.error(
          { err: err instanceof Error ? err.message : String(err), readings: readings.length, attempt },
          "could not commit batch to SQLite; nothing acked, retrying",
        );
        if (stopping || ch !== channel) return;
        await sleep(backoffDelay(attempt, 100, 5_000));
        if (ch !== channel) return;
      }
    }
    const failures = items.filter((it) => it.failure);
    for (const it of failures) {
      deadLog.warn({
        kind: it.failure!.kind,
        reason: it.failure!.reason,
        messageId: it.msg.properties.messageId,
      });
    }
    try {
      await Promise.all(failures.map((it) => publishDead(ch, it, it.failure!)));
      ch.ack(items.at(-1)!.msg, true);
    } catch (err) {
      log.warn(
        { err: err instanceof Error ? err.message : String(err) },
        "ack failed; RabbitMQ redelivers the batch",
      );
      return;
    }
    held -= items.length;
    progress.touch();
    for (const it of failures) m.dead.inc({ kind: it.failure!.kind });
    m.batchSize.observe(items.length);
    const now = Date.now();
    let newest = 0;
    for (const r of readings) {
      m.latency.observe((now - r.received_at) / 1000);
      if (r.received_at > newest) newest = r.received_at;
    }
    if (newest) m.lag.set((now - newest) / 1000);
  };

  const batcher = new Batcher<Item>(config.batchSize, config.batchDelayMs, (items) => {
    commits = commits.then(() => commit(items));
  });

  const onDelivery = (ch: ConfirmChannel, msg: ConsumeMessage | null) => {
    if (msg === null) {
      log.warn("consumer cancelled by RabbitMQ (queue deleted?); reconnecting");
      ch.close().catch(() => undefined);
      return;
    }
    m.deliveries.inc();
    if (held === 0) progress.touch();
    held++;
    let item: Item;
    try {
      const reading = schemas.decode(msg.content);
      const bad = invalidReason(reading);
      item = bad
        ? { msg, channel: ch, failure: { kind: "invalid", reason: bad } }
        : { msg, channel: ch, reading };
    } catch (err) {
      const kind = err instanceof DecodeError ? err.kind : "invalid";
      item = {
        msg,
        channel: ch,
        failure: { kind, reason: err instanceof Error ? err.message : String(err) },
      };
    }
    batcher.add(item);
  };

  const session = new AmqpSession({
    url: config.amqpUrl,
    name: "telemetry-processor",
    log,
    onConnect: async (conn) => {
      const ch = await conn.createConfirmChannel();
      ch.on("error", (err: Error) => log.warn({ err: err.message }, "amqp channel error"));
      ch.on("close", () => {
        if (channel === ch) channel = undefined;
        // stop() closes the channel itself and then the session; otherwise a dead channel means reconnect.
        if (!stopping) conn.close().catch(() => undefined);
      });
      await declareTopology(ch, config.queue, config.queueType);
      await ch.prefetch(config.prefetch);
      channel = ch;
      held = 0;
      const ok = await ch.consume(names.readings, (msg) => onDelivery(ch, msg), { noAck: false });
      consumerTag = ok.consumerTag;
    },
    onDisconnect: () => {
      channel = undefined;
      consumerTag = undefined;
      batcher.clear();
      held = 0;
    },
  });

  const readiness = (): Readiness => {
    if (stopping) return { ready: false, reason: "stopping" };
    if (!session.connected || !channel) return { ready: false, reason: "rabbitmq not connected" };
    if (!consumerTag) return { ready: false, reason: "not consuming" };
    if (storeError) return { ready: false, reason: `cannot commit to SQLite: ${storeError}` };
    const stalled = progress.stalledFor(held > 0 || queueReady > 0);
    if (stalled !== undefined) {
      return {
        ready: false,
        reason: `stalled: ${held} deliveries held, ${queueReady} ready on the queue, nothing committed for ${Math.round(stalled / 1000)} s`,
      };
    }
    return { ready: true };
  };
  const http: HttpEndpoint = await startHttp({
    host: config.httpHost,
    port: config.httpPort,
    readiness,
    registry,
    beforeMetrics: () => {
      m.held.set(held);
      m.connected.set(session.connected ? 1 : 0);
      m.queueReady.set(queueReady);
    },
  });
  try {
    await session.start();
  } catch (err) {
    await http.close();
    throw err;
  }
  // Catches "connected but not consuming": messages ready on the queue that never reach us.
  const queueCheck = setInterval(
    () => {
      const ch = channel;
      if (!ch) return;
      ch.checkQueue(names.readings).then(
        (q) => {
          if (queueReady === 0 && q.messageCount > 0 && held === 0) progress.touch();
          queueReady = q.messageCount;
        },
        () => undefined,
      );
    },
    Math.max(1_000, Math.floor(config.stallTimeoutMs / 3)),
  );
  queueCheck.unref();
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

  return {
    httpPort: http.port,
    registry,
    readiness,
    async stop() {
      stopping = true;
      clearInterval(queueCheck);
      const ch = channel;
      if (ch && consumerTag) await ch.cancel(consumerTag).catch(() => undefined);
      consumerTag = undefined;
      batcher.flushNow();
      const timeout = new AbortController();
      const drained = await Promise.race([
        commits.then(() => true),
        sleep(config.drainTimeoutMs, timeout.signal).then(() => false),
      ]);
      timeout.abort();
      if (!drained) log.warn({ held }, "stopping with deliveries unacked; RabbitMQ redelivers them");
      // Close the channel before the connection: RabbitMQ drops the acks still on their way when the connection
      // closes at once, and redelivers batches already committed. close-ok comes after every earlier ack.
      const open = channel;
      if (open) await open.close().catch(() => undefined);
      await session.close();
      deadLog.flush();
      await http.close();
      log.info("processor stopped");
    },
  };
}
