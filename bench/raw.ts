/**
 * Raw ceilings of each stage on this machine, each library alone, measured in the same run as the pipeline.
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
import { deleteQueues, round } from "./util.js";

/** One measured ceiling: `count` items in `seconds`. */
export interface Ceiling {
  readonly count: number;
  readonly seconds: number;
  readonly perSecond: number;
  /** CPU time per item of each process taking part (this one, children, brokers), microseconds. */
  readonly cpuUsPerItem: Record<string, number>;
}

const STALL_MS = 20_000;
const AMQP_WINDOW = 2_000;
const AMQP_PREFETCH = 2_000;
const AMQP_ACK_EVERY = 500;
const SQLITE_BATCH = 500;
const SQLITE_PER_ROW_COUNT = 3_000;
const BODY_VARIANTS = 1_024;

function ceiling(count: number, ms: number, cpuMs: Record<string, number> = {}): Ceiling {
  const seconds = Math.max(ms, 1) / 1_000;
  const cpuUsPerItem: Record<string, number> = {};
  for (const [name, spent] of Object.entries(cpuMs)) cpuUsPerItem[name] = round((spent * 1_000) / count, 1);
  return { count, seconds: round(seconds, 3), perSecond: Math.round(count / seconds), cpuUsPerItem };
}

/** Rejects if `progress()` has not changed for STALL_MS. */
function watchStall(what: string, progress: () => number): { promise: Promise<never>; stop: () => void } {
  let last = -1;
  let since = Date.now();
  let timer: NodeJS.Timeout | undefined;
  const promise = new Promise<never>((_, reject) => {
    timer = setInterval(() => {
      const now = progress();
      if (now !== last) {
        last = now;
        since = Date.now();
      } else if (Date.now() - since > STALL_MS) {
        reject(new Error(`${what}: no progress for ${STALL_MS / 1_000} s (at ${now})`));
      }
    }, 500);
  });
  promise.catch(() => undefined);
  return { promise, stop: () => clearInterval(timer) };
}

/**
 * MQTT.js QoS 1 publisher (its own process, `window` in flight) to an MQTT.js QoS 1 subscriber (this process,
 * MQTT 5, Receive Maximum `receiveMaximum`) through the broker at `mqttUrl`. Counts from the first to the last
 * message the subscriber gets.
 */
export async function mqttCeiling(opts: {
  mqttUrl: string;
  count: number;
  window: number;
  receiveMaximum: number;
  devices: number;
  sensors: number;
  runId: string;
  brokerPid: number;
}): Promise<Ceiling> {
  const prefix = `bench-raw-${opts.runId}`;
  const sub = mqttConnect(opts.mqttUrl, {
    clientId: `bench-raw-sub-${opts.runId}`,
    clean: true,
    protocolVersion: 5,
    properties: { receiveMaximum: opts.receiveMaximum },
  });
  sub.on("error", (err) => process.stderr.write(`bench raw subscriber: ${err.message}\n`));
  await new Promise<void>((resolve) => sub.once("connect", () => resolve()));
  await sub.subscribeAsync(`${prefix}/+/+`, { qos: 1 });
  let received = 0;
  let first = 0;
  let last = 0;
  let allIn!: () => void;
  const all = new Promise<void>((resolve) => {
    allIn = resolve;
  });
  sub.on("message", () => {
    if (received === 0) first = performance.now();
    received++;
    if (received === opts.count) {
      last = performance.now();
      allIn();
    }
  });
  const publisher = await forkPublisher({
    mqttUrl: opts.mqttUrl,
    topicPrefix: prefix,
    devicePrefix: "raw",
    devices: opts.devices,
    sensors: opts.sensors,
    total: opts.count,
    window: opts.window,
    rate: 0,
    baseTs: Date.now(),
    clientId: `bench-raw-pub-${opts.runId}`,
  });
  const stall = watchStall("raw MQTT", () => received);
  const cpu = cpuMeter({ subscriber: process.pid, publisher: publisher.pid, mosquitto: opts.brokerPid });
  let cpuMs: Record<string, number> = {};
  try {
    publisher.send({ type: "start" });
    await Promise.race([all, stall.promise]);
    cpuMs = cpu();
    await publisher.done;
  } finally {
    stall.stop();
    await publisher.kill();
    await sub.endAsync(true);
  }
  return ceiling(received, last - first, cpuMs);
}

function benchReading(i: number): Reading {
  return {
    device_id: deviceName("raw", i % 100),
    sensor: sensorName(i % 3),
    ts: 1_700_000_000_000 + i,
    value: (i % 1_000) * 0.25,
    unit: "u",
    seq: 1_700_000_000_000 + i,
    gateway_id: "bench",
    received_at: 1_700_000_000_000 + i,
  };
}

/** `count` Avro bodies the size of the pipeline's (BODY_VARIANTS distinct ones), so raw AMQP moves the same bytes. */
function avroBodies(count: number): Buffer[] {
  const registry = SchemaRegistry.load();
  const variants = Array.from({ length: BODY_VARIANTS }, (_, i) => registry.encode(benchReading(i)));
  return Array.from({ length: count }, (_, i) => variants[i % BODY_VARIANTS]!);
}

async function declareQueue(url: string, queue: string, type: QueueType): Promise<void> {
  const conn = await amqp.connect(url);
  try {
    const ch = await conn.createChannel();
    await ch.assertQueue(queue, { durable: true, arguments: { "x-queue-type": type } });
  } finally {
    await conn.close();
  }
}

/**
 * `bodies` as persistent Avro messages with publisher confirms, up to `window` unconfirmed at once (pipelined), to
 * `queue`; with `declare`, the contract's queues of `queue` are declared first, of that type. Resolves with the time
 * from the first publish to the last confirm; rejects if a message is nacked or no confirm comes for STALL_MS.
 * Used by the raw ceiling (here and in the "amqp-publisher" child) and to fill queues for the stores and
 * retention figures.
 */
export async function publishConfirmed(
  url: string,
  queue: string,
  bodies: readonly Buffer[],
  window: number,
  declare?: QueueType,
): Promise<{ firstAt: number; ms: number }> {
  const count = bodies.length;
  const conn = await amqp.connect(url);
  try {
    const ch = await conn.createConfirmChannel();
    if (declare) await declareTopology(ch, queue, declare);
    let sent = 0;
    let settled = 0;
    let failed = 0;
    let blocked = false;
    const firstAt = Date.now();
    const t0 = performance.now();
    const stall = watchStall("raw AMQP publish", () => settled);
    try {
      await Promise.race([
        stall.promise,
        new Promise<void>((resolve) => {
          const pump = () => {
            while (!blocked && sent < count && sent - settled < window) {
              const i = sent++;
              const writable = ch.sendToQueue(
                queue,
                bodies[i]!,
                {
                  persistent: true,
                  contentType: AVRO_CONTENT_TYPE,
                  messageId: `m${i}`,
                  timestamp: Math.floor(Date.now() / 1_000),
                },
                (err) => {
                  settled++;
                  if (err) failed++;
                  if (settled === count) resolve();
                  else pump();
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
        }),
      ]);
    } finally {
      stall.stop();
    }
    if (failed > 0) throw new Error(`raw AMQP publish: ${failed} messages nacked`);
    return { firstAt, ms: performance.now() - t0 };
  } finally {
    await conn.close().catch(() => undefined);
  }
}

/** Consumes `count` messages with a prefetch and one multiple ack every AMQP_ACK_EVERY; returns first-to-last ms. */
async function consumeAll(
  url: string,
  queue: string,
  count: number,
  started?: () => void,
): Promise<{ lastAt: number; ms: number }> {
  const conn = await amqp.connect(url);
  try {
    const ch = await conn.createChannel();
    await ch.prefetch(AMQP_PREFETCH);
    let n = 0;
    let first = 0;
    let last = 0;
    const stall = watchStall("raw AMQP consume", () => n);
    try {
      await Promise.race([
        stall.promise,
        new Promise<void>((resolve) => {
          void ch.consume(queue, (msg) => {
            if (msg === null) return;
            if (n === 0) first = performance.now();
            n++;
            if (n % AMQP_ACK_EVERY === 0 || n === count) ch.ack(msg, true);
            if (n === count) {
              last = performance.now();
              resolve();
            }
          });
          started?.();
        }),
      ]);
    } finally {
      stall.stop();
    }
    return { lastAt: Date.now(), ms: last - first };
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
export async function amqpCeilings(opts: {
  url: string;
  type: QueueType;
  count: number;
  runId: string;
  /** RabbitMQ's pid, when it runs on this machine, for its CPU time. */
  rabbitPid: number | undefined;
}): Promise<AmqpCeilings> {
  const queue = `bench-raw-${opts.runId}`;
  const queue2 = `${queue}-through`;
  await declareQueue(opts.url, queue, opts.type);
  await declareQueue(opts.url, queue2, opts.type);
  try {
    let cpu = cpuMeter({ client: process.pid, rabbitmq: opts.rabbitPid });
    const pub = await publishConfirmed(opts.url, queue, avroBodies(opts.count), AMQP_WINDOW);
    const pubCpu = cpu();
    cpu = cpuMeter({ client: process.pid, rabbitmq: opts.rabbitPid });
    const con = await consumeAll(opts.url, queue, opts.count);
    const conCpu = cpu();
    let consumerUp!: () => void;
    const up = new Promise<void>((resolve) => {
      consumerUp = resolve;
    });
    const consuming = consumeAll(opts.url, queue2, opts.count, consumerUp);
    await up;
    const publisher = forkWorker<{ type: "done"; firstAt: number; ms: number }>("amqp-publisher", {
      url: opts.url,
      queue: queue2,
      count: opts.count,
      window: AMQP_WINDOW,
    });
    try {
      await publisher.ready;
      cpu = cpuMeter({ consumer: process.pid, publisher: publisher.pid, rabbitmq: opts.rabbitPid });
      publisher.send({ type: "start" });
      let throughCpu: Record<string, number> = {};
      const [p, c] = await Promise.all([
        publisher.done,
        consuming.then((r) => {
          throughCpu = cpu();
          return r;
        }),
      ]);
      return {
        publish: ceiling(opts.count, pub.ms, pubCpu),
        consume: ceiling(opts.count, con.ms, conCpu),
        through: ceiling(opts.count, c.lastAt - p.firstAt, throughCpu),
      };
    } finally {
      await publisher.kill();
    }
  } finally {
    await deleteQueues(opts.url, [queue, queue2]);
  }
}

/** Child side of the concurrent AMQP measurement. */
export async function runAmqpPublisher(c: {
  url: string;
  queue: string;
  count: number;
  window: number;
}): Promise<void> {
  await tell({ type: "ready" });
  await heard("start");
  const r = await publishConfirmed(c.url, c.queue, avroBodies(c.count), c.window);
  await tell({ type: "done", firstAt: r.firstAt, ms: r.ms });
}

export interface SqliteCeilings {
  /** better-sqlite3 alone: one prepared single-row INSERT, transactions of SQLITE_BATCH rows. */
  readonly batched: Ceiling;
  /** The product's SqliteStore.writeBatch (multi-row INSERTs), batches of SQLITE_BATCH. */
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

  const db = openDatabase(fresh("raw-batched"));
  const insert = prepareInsertOne(db);
  const writeBatch = db.transaction((rows: Reading[], storedAt: number) => {
    for (const r of rows) insert(r, storedAt);
  });
  let cpu = cpuMeter({ writer: process.pid });
  let t0 = performance.now();
  for (let i = 0; i < count; i += SQLITE_BATCH) {
    writeBatch.immediate(readings.slice(i, i + SQLITE_BATCH), Date.now());
  }
  const batched = ceiling(count, performance.now() - t0, cpu());
  db.close();

  const store = new SqliteStore(fresh("raw-store"));
  cpu = cpuMeter({ writer: process.pid });
  t0 = performance.now();
  for (let i = 0; i < count; i += SQLITE_BATCH) void store.writeBatch(readings.slice(i, i + SQLITE_BATCH));
  const viaStore = ceiling(count, performance.now() - t0, cpu());
  void store.close();

  const one = openDatabase(fresh("raw-per-row"));
  const insertOne = prepareInsertOne(one);
  const writeOne = one.transaction((r: Reading) => insertOne(r, Date.now()));
  const perRowCount = Math.min(count, SQLITE_PER_ROW_COUNT);
  cpu = cpuMeter({ writer: process.pid });
  t0 = performance.now();
  for (let i = 0; i < perRowCount; i++) writeOne.immediate(readings[i]!);
  const perRow = ceiling(perRowCount, performance.now() - t0, cpu());
  one.close();
  return { batched, store: viaStore, perRow };
}
