/** The delivery suite's adapter for the AMQP input (amqp/input.ts). */
import { inject } from "vitest";
import { AmqpInput, type AmqpMessage } from "../../../amqp/input.js";
import { declareTopology } from "../../../amqp/topology.js";
import { silentLogger } from "../../../common/log.js";
import { type DeliveryAdapter, InputDownstream, type Rig, type Subject } from "../delivery-suite.js";
import { type PrivateRabbit, startPrivateRabbit } from "../private-brokers.js";
import { basicAcks } from "./amqp-frames.js";
import { deleteQueues, through, withConfirmChannel } from "./rabbit.js";
import { DRAIN_TIMEOUT_MS, STALL_TIMEOUT_MS, seqOfBody, uniqueId } from "./shared.js";
import { startTap, tappedInput } from "./tcp-tap.js";

const PREFETCH = 500;

/**
 * The AMQP input (`AmqpInput`) on a quorum queue: persistent messages in, `basic.ack`s (seen on the wire) out. Its
 * broker breaks by `rabbitmqctl stop_app` on a private node and heals by `start_app`.
 */
export function amqpInputAdapter(): DeliveryAdapter<PrivateRabbit> {
  return {
    name: "AMQP input",
    role: "input",
    notRun: {
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
        ...tappedInput(downstream, tap),
        ...(broker && {
          breakBroker: () => broker.stopApp(),
          healBroker: () => broker.startApp(),
        }),
        async [Symbol.asyncDispose]() {
          for (const input of started) await input.stop();
          tap.close();
          await deleteQueues(url, queue);
        },
      };
    },
  };
}
