/**
 * Raw ceilings of each stage on this machine, each library alone, measured in the same run as the pipeline; and
 * the confirmed AMQP publisher the stores and retention figures fill their queues with.
 */
import { rmSync } from "node:fs";
import { join } from "node:path";
import amqp from "amqplib";
import { connect as mqttConnect } from "mqtt";
import { declareTopology, type QueueType } from "../amqp/topology.js";
import { AVRO_CONTENT_TYPE } from "../gateway/encode.js";
import { type Reading, SchemaRegistry } from "../schemas/index.js";
import { prepareInsertOne } from "../store/bench-helpers.js";
import { openDatabase, SqliteStore } from "../store/sqlite.js";
import { forkWorker, heard, tell } from "./ipc.js";
import { cpuMeter } from "./proc.js";
import { deviceName, forkPublisher, sensorName } from "./publisher.js";
import { round, until } from "./util.js";

/** One measured ceiling: `count` items in `seconds`. */
export interface Ceiling {
  readonly count: number;
  readonly seconds: number;
  readonly perSecond: number;
  /** CPU time per item of each process taking part (this one, children, brokers), microseconds. */
  readonly cpuUsPerItem: Record<string, number>;
}

const STALL = { pollMs: 20, stallMs: 20_000 } as const;
/** Unconfirmed publishes at most, prefetch, one multiple ack every `ackEvery` deliveries. */
const AMQP = { window: 2_000, prefetch: 2_000, ackEvery: 500 } as const;
/** Rows a transaction, and rows of the one-transaction-per-row ceiling. */
const SQLITE = { batch: 500, perRowCount: 3_000 } as const;
const BODY_VARIANTS = 1_024;

function ceiling(count: number, ms: number, cpuMs: Record<string, number> = {}): Ceiling {
  const seconds = Math.max(ms, 1) / 1_000;
  const cpuUsPerItem: Record<string, number> = {};
  for (const [name, spent] of Object.entries(cpuMs)) cpuUsPerItem[name] = round((spent * 1_000) / count, 1);
  return { count, seconds: round(seconds, 3), perSecond: Math.round(count / seconds), cpuUsPerItem };
}

/**
 * MQTT.js QoS 1 publisher (its own process, `window` in flight) to an MQTT.js QoS 1 subscriber (this process,
 * MQTT 5, Receive Maximum `receiveMaximum`) through the broker at `mqttUrl`. Counts from the first to the last
 * message the subscriber gets.
 */
export async function mqttCeiling(o: {
  mqttUrl: string;
  count: number;
  window: number;
  receiveMaximum: number;
  devices: number;
  sensors: number;
  runId: string;
  brokerPid: number;
}): Promise<Ceiling> {
  const topicPrefix = `bench-raw-${o.runId}`;
  let cpu = () => ({}) as Record<string, number>;
  const properties = { receiveMaximum: o.receiveMaximum };
  const sub = mqttConnect(o.mqttUrl, {
    clientId: `bench-raw-sub-${o.runId}`,
    protocolVersion: 5,
    properties,
  });
  sub.on("error", (err) => process.stderr.write(`bench raw subscriber: ${err.message}\n`));
  await new Promise<void>((resolve) => sub.once("connect", () => resolve()));
  await sub.subscribeAsync(`${topicPrefix}/+/+`, { qos: 1 });
  let [received, first, last] = [0, 0, 0];
  let cpuMs: Record<string, number> = {};
  sub.on("message", () => {
    if (received++ === 0) first = performance.now();
    // CPU is read at the last message, before the publisher process exits and takes its figures with it.
    if (received === o.count) [last, cpuMs] = [performance.now(), cpu()];
  });
  const publisher = await forkPublisher({
    ...{ mqttUrl: o.mqttUrl, topicPrefix, devicePrefix: "raw", devices: o.devices, sensors: o.sensors },
    ...{
      total: o.count,
      window: o.window,
      rate: 0,
      baseTs: Date.now(),
      clientId: `bench-raw-pub-${o.runId}`,
    },
  });
  cpu = cpuMeter({ subscriber: process.pid, publisher: publisher.pid, mosquitto: o.brokerPid });
  try {
    publisher.send({ type: "start" });
    await until("raw MQTT", () => received >= o.count, { ...STALL, progress: () => received });
    await publisher.done;
    return ceiling(received, last - first, cpuMs);
  } finally {
    await publisher.kill();
    await sub.endAsync(true);
  }
}

function benchReading(i: number): Reading {
  const t = 1_700_000_000_000 + i;
  const where = { device_id: deviceName("raw", i % 100), sensor: sensorName(i % 3) };
  return {
    ...where,
    ts: t,
    value: (i % 1_000) * 0.25,
    unit: "u",
    seq: t,
    gateway_id: "bench",
    received_at: t,
  };
}

/** `count` Avro bodies the size of the pipeline's (BODY_VARIANTS distinct ones), so raw AMQP moves the same bytes. */
function avroBodies(count: number): Buffer[] {
  const registry = SchemaRegistry.load();
  const variants = Array.from({ length: BODY_VARIANTS }, (_, i) => registry.encode(benchReading(i)));
  return Array.from({ length: count }, (_, i) => variants[i % BODY_VARIANTS]!);
}

/**
 * `bodies` as persistent Avro messages with publisher confirms, up to `window` unconfirmed at once (pipelined), to
 * `queue` (declared first: a durable queue of `type`, or with `contract`, the contract's queues of that name).
 * Resolves with the time from the first publish to the last confirm; rejects if a message is nacked or no confirm
 * comes for 20 s.
 */
export async function publishConfirmed(
  url: string,
  queue: string,
  bodies: readonly Buffer[],
  window: number,
  type: QueueType,
  contract = false,
): Promise<{ firstAt: number; ms: number }> {
  const conn = await amqp.connect(url);
  try {
    const ch = await conn.createConfirmChannel();
    if (contract) await declareTopology(ch, queue, type);
    else await ch.assertQueue(queue, { durable: true, arguments: { "x-queue-type": type } });
    let [sent, settled, failed, blocked, lastAt] = [0, 0, 0, false, 0];
    const [firstAt, t0] = [Date.now(), performance.now()];
    const pump = () => {
      while (!blocked && sent < bodies.length && sent - settled < window) {
        const i = sent++;
        const props = { persistent: true, contentType: AVRO_CONTENT_TYPE, messageId: `m${i}` };
        const writable = ch.sendToQueue(
          queue,
          bodies[i]!,
          { ...props, timestamp: Math.floor(Date.now() / 1_000) },
          (err) => {
            settled++;
            if (err) failed++;
            lastAt = performance.now();
            pump();
          },
        );
        if (!writable) {
          blocked = true;
          ch.once("drain", () => {
            blocked = false;
            pump();
          });
        }
      }
    };
    pump();
    await until("raw AMQP publish", () => settled >= bodies.length, { ...STALL, progress: () => settled });
    if (failed > 0) throw new Error(`AMQP publish: ${failed} messages nacked`);
    return { firstAt, ms: lastAt - t0 };
  } finally {
    await conn.close().catch(() => undefined);
  }
}

/** Consumes `count` messages with a prefetch and one multiple ack every AMQP.ackEvery; returns first-to-last ms. */
async function consumeAll(
  url: string,
  queue: string,
  count: number,
  started?: () => void,
  atLast?: () => void,
) {
  const conn = await amqp.connect(url);
  try {
    const ch = await conn.createChannel();
    await ch.prefetch(AMQP.prefetch);
    let [n, first, last, lastAt] = [0, 0, 0, 0];
    await ch.consume(queue, (msg) => {
      if (msg === null) return;
      if (n++ === 0) first = performance.now();
      if (n % AMQP.ackEvery === 0 || n === count) ch.ack(msg, true);
      if (n === count) {
        [last, lastAt] = [performance.now(), Date.now()];
        atLast?.();
      }
    });
    started?.();
    await until("raw AMQP consume", () => n >= count, { ...STALL, progress: () => n });
    return { lastAt, ms: last - first };
  } finally {
    await conn.close().catch(() => undefined);
  }
}

export interface AmqpCeilings {
  readonly publish: Ceiling;
  readonly consume: Ceiling;
  /** Publisher (its own process) and consumer at once, as in the pipeline: first publish to last delivery. */
  readonly through: Ceiling;
}

/** amqplib alone: publish `count`, then consume them, then both at once, on durable queues of `type`. */
export async function amqpCeilings(o: {
  url: string;
  type: QueueType;
  count: number;
  runId: string;
  /** RabbitMQ's pid, when it runs on this machine, for its CPU time. */
  rabbitPid: number | undefined;
}): Promise<AmqpCeilings> {
  const [queue, queue2] = [`bench-raw-${o.runId}`, `bench-raw-${o.runId}-through`];
  const conn = await amqp.connect(o.url);
  try {
    let cpu = cpuMeter({ client: process.pid, rabbitmq: o.rabbitPid });
    const pub = await publishConfirmed(o.url, queue, avroBodies(o.count), AMQP.window, o.type);
    const publish = ceiling(o.count, pub.ms, cpu());
    cpu = cpuMeter({ client: process.pid, rabbitmq: o.rabbitPid });
    const con = await consumeAll(o.url, queue, o.count);
    const consume = ceiling(o.count, con.ms, cpu());
    const ch = await conn.createChannel();
    await ch.assertQueue(queue2, { durable: true, arguments: { "x-queue-type": o.type } });
    let consumerUp!: () => void;
    const up = new Promise<void>((resolve) => {
      consumerUp = resolve;
    });
    let throughCpu: Record<string, number> = {};
    // CPU is read at the last delivery, before the publisher process exits and takes its figures with it.
    const consuming = consumeAll(o.url, queue2, o.count, consumerUp, () => {
      throughCpu = cpu();
    });
    await up;
    const config = { url: o.url, queue: queue2, count: o.count, window: AMQP.window, type: o.type };
    const publisher = forkWorker<{ type: "done"; firstAt: number; ms: number }>("amqp-publisher", config);
    try {
      await publisher.ready;
      cpu = cpuMeter({ consumer: process.pid, publisher: publisher.pid, rabbitmq: o.rabbitPid });
      publisher.send({ type: "start" });
      const [p, c] = await Promise.all([publisher.done, consuming]);
      return { publish, consume, through: ceiling(o.count, c.lastAt - p.firstAt, throughCpu) };
    } finally {
      await publisher.kill();
    }
  } finally {
    const ch = await conn.createChannel();
    for (const q of [queue, queue2]) await ch.deleteQueue(q).catch(() => undefined);
    await conn.close().catch(() => undefined);
  }
}

/** Child side of the concurrent AMQP measurement. */
export async function runAmqpPublisher(c: {
  url: string;
  queue: string;
  count: number;
  window: number;
  type: QueueType;
}) {
  await tell({ type: "ready" });
  await heard("start");
  const r = await publishConfirmed(c.url, c.queue, avroBodies(c.count), c.window, c.type);
  await tell({ type: "done", firstAt: r.firstAt, ms: r.ms });
}

export interface SqliteCeilings {
  /** better-sqlite3 alone: one prepared single-row INSERT, transactions of SQLITE.batch rows. */
  readonly batched: Ceiling;
  /** The product's SqliteStore.writeBatch (multi-row INSERTs), batches of SQLITE.batch. */
  readonly store: Ceiling;
  /** One transaction per row, the straightforward way. */
  readonly perRow: Ceiling;
}

/** better-sqlite3 with WAL and synchronous=FULL on the `readings` table (store/sqlite.ts opens and migrates it). */
export function sqliteCeilings(dir: string, count: number): SqliteCeilings {
  const readings = Array.from({ length: count }, (_, i) => benchReading(i));
  const fresh = (name: string) => {
    const path = join(dir, `${name}.db`);
    for (const suffix of ["", "-wal", "-shm"]) rmSync(`${path}${suffix}`, { force: true });
    return path;
  };
  const timed = (items: number, run: () => void) => {
    const cpu = cpuMeter({ writer: process.pid });
    const t0 = performance.now();
    run();
    return ceiling(items, performance.now() - t0, cpu());
  };
  const inBatches = (write: (rows: Reading[]) => void) => () => {
    for (let i = 0; i < count; i += SQLITE.batch) write(readings.slice(i, i + SQLITE.batch));
  };

  const db = openDatabase(fresh("raw-batched"));
  const insert = prepareInsertOne(db);
  const writeBatch = db.transaction((rows: Reading[], storedAt: number) => {
    for (const r of rows) insert(r, storedAt);
  });
  const batched = timed(
    count,
    inBatches((rows) => writeBatch.immediate(rows, Date.now())),
  );
  db.close();

  const store = new SqliteStore(fresh("raw-store"));
  const viaStore = timed(
    count,
    inBatches((rows) => void store.writeBatch(rows)),
  );
  void store.close();

  const one = openDatabase(fresh("raw-per-row"));
  const insertOne = prepareInsertOne(one);
  const writeOne = one.transaction((r: Reading) => insertOne(r, Date.now()));
  const perRowCount = Math.min(count, SQLITE.perRowCount);
  const perRow = timed(perRowCount, () => {
    for (let i = 0; i < perRowCount; i++) writeOne.immediate(readings[i]!);
  });
  one.close();
  return { batched, store: viaStore, perRow };
}
