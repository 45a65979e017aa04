/**
 * The straightforward implementation the 10x target is measured against, with the same guarantee and the
 * same per-message work as the product (the product's validation, Avro encoding and message id), but none of its
 * concurrency: the gateway awaits each RabbitMQ confirm inside MQTT.js's `handleMessage` (so MQTT.js handles one
 * message at a time), and the processor commits one SQLite transaction per reading and acks it.
 */
import amqp from "amqplib";
import { type MqttClient, connect as mqttConnect } from "mqtt";
import { declareTopology, queueNames } from "../amqp/topology.js";
import { AVRO_CONTENT_TYPE, messageIdOf } from "../gateway/encode.js";
import { parsePayload } from "../gateway/validate.js";
import { SchemaRegistry } from "../schemas/index.js";
import { prepareInsertOne } from "../store/bench-helpers.js";
import { openDatabase } from "../store/sqlite.js";
import { forkWorker, heard, tell, type Worker } from "./ipc.js";
import type { Endpoints, SystemUnderTest } from "./pipeline.js";

const PROGRESS_INTERVAL_MS = 250;
const NAIVE_PREFETCH = 100;

export type NaiveGatewayConfig = Omit<Endpoints, "dbPath">;
export type NaiveProcessorConfig = Pick<Endpoints, "amqpUrl" | "queue" | "queueType" | "dbPath">;

function logError(who: string) {
  return (err: Error) => process.stderr.write(`bench ${who}: ${err.message}\n`);
}

/** Child side: MQTT in, one awaited confirm per reading, PUBACK after it. Runs until "stop". */
export async function runNaiveGateway(c: NaiveGatewayConfig): Promise<void> {
  const registry = SchemaRegistry.load();
  const names = queueNames(c.queue);
  const conn = await amqp.connect(c.amqpUrl);
  conn.on("error", logError("naive gateway amqp"));
  const ch = await conn.createConfirmChannel();
  ch.on("error", logError("naive gateway channel"));
  await declareTopology(ch, c.queue, c.queueType);

  let received = 0;
  let published = 0;
  const client: MqttClient = mqttConnect(c.mqttUrl, {
    clientId: `naive-gateway-${c.gatewayId}`,
    clean: false,
    protocolVersion: 4,
    keepalive: 30,
  });
  client.on("error", logError("naive gateway mqtt"));
  client.handleMessage = (packet, done) => {
    received++;
    const receivedAt = Date.now();
    const payload = typeof packet.payload === "string" ? Buffer.from(packet.payload) : packet.payload;
    const parsed = parsePayload(packet.topic, payload, {
      topicPrefix: c.topicPrefix,
      gatewayId: c.gatewayId,
      receivedAt,
    });
    const work = async () => {
      if (!parsed.ok) {
        ch.sendToQueue(names.rejected, payload, { persistent: true, headers: { reason: parsed.reason } });
        await ch.waitForConfirms();
        return;
      }
      for (const r of parsed.readings) {
        ch.sendToQueue(names.readings, registry.encode(r), {
          persistent: true,
          contentType: AVRO_CONTENT_TYPE,
          messageId: messageIdOf(r),
          timestamp: Math.floor(receivedAt / 1_000),
        });
        await ch.waitForConfirms();
        published++;
      }
    };
    work().then(
      () => done(),
      (err: Error) => done(err),
    );
  };
  await new Promise<void>((resolve, reject) => {
    client.once("connect", () => resolve());
    client.once("error", reject);
  });
  await client.subscribeAsync(`${c.topicPrefix}/+/+`, { qos: 1 });
  const progress = setInterval(
    () => void tell({ type: "progress", received, published }),
    PROGRESS_INTERVAL_MS,
  );
  await tell({ type: "ready" });
  await heard("stop");
  clearInterval(progress);
  await client.endAsync(true);
  await conn.close().catch(() => undefined);
  await tell({ type: "done", received, published });
}

/** Child side: consumes the queue, one SQLite transaction and one ack per reading. Runs until "stop". */
export async function runNaiveProcessor(c: NaiveProcessorConfig): Promise<void> {
  const registry = SchemaRegistry.load();
  const db = openDatabase(c.dbPath);
  const insert = prepareInsertOne(db);
  const storeOne = db.transaction((r: ReturnType<SchemaRegistry["decode"]>) => insert(r, Date.now()));
  const conn = await amqp.connect(c.amqpUrl);
  conn.on("error", logError("naive processor amqp"));
  const ch = await conn.createChannel();
  ch.on("error", logError("naive processor channel"));
  await declareTopology(ch, c.queue, c.queueType);
  await ch.prefetch(NAIVE_PREFETCH);
  let stored = 0;
  await ch.consume(queueNames(c.queue).readings, (msg) => {
    if (msg === null) return;
    storeOne.immediate(registry.decode(msg.content));
    stored++;
    ch.ack(msg);
  });
  const progress = setInterval(() => void tell({ type: "progress", stored }), PROGRESS_INTERVAL_MS);
  await tell({ type: "ready" });
  await heard("stop");
  clearInterval(progress);
  await conn.close().catch(() => undefined);
  db.close();
  await tell({ type: "done", stored });
}

/** Parent side: the naive processor, then the naive gateway, each its own process, ready to measure. */
export async function startNaive(e: Endpoints): Promise<SystemUnderTest> {
  const processor = forkWorker<{ type: "done" }>("naive-processor", e satisfies NaiveProcessorConfig);
  await processor.ready;
  const gateway = forkWorker<{ type: "done" }>("naive-gateway", e satisfies NaiveGatewayConfig);
  await gateway.ready.catch(async (err: unknown) => {
    await processor.kill();
    throw err;
  });
  const stopOne = async (w: Worker<unknown>) => {
    w.send({ type: "stop" });
    const timeout = new Promise<number>((resolve) => setTimeout(() => resolve(1), 10_000));
    const code = await Promise.race([w.done.then(() => 0), timeout]).catch(() => 1);
    await w.kill();
    return code;
  };
  const counts = () => {
    const [g, p] = [gateway.latest(), processor.latest()];
    const stored = Number(p?.stored ?? 0);
    return { gatewayReceived: Number(g?.received ?? 0), gatewayPublished: Number(g?.published ?? 0), stored };
  };
  return {
    pids: { gateway: gateway.pid, processor: processor.pid },
    progress: async () => ({ ...counts(), deliveries: counts().stored, gatewayInflight: 1 }),
    counters: async () => counts(),
    stop: async () => ({ gateway: await stopOne(gateway), processor: await stopOne(processor) }),
  };
}
