import { readFileSync } from "node:fs";
import { join } from "node:path";
import amqp from "amqplib";
import { pino } from "pino";
import { expect, vi } from "vitest";
import { queueNames } from "../../amqp/topology.js";
import { NO_FAULTS } from "../../simulators/model.js";
import { type SimulateSummary, simulate } from "../../simulators/publish.js";
import type { SimReading } from "../../simulators/sensors.js";
import { DEFAULT_SENSORS } from "../../simulators/sensors.js";
import {
  countRows,
  httpGet,
  type Row,
  readRows,
  type Service,
  type TestNames,
  testNames,
} from "./services.js";

/** A test's own names, pointed at the brokers given instead of the shared ones. */
export function faultNames(label: string, brokers: { mqttUrl?: string; amqpUrl?: string }): TestNames {
  const names = testNames(label);
  const mqttUrl = brokers.mqttUrl ?? names.mqttUrl;
  const amqpUrl = brokers.amqpUrl ?? names.amqpUrl;
  return { ...names, mqttUrl, amqpUrl, env: { ...names.env, MQTT_URL: mqttUrl, AMQP_URL: amqpUrl } };
}

/** A simulator publishing in this process, recording every reading the MQTT broker acknowledged. */
export interface Stream {
  readonly recordPath: string;
  /** Resolves with the simulator's summary once every publish has its PUBACK. */
  readonly done: Promise<SimulateSummary>;
  /** Messages acknowledged by the MQTT broker so far. */
  acked(): number;
  /** The simulator's log lines so far (info and above). */
  readonly logs: Record<string, unknown>[];
}

/**
 * Starts the simulator: 20 devices of its own, `count` readings at `rate`/s. Several streams can run in one test
 * when each has its own `label` (default "sim"): it names their devices (`<label>-...`) and record file, so their
 * keys never meet.
 */
export function startStream(
  names: TestNames,
  opts: { count: number; rate: number; seed: number; label?: string },
): Stream {
  const label = opts.label ?? "sim";
  const recordPath = join(names.dir, label === "sim" ? "sent.ndjson" : `sent-${label}.ndjson`);
  let acked = 0;
  const logs: Record<string, unknown>[] = [];
  const log = pino({ level: "info" }, { write: (line: string) => logs.push(JSON.parse(line)) });
  const done = simulate(
    {
      mqttUrl: names.mqttUrl,
      topicPrefix: names.topicPrefix,
      devices: 20,
      sensors: DEFAULT_SENSORS,
      devicePrefix: label,
      rate: opts.rate,
      count: opts.count,
      window: 500,
      faults: NO_FAULTS,
      batchSize: 1,
      seed: opts.seed,
      recordPath,
    },
    {
      log,
      onAck: () => {
        acked++;
      },
    },
  );
  // The test awaits it later; keep a rejection from counting as unhandled in between.
  done.catch(() => undefined);
  return { recordPath, done, acked: () => acked, logs };
}

/** The value of a Prometheus counter or gauge without labels (0 when absent). */
export async function metric(port: number, name: string): Promise<number> {
  const { body } = await httpGet(port, "/metrics");
  const line = body.split("\n").find((l) => l.startsWith(`${name} `));
  return line ? Number(line.slice(name.length + 1)) : 0;
}

/** The sum of every series of a Prometheus metric, labelled or not (0 when absent). */
export async function metricTotal(port: number, name: string): Promise<number> {
  const { body } = await httpGet(port, "/metrics");
  let sum = 0;
  for (const line of body.split("\n")) {
    if (line.startsWith(`${name} `) || line.startsWith(`${name}{`))
      sum += Number(line.slice(line.lastIndexOf(" ") + 1));
  }
  return sum;
}

/** What one processor process did with the deliveries it took, from its /metrics. */
export interface ProcessorCounts {
  readonly deliveries: number;
  readonly stored: number;
  readonly duplicates: number;
  readonly deadLettered: number;
}

/**
 * Checks that one processor process accounted for every delivery it took; call it once the stream is stored
 * (after `expectStoredExactlyOnce`). Waits until the processor holds no delivery, then expects:
 * - `readings_stored_total` to be the rows it added (`rowsAdded`: rows now minus rows when it started), so a
 *   redelivered reading whose key was stored already did not count as stored;
 * - every reading received (a batch message holds many) to be a new row, a duplicate or dead-lettered:
 *   readings received = stored + duplicates + dead. So
 *   `duplicates_total` is exactly the number of redelivered (or resent) readings that found their key stored.
 *   With `reconnected` (its AMQP connection was lost while it held deliveries) a message can come twice whose
 *   first copy was dropped uncommitted, which no counter records: deliveries >= stored + duplicates + dead.
 */
export async function expectDeliveriesAccounted(
  processor: Service,
  rowsAdded: number,
  opts: { reconnected?: boolean } = {},
): Promise<ProcessorCounts> {
  await until("the processor holds no delivery", 30_000, async () => {
    return (await metric(processor.httpPort, "telemetry_processor_inflight_deliveries")) === 0;
  });
  const counts: ProcessorCounts = {
    deliveries: await metric(processor.httpPort, "telemetry_processor_readings_received_total"),
    stored: await metric(processor.httpPort, "telemetry_processor_readings_stored_total"),
    duplicates: await metric(processor.httpPort, "telemetry_processor_duplicates_total"),
    deadLettered: await metricTotal(processor.httpPort, "telemetry_processor_dead_lettered_total"),
  };
  expect(counts.stored, "rows this processor added").toBe(rowsAdded);
  const settled = counts.stored + counts.duplicates + counts.deadLettered;
  if (opts.reconnected)
    expect(counts.deliveries, "readings received and not stored, duplicate or dead").toBeGreaterThanOrEqual(
      settled,
    );
  else expect(counts.deliveries, "readings received = stored + duplicates + dead-lettered").toBe(settled);
  return counts;
}

/** What `expectStoredThroughReconnect` found: the stream's counts, the processor's and the gateway's. */
export interface ReconnectCounts extends StreamCounts {
  readonly duplicates: number;
  readonly deliveries: number;
  readonly gatewayPublished: number;
}

/**
 * The end of a test whose gateway and processor both lost RabbitMQ and reconnected by themselves: every reading
 * acknowledged to the simulator stored exactly once (`expectStoredExactlyOnce`), every delivery the processor took
 * accounted for although a message may have come twice (`expectDeliveriesAccounted`, reconnected), and the gateway
 * published at least every row (what it published before the fault and again after counts twice).
 */
export async function expectStoredThroughReconnect(
  names: TestNames,
  stream: Stream,
  services: { readonly gateway: Service; readonly processor: Service },
  timeoutMs?: number,
): Promise<ReconnectCounts> {
  const counts = await expectStoredExactlyOnce(names, stream, timeoutMs);
  const { duplicates, deliveries } = await expectDeliveriesAccounted(services.processor, counts.stored, {
    reconnected: true,
  });
  const gatewayPublished = await metric(
    services.gateway.httpPort,
    "telemetry_gateway_readings_published_total",
  );
  expect(gatewayPublished, "readings the gateway published").toBeGreaterThanOrEqual(counts.stored);
  return { ...counts, duplicates, deliveries, gatewayPublished };
}

/** One reading as the simulator recorded it (its `SimReading`, one JSON line) once the MQTT broker acknowledged it. */
export type Recorded = SimReading;

/** The readings a stream recorded (its `recordPath`), in acknowledgement order. */
export function readRecorded(recordPath: string): Recorded[] {
  return readFileSync(recordPath, "utf8")
    .split("\n")
    .filter(Boolean)
    .map((l) => JSON.parse(l) as Recorded);
}

/** A stored row as the checks compare it with what was sent. */
export type StoredReading = Pick<
  Row,
  "device_id" | "sensor" | "ts" | "value" | "unit" | "seq" | "gateway_id"
>;

/** Where a check reads the rows: the test's SQLite file, or another store (PostgreSQL, postgres-stream.ts). */
export interface StoredReadings {
  count(): Promise<number>;
  /** Every row, ts as epoch ms and seq as a number (or null). */
  rows(): Promise<readonly StoredReading[]>;
}

/** The rows of the SQLite file at `dbPath` (none while it does not exist yet). */
export function sqliteReadings(dbPath: string): StoredReadings {
  return {
    count: async () => countRows(dbPath),
    rows: async () => readRows(dbPath),
  };
}

export interface StreamCounts {
  /** Messages the simulator published (readings: one per message). */
  sent: number;
  /** Messages the MQTT broker acknowledged with a PUBACK. */
  acknowledged: number;
  /** Rows in `readings`. */
  stored: number;
}

const key = (device: string, sensor: string, ts: number) => `${device}\0${sensor}\0${ts}`;

/**
 * Waits until the rows stored equal the readings acknowledged to the simulator, then checks that the keys are
 * exactly the recorded ones (none missing, none extra, none twice) with the values sent, and that `<QUEUE>` and
 * `<QUEUE>.dead` are empty.
 */
export async function expectStoredExactlyOnce(
  names: TestNames,
  streams: Stream | readonly Stream[],
  timeoutMs = 30_000,
  /** The gateways a row may name (several when gateways share the subscription). */
  gatewayIds: readonly string[] = [names.gatewayId],
  /** Where the rows are: the test's SQLite file unless given. */
  store: StoredReadings = sqliteReadings(names.dbPath),
): Promise<StreamCounts> {
  const all = Array.isArray(streams) ? streams : [streams as Stream];
  const summaries = await Promise.all(all.map((stream) => stream.done));
  const summary = {
    sent: summaries.reduce((n, s) => n + s.sent, 0),
    acked: summaries.reduce((n, s) => n + s.acked, 0),
  };
  const sent: Recorded[] = [];
  for (const [i, stream] of all.entries()) {
    const done = summaries[i]!;
    expect(done.unacked, "publishes the MQTT broker never acknowledged").toBe(0);
    const recorded = readRecorded(stream.recordPath);
    expect(recorded).toHaveLength(done.validAcked);
    sent.push(...recorded);
  }
  const sentKeys = new Set(sent.map((s) => key(s.deviceId, s.sensor, s.ts)));
  expect(sentKeys.size, "the simulator recorded a key twice").toBe(sent.length);

  // On a timeout, go on: the comparison below says which readings are missing.
  await vi
    .waitFor(async () => expect(await store.count()).toBeGreaterThanOrEqual(sent.length), {
      timeout: timeoutMs,
      interval: 250,
    })
    .catch(() => undefined);
  const rows = await store.rows();
  const byKey = new Map(rows.map((r) => [key(r.device_id, r.sensor, r.ts), r]));
  // The table's key forbids a key stored twice, so this checks the test's own key function (two rows mapped to one
  // key would hide a missing reading below). Redelivery is checked by `expectDeliveriesAccounted`.
  expect(byKey.size, "a (device, sensor, ts) stored twice").toBe(rows.length);
  const missing = sent.filter((s) => !byKey.has(key(s.deviceId, s.sensor, s.ts)));
  const extra = rows.filter((r) => !sentKeys.has(key(r.device_id, r.sensor, r.ts)));
  const differing = sent.filter((s) => {
    const r = byKey.get(key(s.deviceId, s.sensor, s.ts));
    return (
      r && (r.value !== s.value || r.unit !== s.unit || r.seq !== s.seq || !gatewayIds.includes(r.gateway_id))
    );
  });
  if (missing.length > 0) await reportMissing(names, missing, rows.length);
  expect({ missing: missing.length, extra: extra.length, differing: differing.length }).toEqual({
    missing: 0,
    extra: 0,
    differing: 0,
  });
  expect(rows).toHaveLength(sent.length);

  const conn = await amqp.connect(names.amqpUrl);
  conn.on("error", () => undefined);
  try {
    const ch = await conn.createChannel();
    const q = queueNames(names.queue);
    await vi.waitFor(async () => expect((await ch.checkQueue(q.readings)).messageCount).toBe(0), {
      timeout: 10_000,
    });
    expect((await ch.checkQueue(q.dead)).messageCount).toBe(0);
  } finally {
    await conn.close().catch(() => undefined);
  }
  return { sent: summary.sent, acknowledged: summary.acked, stored: rows.length };
}

/**
 * Says where readings acknowledged to the simulator and not stored may be: which ones (their time and sequence),
 * and what `<QUEUE>` (ready) and `<QUEUE>.dead` hold now. The assertion that follows fails the test either way.
 */
async function reportMissing(names: TestNames, missing: readonly Recorded[], stored: number): Promise<void> {
  const queues: Record<string, number | string> = {};
  try {
    const conn = await amqp.connect(names.amqpUrl);
    conn.on("error", () => undefined);
    try {
      const ch = await conn.createChannel();
      const q = queueNames(names.queue);
      const readings = await ch.checkQueue(q.readings);
      queues.ready = readings.messageCount;
      queues.consumers = readings.consumerCount;
      queues.dead = (await ch.checkQueue(q.dead)).messageCount;
    } finally {
      await conn.close().catch(() => undefined);
    }
  } catch (err) {
    queues.error = String(err);
  }
  report("readings acknowledged to the simulator and not stored", {
    missing: missing.length,
    stored,
    queues,
    first: missing.slice(0, 10).map((m) => ({
      device: m.deviceId,
      sensor: m.sensor,
      ts: new Date(m.ts).toISOString(),
      seq: m.seq,
    })),
  });
}

/** Resolves once `check` holds, polling every 50 ms; a fault is injected the moment the condition is seen. */
export async function until(what: string, timeoutMs: number, check: () => Promise<boolean>): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting until ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/**
 * Resolves once the processor on `port` has stored at least `readings` (its stored counter), so a fault lands
 * mid-stream; `timeoutMs` 30 s unless given.
 */
export function untilStored(port: number, readings: number, timeoutMs = 30_000): Promise<void> {
  return until("the first readings are stored", timeoutMs, async () => {
    return (await metric(port, "telemetry_processor_readings_stored_total")) >= readings;
  });
}

/** Prints one test's counts, so the note on the issue can quote them. */
export function report(test: string, counts: Record<string, unknown>): void {
  console.log(`[fault counts] ${test}: ${JSON.stringify(counts)}`);
}

/** Resident memory of a process now, from /proc (KiB). */
export function rssKiB(pid: number): number {
  return Number(/^VmRSS:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, "utf8"))?.[1]);
}
