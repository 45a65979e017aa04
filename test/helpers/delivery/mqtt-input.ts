/** The delivery suite's adapter for the MQTT input (mqtt/input.ts) on a private Mosquitto. */
import { existsSync } from "node:fs";
import mqtt from "mqtt";
import { type Packet, parser } from "mqtt-packet";
import { expect, inject, vi } from "vitest";
import { silentLogger } from "../../../common/log.js";
import { type MqttMessage, startMqttInput } from "../../../mqtt/input.js";
import { type DeliveryAdapter, InputDownstream, type Rig, type Subject } from "../delivery-suite.js";
import { endMqttSession } from "../mqtt-session.js";
import { type PrivateMosquitto, startPrivateMosquitto } from "../private-brokers.js";
import { seqOfBody, uniqueId } from "./shared.js";
import { type Observer, startTap, tappedInput } from "./tcp-tap.js";

const WAIT = { timeout: 20_000, interval: 25 } as const;

/** The MQTT input's window: with Mosquitto's default `max_queued_messages` (1,000) 2,000 items never overflow it. */
const RECEIVE_MAXIMUM = 1_000;

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
        ...tappedInput(downstream, tap),
        ...(broker && {
          breakBroker: () => terminate(broker),
          healBroker: () => broker.restart(),
        }),
        async [Symbol.asyncDispose]() {
          for (const input of started) await input.stop();
          tap.close();
          await endMqttSession(brokerUrl, clientId);
        },
      };
    },
  };
}
