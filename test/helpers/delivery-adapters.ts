/**
 * Adapters of the shared delivery-guarantee suite (delivery-suite.ts), one per implementation: how to start it, how
 * to put items upstream and see them downstream, how to make the downstream refuse, and how to break and heal its
 * broker. A new implementation (a spool, the PostgreSQL store) adds an adapter here and one line to
 * test/integration/delivery-guarantees.test.ts.
 */
import { execFile } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { connect, createServer, type Server, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import amqp, { type ChannelModel, type ConfirmChannel } from "amqplib";
import Database from "better-sqlite3";
import mqtt from "mqtt";
import { type Packet, parser } from "mqtt-packet";
import { Registry } from "prom-client";
import { expect, inject, vi } from "vitest";
import { AmqpInput, type AmqpMessage } from "../../amqp/input.js";
import { type OutgoingBatch, startAmqpSink } from "../../amqp/sink.js";
import { declareTopology, queueNames } from "../../amqp/topology.js";
import { silentLogger } from "../../common/log.js";
import { type Delivery, type FailableDelivery, HEALTHY, running, type Sink } from "../../common/pipeline.js";
import { type MqttMessage, startMqttInput } from "../../mqtt/input.js";
import { processorMetrics } from "../../processor/metrics.js";
import { StoreSink } from "../../processor/store-sink.js";
import { type Reading, SchemaRegistry } from "../../schemas/index.js";
import { decodeBatch } from "../../spool/format.js";
import { startSpoolInput } from "../../spool/input.js";
import { readSegmentRecords } from "../../spool/segments.js";
import { SpoolSink } from "../../spool/sink.js";
import { listSegments, SpoolStore } from "../../spool/store.js";
import type { ReadingStore } from "../../store/index.js";
import { readRows } from "../../store/inspect.js";
import { type DeliveryAdapter, InputDownstream, type Rig, type Subject } from "./delivery-suite.js";
import {
  type PrivateMosquitto,
  type PrivateRabbit,
  startPrivateMosquitto,
  startPrivateRabbit,
} from "./private-brokers.js";

const execFileAsync = promisify(execFile);

/** The MQTT input's window: with Mosquitto's default `max_queued_messages` (1,000) 2,000 items never overflow it. */
const RECEIVE_MAXIMUM = 1_000;
const PREFETCH = 500;
/** A stopped AMQP input waits this long for deliveries the test holds unacked. */
const DRAIN_TIMEOUT_MS = 1_000;
const STALL_TIMEOUT_MS = 30_000;
const BATCH_SIZE = 100;
const BATCH_DELAY_MS = 20;
const STORE_DRAIN_TIMEOUT_MS = 5_000;
const BASE_TS = Date.UTC(2026, 0, 1);
/** The gateway's defaults: readings that arrive while 8 messages await their confirm go out as batches of up to 500. */
const PUBLISH_BATCH = { maxReadings: 500, maxBytes: 262_144, window: 8 } as const;
const WAIT = { timeout: 20_000, interval: 25 } as const;

function uniqueId(label: string): string {
  return `dg-${label}-${randomBytes(4).toString("hex")}`;
}

const seqOfBody = (body: Buffer): number => Number(body.toString());

/** Item `seq` as a reading of device `device`: the item number is its `seq` and fixes its key. */
function readingOf(device: string, seq: number): Reading {
  return {
    device_id: device,
    sensor: "value",
    ts: BASE_TS + seq,
    value: seq,
    unit: null,
    seq,
    gateway_id: "delivery-suite",
    received_at: Date.now(),
  };
}

/** A sink's upstream as the test plays it: each delivery records its one `ack`; a second one is a breach. */
class SinkUpstream {
  readonly acked: number[] = [];
  readonly violations: string[] = [];

  delivery<T>(seq: number, item: T): FailableDelivery<T> {
    let settled: string | undefined;
    const settle = (how: string) => {
      if (settled) this.violations.push(`item ${seq}: ${how} after ${settled}`);
      settled ??= how;
    };
    return {
      item,
      ack: () => {
        settle("ack");
        this.acked.push(seq);
      },
      fail: (failure) => {
        settle("fail");
        this.violations.push(`item ${seq} set aside: ${failure.kind}: ${failure.reason}`);
      },
    };
  }
}

// --- Wire taps: what the part really acknowledged to its broker ----------------------------------------------------

/** Reads one direction of a proxied connection. */
type Observer = (chunk: Buffer) => void;

/**
 * A TCP proxy in front of a broker that shows each connection's bytes to `observe` (client to broker, broker to
 * client) before passing them on: the acknowledgements the broker really got, in wire order.
 */
interface Tap {
  /** `host:port` to point the part at. */
  readonly address: string;
  /** Items acknowledged on the wire, in order. */
  readonly acked: number[];
  /** Client connections open through the tap. */
  open(): number;
  close(): void;
}

async function startTap(
  target: string,
  observe: (acked: number[]) => { fromClient: Observer; fromBroker: Observer },
): Promise<Tap> {
  const { hostname, port } = new URL(target);
  const acked: number[] = [];
  const sockets = new Set<Socket>();
  const clients = new Set<Socket>();
  const server: Server = createServer((client) => {
    const broker = connect(Number(port), hostname);
    const seen = observe(acked);
    client.on("data", (chunk: Buffer) => {
      seen.fromClient(chunk);
      broker.write(chunk);
    });
    broker.on("data", (chunk: Buffer) => {
      seen.fromBroker(chunk);
      client.write(chunk);
    });
    clients.add(client);
    for (const [socket, other] of [
      [client, broker],
      [broker, client],
    ] as const) {
      sockets.add(socket);
      socket.on("error", () => undefined);
      // Closed gracefully, not destroyed: what one side wrote last (the acks of a stop) still reaches the other, as
      // it would without the tap.
      socket.on("close", () => {
        sockets.delete(socket);
        if (socket === client) clients.delete(client);
        other.end();
      });
    }
  });
  server.listen(0, "127.0.0.1");
  await new Promise((resolve) => server.once("listening", resolve));
  const address = server.address();
  if (address === null || typeof address === "string") throw new Error("tap has no TCP address");
  return {
    address: `127.0.0.1:${address.port}`,
    acked,
    open: () => clients.size,
    close() {
      for (const socket of sockets) socket.destroy();
      server.close();
    },
  };
}

/** MQTT: each PUBACK the client sends, as the item of the PUBLISH it answers on the same connection. */
function pubacks(acked: number[]): { fromClient: Observer; fromBroker: Observer } {
  const published = new Map<number, number>();
  const fromBroker = parser({ protocolVersion: 5 });
  const fromClient = parser({ protocolVersion: 5 });
  fromBroker.on("packet", (p: Packet) => {
    if (p.cmd === "publish" && p.messageId !== undefined) {
      published.set(p.messageId, seqOfBody(Buffer.from(p.payload)));
    }
  });
  fromClient.on("packet", (p: Packet) => {
    if (p.cmd !== "puback" || p.messageId === undefined) return;
    const seq = published.get(p.messageId);
    published.delete(p.messageId);
    if (seq !== undefined) acked.push(seq);
  });
  return { fromClient: (c) => fromClient.parse(c), fromBroker: (c) => fromBroker.parse(c) };
}

/** AMQP 0-9-1 frames of one direction: type, channel, payload (section 4.2.3 of the specification). */
function amqpFrames(onFrame: (type: number, channel: number, payload: Buffer) => void, header = 0): Observer {
  let buffered = Buffer.alloc(0);
  let skip = header;
  return (chunk) => {
    buffered = Buffer.concat([buffered, chunk]);
    if (skip > 0) {
      const n = Math.min(skip, buffered.length);
      buffered = buffered.subarray(n);
      skip -= n;
    }
    while (buffered.length >= FRAME_OVERHEAD) {
      const size = buffered.readUInt32BE(3);
      if (buffered.length < size + FRAME_OVERHEAD) return;
      onFrame(buffered.readUInt8(0), buffered.readUInt16BE(1), buffered.subarray(7, 7 + size));
      buffered = buffered.subarray(size + FRAME_OVERHEAD);
    }
  };
}

/** Frame header (type, channel, size) and end octet. */
const FRAME_OVERHEAD = 8;
/** What a client sends first: `AMQP` 0 0 9 1. */
const PROTOCOL_HEADER = 8;
const METHOD_FRAME = 1;
const BODY_FRAME = 3;
const BASIC = 60;
const BASIC_DELIVER = 60;
const BASIC_ACK = 80;

/**
 * AMQP: each `basic.ack` the client sends (one tag, or with `multiple` every tag up to it), as the items of the
 * `basic.deliver`s it settles on that channel.
 */
function basicAcks(acked: number[]): { fromClient: Observer; fromBroker: Observer } {
  /** Per channel: delivery tag to item, in tag order; and the tag whose body is being read. */
  const unacked = new Map<number, Map<number, number>>();
  const reading = new Map<number, { tag: number; body: Buffer[] }>();
  const channel = (ch: number) => {
    const tags = unacked.get(ch) ?? new Map<number, number>();
    unacked.set(ch, tags);
    return tags;
  };
  const fromBroker = amqpFrames((type, ch, payload) => {
    if (
      type === METHOD_FRAME &&
      payload.readUInt16BE(0) === BASIC &&
      payload.readUInt16BE(2) === BASIC_DELIVER
    ) {
      const consumerTagLength = payload.readUInt8(4);
      reading.set(ch, { tag: Number(payload.readBigUInt64BE(5 + consumerTagLength)), body: [] });
    } else if (type === BODY_FRAME) {
      // The test's bodies are short: one body frame each.
      const delivery = reading.get(ch);
      if (!delivery) return;
      reading.delete(ch);
      channel(ch).set(delivery.tag, seqOfBody(payload));
    }
  });
  const fromClient = amqpFrames((type, ch, payload) => {
    if (type !== METHOD_FRAME || payload.readUInt16BE(0) !== BASIC || payload.readUInt16BE(2) !== BASIC_ACK)
      return;
    const tag = Number(payload.readBigUInt64BE(4));
    const multiple = (payload.readUInt8(12) & 1) === 1;
    const tags = channel(ch);
    for (const [t, seq] of tags) {
      if (t === tag || (multiple && t < tag)) {
        acked.push(seq);
        tags.delete(t);
      }
    }
  }, PROTOCOL_HEADER);
  return { fromClient, fromBroker };
}

// --- MQTT input ---------------------------------------------------------------------------------------------------

/** Ends a persistent session left on a broker (a clean start with no expiry). */
async function endMqttSession(url: string, clientId: string): Promise<void> {
  const client = await mqtt.connectAsync(url, {
    clientId,
    protocolVersion: 5,
    clean: true,
    properties: { sessionExpiryInterval: 0 },
    reconnectPeriod: 0,
  });
  await client.endAsync();
}

/** Broken: SIGTERM to our own broker process (a persistent Mosquitto saves its sessions), and its port closed. */
async function terminate(broker: PrivateMosquitto): Promise<void> {
  const { pid } = broker;
  process.kill(pid, "SIGTERM");
  // Gone from /proc once Node has reaped it, so `restart()` sees the exit and starts a new process.
  await vi.waitFor(() => expect(existsSync(`/proc/${pid}`)).toBe(false), WAIT);
}

/**
 * The MQTT input (`startMqttInput`): QoS 1 PUBLISHes in, PUBACKs (seen on the wire) out. Its broker breaks by
 * SIGTERM to a private persistent Mosquitto and heals by starting it again on the same files.
 */
export function mqttInputAdapter(): DeliveryAdapter<PrivateMosquitto> {
  return {
    name: "MQTT input",
    role: "input",
    startPrivateBroker: () => startPrivateMosquitto({ persistence: true }),
    async rig(scenario, privateBroker): Promise<Rig> {
      const broker = scenario === "broker lost and back" ? await privateBroker() : undefined;
      const brokerUrl = broker?.url ?? inject("mqttUrl");
      const tap = await startTap(brokerUrl, pubacks);
      const clientId = uniqueId("mqtt");
      const topic = `test-${clientId}/device/value`;
      const downstream = new InputDownstream<MqttMessage>((m) => seqOfBody(m.payload));
      const started: Subject[] = [];
      return {
        async start() {
          const input = await startMqttInput(
            {
              url: `mqtt://${tap.address}`,
              clientId,
              topic: `test-${clientId}/+/+`,
              receiveMaximum: RECEIVE_MAXIMUM,
              keepaliveSeconds: 30,
              sessionExpirySeconds: 300,
              reconnectMinMs: 50,
              reconnectMaxMs: 500,
              log: silentLogger(),
            },
            downstream.handler,
          );
          started.push(input);
          // Subscribed before the first publish: the broker keeps messages only for a session that exists.
          await vi.waitFor(() => expect(input.connected).toBe(true), WAIT);
          return input;
        },
        async inject(seqs) {
          const publisher = await mqtt.connectAsync(brokerUrl, {
            clientId: uniqueId("pub"),
            protocolVersion: 5,
            clean: true,
            reconnectPeriod: 0,
          });
          publisher.on("error", () => undefined);
          try {
            await Promise.all(seqs.map((s) => publisher.publishAsync(topic, String(s), { qos: 1 })));
          } finally {
            await publisher.endAsync();
          }
        },
        arrived: async () => downstream.arrived,
        acked: () => tap.acked,
        refuse: async () => downstream.hold(),
        accept: async () => downstream.release(),
        refusalSeen: () => downstream.held > 0,
        released: async () => tap.open() === 0,
        ...(broker && {
          breakBroker: () => terminate(broker),
          healBroker: () => broker.restart(),
        }),
        violations: () => [],
        async [Symbol.asyncDispose]() {
          for (const input of started) await input.stop();
          tap.close();
          await endMqttSession(brokerUrl, clientId);
        },
      };
    },
  };
}

// --- AMQP (input and sink) ------------------------------------------------------------------------------------------

/** `rabbitmqctl` on the shared broker, or `ctl` of a private node. */
function rabbitCtl(broker: PrivateRabbit | undefined, ...args: string[]): Promise<string> {
  if (broker) return broker.ctl(...args);
  return execFileAsync("rabbitmqctl", args, { timeout: 60_000 }).then((r) => r.stdout);
}

/** Whether RabbitMQ lists a connection named `name` (the part's connection name). */
async function rabbitHasConnection(broker: PrivateRabbit | undefined, name: string): Promise<boolean> {
  const listed = await rabbitCtl(broker, "-q", "list_connections", "client_properties");
  return listed.includes(name);
}

/** Opens a connection and confirm channel, runs `use`, closes. */
async function withConfirmChannel<T>(url: string, use: (ch: ConfirmChannel) => Promise<T>): Promise<T> {
  const conn = await amqp.connect(url);
  conn.on("error", () => undefined);
  try {
    const ch = await conn.createConfirmChannel();
    return await use(ch);
  } finally {
    await conn.close().catch(() => undefined);
  }
}

async function deleteQueues(url: string, queue: string): Promise<void> {
  await withConfirmChannel(url, async (ch) => {
    for (const q of Object.values(queueNames(queue))) await ch.deleteQueue(q);
  });
}

/** `url` with its host and port replaced by the tap's. */
function through(tap: Tap, url: string): string {
  const u = new URL(url);
  u.host = tap.address;
  return u.toString();
}

/**
 * The AMQP input (`AmqpInput`) on a quorum queue: persistent messages in, `basic.ack`s (seen on the wire) out. Its
 * broker breaks by `rabbitmqctl stop_app` on a private node and heals by `start_app`.
 */
export function amqpInputAdapter(): DeliveryAdapter<PrivateRabbit> {
  return {
    name: "AMQP input",
    role: "input",
    skip: {
      "acks in arrival order":
        "RabbitMQ takes acks by delivery tag in any order, and the contract promises none (the processor acks by batch)",
    },
    startPrivateBroker: () => startPrivateRabbit(),
    async rig(scenario, privateBroker): Promise<Rig> {
      const broker = scenario === "broker lost and back" ? await privateBroker() : undefined;
      const url = broker?.url ?? inject("amqpUrl");
      const tap = await startTap(url, basicAcks);
      const queue = `test.${uniqueId("amqp-in")}`;
      await withConfirmChannel(url, (ch) => declareTopology(ch, queue, "quorum"));
      const downstream = new InputDownstream<AmqpMessage>((m) => seqOfBody(m.body));
      const started: Subject[] = [];
      return {
        async start() {
          const input = new AmqpInput(
            {
              url: through(tap, url),
              queue,
              queueType: "quorum",
              prefetch: PREFETCH,
              name: queue,
              log: silentLogger(),
              drainTimeoutMs: DRAIN_TIMEOUT_MS,
              stallTimeoutMs: STALL_TIMEOUT_MS,
            },
            downstream.handler,
          );
          started.push(input);
          await input.start();
          return input;
        },
        async inject(seqs) {
          await withConfirmChannel(url, async (ch) => {
            for (const s of seqs) ch.sendToQueue(queue, Buffer.from(String(s)), { persistent: true });
            await ch.waitForConfirms();
          });
        },
        arrived: async () => downstream.arrived,
        acked: () => tap.acked,
        refuse: async () => downstream.hold(),
        accept: async () => downstream.release(),
        refusalSeen: () => downstream.held > 0,
        released: async () => tap.open() === 0,
        ...(broker && {
          breakBroker: () => broker.stopApp(),
          healBroker: () => broker.startApp(),
        }),
        violations: () => [],
        async [Symbol.asyncDispose]() {
          for (const input of started) await input.stop();
          tap.close();
          await deleteQueues(url, queue);
        },
      };
    },
  };
}

/** A consumer reading the sink's queue from outside, for what arrived there; pausable and reconnectable. */
class QueueObserver {
  readonly arrived: number[] = [];
  #conn: ChannelModel | undefined;

  constructor(
    private readonly url: string,
    private readonly queue: string,
    private readonly schemas: SchemaRegistry,
  ) {}

  async resume(): Promise<void> {
    const conn = await amqp.connect(this.url);
    conn.on("error", () => undefined);
    const ch = await conn.createChannel();
    ch.on("error", () => undefined);
    await ch.consume(this.queue, (msg) => {
      if (!msg) return;
      for (const r of this.schemas.decodeMessage(msg.content).readings) this.arrived.push(r.seq ?? -1);
      ch.ack(msg);
    });
    this.#conn = conn;
  }

  async pause(): Promise<void> {
    const conn = this.#conn;
    this.#conn = undefined;
    await conn?.close().catch(() => undefined);
  }
}

/**
 * The AMQP sink (`AmqpSink`) on a quorum queue, framing and batching as the gateway does by default: each item one
 * reading's Avro datum, acked once RabbitMQ confirmed the message holding it; the test reads and decodes the queue. The downstream refuses by an operator's `max-length` 0 policy (RabbitMQ nacks every
 * publish); the broker breaks by `rabbitmqctl stop_app` on a private node. Both run on the describe's private node.
 */
export function amqpSinkAdapter(): DeliveryAdapter<PrivateRabbit> {
  return {
    name: "AMQP sink",
    role: "sink",
    skip: {
      "acks in arrival order":
        "a sink acks each delivery once RabbitMQ confirmed it; the contract promises no order of acks",
    },
    startPrivateBroker: () => startPrivateRabbit(),
    async rig(scenario, privateBroker): Promise<Rig> {
      // A refusing downstream is an operator's policy: on the private node, as is a broker to break.
      const faulty = scenario !== "open/close" && scenario !== "in order" && scenario !== "many in flight";
      const broker = faulty ? await privateBroker() : undefined;
      const url = broker?.url ?? inject("amqpUrl");
      const queue = `test.${uniqueId("amqp-sink")}`;
      const policy = `${queue}-max-length`;
      await withConfirmChannel(url, (ch) => declareTopology(ch, queue, "quorum"));
      const schemas = SchemaRegistry.load();
      const observer = new QueueObserver(url, queue, schemas);
      await observer.resume();
      const upstream = new SinkUpstream();
      let sink: Awaited<ReturnType<typeof startAmqpSink>> | undefined;
      const started: Subject[] = [];
      return {
        async start() {
          sink = await startAmqpSink({
            url,
            queue,
            queueType: "quorum",
            name: queue,
            log: silentLogger(),
            stallTimeoutMs: STALL_TIMEOUT_MS,
            framing: {
              single: (datum) => schemas.frameSingle(datum),
              batch: (datums, bytes) => schemas.frameBatch(datums, bytes),
            },
            batching: PUBLISH_BATCH,
            messageIdPrefix: queue,
          });
          started.push(sink);
          return sink;
        },
        async inject(seqs) {
          const target = sink;
          if (!target) throw new Error("inject before start");
          for (const s of seqs) {
            const batch: OutgoingBatch = [
              {
                route: "readings",
                datum: schemas.encodeDatum(readingOf(queue, s)),
                messageId: undefined,
                receivedAt: Date.now(),
              },
            ];
            target.write(upstream.delivery(s, batch));
          }
        },
        arrived: async () => observer.arrived,
        acked: () => upstream.acked,
        async refuse() {
          if (!broker) throw new Error("refusing needs the private node (a policy)");
          await observer.pause();
          const definition = JSON.stringify({ "max-length": 0 });
          await broker.ctl("set_policy", "--apply-to", "queues", policy, `^${queue}$`, definition);
        },
        async accept() {
          await broker?.ctl("clear_policy", policy);
          await observer.resume();
        },
        refusalSeen: () => sink?.health().ready === false,
        released: async () => !(await rabbitHasConnection(broker, queue)),
        ...(broker && {
          async breakBroker() {
            await observer.pause();
            await broker.stopApp();
          },
          async healBroker() {
            await broker.startApp();
            await observer.resume();
          },
        }),
        violations: () => upstream.violations,
        async [Symbol.asyncDispose]() {
          for (const s of started) await s.stop();
          await observer.pause();
          await deleteQueues(url, queue);
        },
      };
    },
  };
}

// --- SQLite store behind the store sink -----------------------------------------------------------------------------

/** The store's worker thread runs the compiled store/sqlite-worker.js: the store comes from the build. */
async function openBuiltStore(dbPath: string): Promise<ReadingStore> {
  const built = (await import(
    new URL("../../dist/store/index.js", import.meta.url).href
  )) as typeof import("../../store/index.js");
  return built.openStore({ dbPath });
}

/**
 * The store sink (`StoreSink`) over the SQLite store (`openStore`), as the processor wires them: each item one
 * reading (seq = item), acked once its batch committed; the test reads the table. The downstream refuses while
 * another connection holds the write lock (`BEGIN IMMEDIATE`, as an analyst's tool might).
 */
export function sqliteStoreAdapter(): DeliveryAdapter {
  return {
    name: "SQLite store sink",
    role: "sink",
    skip: {
      "in order":
        "a table has no arrival order: rows are keyed by (device, sensor, ts) and batches commit whole",
      "acks in arrival order":
        "a sink acks each delivery once its batch committed; the contract promises no order",
      "broker lost and back":
        "SQLite is a local file, there is no broker to lose (a file another writer locks is the nack scenario)",
    },
    async rig(): Promise<Rig> {
      const id = uniqueId("sqlite");
      const dir = mkdtempSync(join(tmpdir(), "telemetry-dg-"));
      const dbPath = join(dir, "telemetry.db");
      // The store is the caller's (the processor opens and closes it); each start is a new sink over it.
      const store = await openBuiltStore(dbPath);
      const upstream = new SinkUpstream();
      let sink: StoreSink | undefined;
      let locker: Database.Database | undefined;
      return {
        async start() {
          sink = new StoreSink({
            store,
            storeName: "SQLite",
            batchSize: BATCH_SIZE,
            batchDelayMs: BATCH_DELAY_MS,
            drainTimeoutMs: STORE_DRAIN_TIMEOUT_MS,
            log: silentLogger(),
            metrics: processorMetrics(new Registry()),
          });
          return sink;
        },
        async inject(seqs) {
          const target = sink;
          if (!target) throw new Error("inject before start");
          for (const s of seqs) target.write(upstream.delivery(s, readingOf(id, s)));
        },
        arrived: async () => readRows(dbPath).map((r) => r.seq ?? -1),
        acked: () => upstream.acked,
        async refuse() {
          locker = new Database(dbPath);
          locker.exec("BEGIN IMMEDIATE");
        },
        async accept() {
          locker?.exec("ROLLBACK");
          locker?.close();
          locker = undefined;
        },
        refusalSeen: () => sink?.health().ready === false,
        released: async () => sink?.inFlight === 0,
        violations: () => upstream.violations,
        async [Symbol.asyncDispose]() {
          locker?.close();
          await sink?.stop();
          await store.stop();
          rmSync(dir, { recursive: true, force: true });
        },
      };
    },
  };
}

// --- The gateway's spool ---------------------------------------------------------------------------------------

/** Small enough that a filler makes the spool full at once, large enough for 2,000 items in flight. */
const SPOOL_TEST_BYTES = 1_048_576;
const FILLER = "filler";

/** Item `seq` as the spool keeps it: one reading whose message id is the item number. */
const spoolItem = (seq: number): OutgoingBatch => [
  { route: "readings", datum: Buffer.from(String(seq)), messageId: String(seq), receivedAt: Date.now() },
];
const spoolSeqOf = (batch: OutgoingBatch): number => {
  const m = batch[0];
  return m?.route === "readings" ? Number(m.messageId) : -1;
};

function openSpoolStore(dir: string): SpoolStore {
  return SpoolStore.open({
    dir,
    maxBytes: SPOOL_TEST_BYTES,
    maxAgeMs: 86_400_000,
    full: "block",
    log: silentLogger(),
  });
}

/** Every record on disk, as (record seq, batch), oldest first. */
function spoolRecords(dir: string): { seq: number; batch: OutgoingBatch }[] {
  return listSegments(dir).flatMap((s) =>
    readSegmentRecords(s.path).map((r) => ({ seq: r.seq, batch: decodeBatch(r.payload) })),
  );
}

/**
 * The spool as the gateway's sink (`SpoolSink` over `SpoolStore`): the test is the upstream (MQTT), an item is
 * acked once durable in the spool, and the downstream is the spool's files read back. The downstream refuses when
 * the spool is full under SPOOL_FULL=block: `refuse` fills it with filler records, `accept` confirms every record
 * stored (as the drain does once RabbitMQ takes them again), which frees their segments. Each start opens the directory anew, as a restarted gateway.
 */
export function spoolSinkAdapter(): DeliveryAdapter {
  return {
    name: "spool sink",
    role: "sink",
    skip: {
      "acks in arrival order":
        "a sink acks each delivery once durable; a full spool holds what comes after, so nothing is handed on to hold",
      "broker lost and back":
        "the spool is a local directory, there is no broker to lose (a full spool is the nack scenario)",
    },
    async rig(): Promise<Rig> {
      const dir = mkdtempSync(join(tmpdir(), "telemetry-dg-spool-"));
      const upstream = new SinkUpstream();
      let store: SpoolStore | undefined;
      let sink: SpoolSink | undefined;
      let accepted = false;
      /** Items by record seq, as read from the files: kept once read, since confirmed segments are deleted. */
      const seen = new Map<number, number>();
      const snapshot = () => {
        for (const r of spoolRecords(dir)) seen.set(r.seq, spoolSeqOf(r.batch));
      };
      /** The drain's part: every record stored is confirmed, so whole segments are freed. */
      const confirmAll = () => {
        const s = store;
        if (!s) return;
        snapshot();
        for (const r of spoolRecords(dir)) s.markDone(r.seq, r.batch.length);
      };
      return {
        async start() {
          const opened = openSpoolStore(dir);
          store = opened;
          if (accepted) confirmAll();
          const started = new SpoolSink(opened);
          sink = started;
          return running({ health: () => started.health() }, async () => {
            await started.stop();
            opened.close();
            if (store === opened) store = undefined;
          });
        },
        async inject(seqs) {
          const target = sink;
          if (!target) throw new Error("inject before start");
          for (const s of seqs) target.write(upstream.delivery(s, spoolItem(s)));
        },
        arrived: async () => {
          snapshot();
          return [...seen]
            .sort((a, b) => a[0] - b[0])
            .map(([, item]) => item)
            .filter((item) => item >= 0);
        },
        acked: () => upstream.acked,
        async refuse() {
          accepted = false;
          const s = store;
          if (!s) return;
          const filler: OutgoingBatch = [
            {
              route: "rejected",
              body: Buffer.alloc(4_096),
              properties: { headers: { kind: FILLER } },
              receivedAt: 0,
            },
          ];
          // Fill until full: the spool then holds every append after it, unacknowledged.
          while (!s.full) {
            await new Promise<void>((resolve) => {
              const poll = setInterval(() => s.full && done(), 5);
              const done = () => {
                clearInterval(poll);
                resolve();
              };
              s.append(filler, done);
            });
          }
        },
        async accept() {
          accepted = true;
          confirmAll();
        },
        refusalSeen: () => sink?.health().ready === false,
        released: async () => store === undefined,
        violations: () => upstream.violations,
        async [Symbol.asyncDispose]() {
          store?.close();
          rmSync(dir, { recursive: true, force: true });
        },
      };
    },
  };
}

/**
 * The spool as the input of the gateway's uplink (`startSpoolInput`): the spool's files are the upstream (`inject`
 * appends records and waits until they are durable), the rig's handler the downstream (the AMQP sink's place), and
 * an item counts as acknowledged upstream once the spool's cursor is past it (confirmed, never sent again). Each
 * start opens the directory anew, as a restarted gateway.
 */
export function spoolInputAdapter(): DeliveryAdapter {
  return {
    name: "spool input",
    role: "input",
    skip: {
      "broker lost and back":
        "the spool is a local directory, there is no broker to lose (its crash safety is tested in spool-outage)",
    },
    async rig(): Promise<Rig> {
      const dir = mkdtempSync(join(tmpdir(), "telemetry-dg-spool-"));
      const downstream = new InputDownstream<OutgoingBatch>(spoolSeqOf);
      const sink: Sink<OutgoingBatch> = {
        write: (d: Delivery<OutgoingBatch>) => downstream.handler(d),
        inFlight: 0,
        health: () => HEALTHY,
        stop: async () => undefined,
        [Symbol.asyncDispose]: async () => undefined,
      };
      /** Item number by record seq, and how far the cursor has gone. */
      const itemOfRecord = new Map<number, number>();
      let store: SpoolStore | undefined;
      let confirmedBelow = 0;
      const open = (): SpoolStore => {
        store ??= openSpoolStore(dir);
        return store;
      };
      const close = () => {
        if (!store) return;
        confirmedBelow = store.firstNotDone;
        store.close();
        store = undefined;
      };
      return {
        async start() {
          const s = open();
          const input = startSpoolInput(s, sink, { log: silentLogger(), drainTimeoutMs: DRAIN_TIMEOUT_MS });
          return running({ health: () => input.health() }, async () => {
            await input.stop();
            close();
          });
        },
        async inject(seqs) {
          const s = open();
          let next = s.durableEnd;
          await Promise.all(
            seqs.map((seq) => {
              itemOfRecord.set(next++, seq);
              return new Promise<boolean>((resolve) => s.append(spoolItem(seq), resolve));
            }),
          );
        },
        arrived: async () => downstream.arrived,
        acked: () => {
          const below = store?.firstNotDone ?? confirmedBelow;
          return [...itemOfRecord].filter(([rec]) => rec < below).map(([, item]) => item);
        },
        async refuse() {
          downstream.hold();
        },
        async accept() {
          downstream.release();
        },
        refusalSeen: () => downstream.held > 0,
        released: async () => store === undefined,
        violations: () => [],
        async [Symbol.asyncDispose]() {
          close();
          rmSync(dir, { recursive: true, force: true });
        },
      };
    },
  };
}
