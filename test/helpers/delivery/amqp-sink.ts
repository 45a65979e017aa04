/** The delivery suite's adapter for the AMQP sink (amqp/sink.ts). */
import amqp, { type ChannelModel } from "amqplib";
import { inject } from "vitest";
import { AmqpSink } from "../../../amqp/sink.js";
import { declareTopology } from "../../../amqp/topology.js";
import { silentLogger } from "../../../common/log.js";
import type { OutgoingBatch } from "../../../common/outgoing.js";
import { SchemaRegistry } from "../../../schemas/index.js";
import type { DeliveryAdapter, Rig, Subject } from "../delivery-suite.js";
import { type PrivateRabbit, startPrivateRabbit } from "../private-brokers.js";
import { deleteQueues, rabbitHasConnection, withConfirmChannel } from "./rabbit.js";
import { readingOf, SinkUpstream, STALL_TIMEOUT_MS, uniqueId } from "./shared.js";

/** The gateway's defaults: readings that arrive while 8 messages await their confirm go out as batches of up to 500. */
const PUBLISH_BATCH = { maxReadings: 500, maxBytes: 262_144, window: 8 } as const;

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
    notRun: {
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
      let sink: AmqpSink | undefined;
      const started: Subject[] = [];
      return {
        async start() {
          sink = new AmqpSink({
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
          await sink.start();
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
