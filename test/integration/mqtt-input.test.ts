import { type ChildProcess, spawn } from "node:child_process";
import { randomUUID } from "node:crypto";
import { once } from "node:events";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { connect, createServer, type Server, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import mqtt from "mqtt";
import { type Packet, parser } from "mqtt-packet";
import { pino } from "pino";
import { afterEach, describe, expect, inject, it, vi } from "vitest";
import { silentLogger } from "../../common/log.js";
import {
  createMqttInput,
  type IncomingMessage,
  type MqttInput,
  type MqttInputOptions,
} from "../../mqtt/input.js";
import { freePort } from "../helpers/private-brokers.js";

/** MQTT_URL when set, else a testcontainers Mosquitto where Docker answers, else mqtt://127.0.0.1:1883. */
const MQTT_URL = inject("mqttUrl");
/** How long we watch for something that must not happen (a PUBACK, a disconnect). */
const QUIET_MS = 250;
const WAIT = { timeout: 5_000, interval: 20 } as const;

const cleanups: (() => Promise<void>)[] = [];
const sessions: { url: string; clientId: string }[] = [];

afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  // Persistent sessions left on the shared broker would keep collecting messages: end each with a clean start.
  for (const { url, clientId } of sessions.splice(0)) {
    const client = await mqtt.connectAsync(url, {
      clientId,
      protocolVersion: 5,
      clean: true,
      properties: { sessionExpiryInterval: 0 },
      reconnectPeriod: 0,
    });
    await client.endAsync();
  }
});

function uniqueName(label: string): string {
  return `test-${label}-${randomUUID().slice(0, 8)}`;
}

function newInput(
  overrides: Partial<MqttInputOptions> & Pick<MqttInputOptions, "clientId" | "topic">,
): MqttInput {
  const opts: MqttInputOptions = {
    url: MQTT_URL,
    receiveMaximum: 100,
    keepaliveSeconds: 30,
    sessionExpirySeconds: 300,
    reconnectMinMs: 50,
    reconnectMaxMs: 500,
    log: process.env.MQTT_INPUT_TEST_LOG ? pino({ level: "debug" }) : silentLogger(),
    ...overrides,
  };
  const input = createMqttInput(opts);
  // A wire tap's URL leads to MQTT_URL too, and the tap may be gone by the time the session is cleaned up.
  sessions.push({ url: MQTT_URL, clientId: opts.clientId });
  cleanups.push(() => input.stop());
  return input;
}

async function newPublisher(url = MQTT_URL): Promise<mqtt.MqttClient> {
  const client = await mqtt.connectAsync(url, {
    clientId: uniqueName("pub"),
    protocolVersion: 5,
    clean: true,
    reconnectPeriod: 0,
  });
  client.on("error", () => {});
  cleanups.push(() => client.endAsync());
  return client;
}

/** Publishes each payload at QoS 1, in order, and waits for the broker's PUBACKs. */
async function publishAll(client: mqtt.MqttClient, topic: string, payloads: string[]): Promise<void> {
  await Promise.all(payloads.map((payload) => client.publishAsync(topic, payload, { qos: 1 })));
}

function range(from: number, to: number): string[] {
  return Array.from({ length: to - from }, (_, i) => `m${from + i}`);
}

/** A TCP proxy in front of the broker that decodes what goes through, so tests can see PUBACKs on the wire. */
interface WireTap {
  readonly url: string;
  /** Packets the client sent, in order. */
  readonly fromClient: Packet[];
  /** Packets the broker sent, in order. */
  readonly fromBroker: Packet[];
  /** Message ids of the PUBACKs the client sent, in order. */
  pubacks(): (number | undefined)[];
  /** Cuts every proxied connection, as a network failure would. */
  cut(): void;
  /** From now on, drops what the broker sends on the current connections: a path that silently died. */
  stall(): void;
}

async function startWireTap(target: string): Promise<WireTap> {
  const { hostname, port } = new URL(target);
  const fromClient: Packet[] = [];
  const fromBroker: Packet[] = [];
  const sockets = new Set<Socket>();
  const brokerSides = new Set<Socket>();
  const stalled = new Set<Socket>();
  const server: Server = createServer((client) => {
    const broker = connect(Number(port || 1_883), hostname);
    const upstream = parser();
    const downstream = parser({ protocolVersion: 5 });
    upstream.on("packet", (packet: Packet) => fromClient.push(packet));
    downstream.on("packet", (packet: Packet) => fromBroker.push(packet));
    client.on("data", (chunk: Buffer) => {
      upstream.parse(chunk);
      broker.write(chunk);
    });
    brokerSides.add(broker);
    broker.on("data", (chunk: Buffer) => {
      if (stalled.has(broker)) return;
      downstream.parse(chunk);
      client.write(chunk);
    });
    for (const socket of [client, broker]) {
      sockets.add(socket);
      socket.on("error", () => {});
      socket.on("close", () => {
        sockets.delete(socket);
        client.destroy();
        broker.destroy();
      });
    }
  });
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  cleanups.push(async () => {
    for (const socket of sockets) socket.destroy();
    server.close();
  });
  const address = server.address();
  if (address === null || typeof address === "string") throw new Error("wire tap has no TCP address");
  return {
    url: `mqtt://127.0.0.1:${address.port}`,
    fromClient,
    fromBroker,
    pubacks: () => fromClient.filter((packet) => packet.cmd === "puback").map((packet) => packet.messageId),
    cut: () => {
      for (const socket of sockets) socket.destroy();
    },
    stall: () => {
      for (const socket of brokerSides) stalled.add(socket);
    },
  };
}

/** Message ids of the PUBLISH packets the broker sent, in order. */
function publishIds(tap: WireTap): (number | undefined)[] {
  return tap.fromBroker.filter((packet) => packet.cmd === "publish").map((packet) => packet.messageId);
}

/** A Mosquitto of the test's own, without persistence, that the test may kill. */
async function startPrivateBroker(
  port: number,
  dir: string,
  extraConfig: string[] = [],
): Promise<ChildProcess> {
  const config = join(dir, "mosquitto.conf");
  const lines = [`listener ${port} 127.0.0.1`, "allow_anonymous true", "persistence false", "log_dest none"];
  await writeFile(config, [...lines, ...extraConfig, ""].join("\n"));
  const broker = spawn("mosquitto", ["-c", config], { stdio: "ignore" });
  await vi.waitFor(async () => {
    const probe = connect(port, "127.0.0.1");
    try {
      await once(probe, "connect");
    } finally {
      probe.destroy();
    }
  }, WAIT);
  return broker;
}

async function killBroker(broker: ChildProcess): Promise<void> {
  if (broker.exitCode !== null || broker.signalCode !== null) return;
  const exited = once(broker, "exit");
  broker.kill("SIGKILL");
  await exited;
}

function payloads(messages: IncomingMessage[]): string[] {
  return messages.map((msg) => msg.payload.toString());
}

describe("MQTT input", () => {
  it("a QoS 1 message is PUBACKed only once ack() is called", async () => {
    const tap = await startWireTap(MQTT_URL);
    const topic = `${uniqueName("t")}/dev-1/temp`;
    const input = newInput({ url: tap.url, clientId: uniqueName("in"), topic });
    const received: IncomingMessage[] = [];
    await input.start((msg) => received.push(msg));
    const publisher = await newPublisher();

    await publishAll(publisher, topic, ['{"value":1}']);
    await vi.waitFor(() => expect(received).toHaveLength(1), WAIT);
    const [msg] = received;
    expect(msg?.topic).toBe(topic);
    expect(msg?.qos).toBe(1);
    expect(msg?.payload.toString()).toBe('{"value":1}');
    expect(msg?.receivedAt).toBeGreaterThan(Date.now() - 5_000);

    await sleep(QUIET_MS);
    expect(tap.pubacks()).toEqual([]);
    expect(input.unacked).toBe(1);

    msg?.ack();
    await vi.waitFor(() => expect(tap.pubacks()).toEqual(publishIds(tap)), WAIT);
    expect(input.unacked).toBe(0);
    msg?.ack();
    await sleep(QUIET_MS);
    expect(tap.pubacks()).toHaveLength(1);
  });

  it("PUBACKs go out in arrival order when ack() is called in reverse order", async () => {
    const tap = await startWireTap(MQTT_URL);
    const topic = `${uniqueName("t")}/dev-1/temp`;
    const input = newInput({ url: tap.url, clientId: uniqueName("in"), topic });
    const received: IncomingMessage[] = [];
    await input.start((msg) => received.push(msg));
    const publisher = await newPublisher();

    await publishAll(publisher, topic, range(0, 5));
    await vi.waitFor(() => expect(received).toHaveLength(5), WAIT);
    expect(payloads(received)).toEqual(range(0, 5));

    for (const msg of received.slice(1).reverse()) msg.ack();
    await sleep(QUIET_MS);
    expect(tap.pubacks()).toEqual([]);
    expect(input.unacked).toBe(5);

    received[0]?.ack();
    await vi.waitFor(() => expect(tap.pubacks()).toHaveLength(5), WAIT);
    expect(tap.pubacks()).toEqual(publishIds(tap));
    expect(input.unacked).toBe(0);
  });

  it("with receiveMaximum 100 the broker sends 100 messages before any ack, and never more than 100 are unacked", async () => {
    const topic = `${uniqueName("t")}/dev-1/temp`;
    const input = newInput({ clientId: uniqueName("in"), topic, receiveMaximum: 100 });
    const received: IncomingMessage[] = [];
    let acking = false;
    let outstanding = 0;
    let maxOutstanding = 0;
    await input.start((msg) => {
      received.push(msg);
      maxOutstanding = Math.max(maxOutstanding, ++outstanding);
      if (acking) {
        outstanding--;
        msg.ack();
      }
    });
    const publisher = await newPublisher();

    await publishAll(publisher, topic, range(0, 300));
    await vi.waitFor(() => expect(received).toHaveLength(100), WAIT);
    await sleep(QUIET_MS);
    expect(received).toHaveLength(100);
    expect(input.unacked).toBe(100);

    acking = true;
    for (const msg of received.slice()) {
      outstanding--;
      msg.ack();
    }
    await vi.waitFor(() => expect(received).toHaveLength(300), WAIT);
    expect(payloads(received)).toEqual(range(0, 300));
    expect(maxOutstanding).toBe(100);
    await vi.waitFor(() => expect(input.unacked).toBe(0), WAIT);
  });

  it("holds back what the broker sends beyond Receive Maximum and hands it on in order as acks free the window", async () => {
    // Mosquitto 2.0 overshoots Receive Maximum when it has a backlog and PUBACKs come in order.
    const topic = `${uniqueName("t")}/dev-1/temp`;
    const input = newInput({ clientId: uniqueName("in"), topic, receiveMaximum: 10 });
    const received: string[] = [];
    let outstanding = 0;
    let maxOutstanding = 0;
    await input.start((msg) => {
      received.push(msg.payload.toString());
      maxOutstanding = Math.max(maxOutstanding, ++outstanding);
      setTimeout(() => {
        outstanding--;
        msg.ack();
      }, 1);
    });
    const publisher = await newPublisher();

    await publishAll(publisher, topic, range(0, 500));
    await vi.waitFor(() => expect(received).toHaveLength(500), WAIT);
    expect(received).toEqual(range(0, 500));
    expect(maxOutstanding).toBeLessThanOrEqual(10);
    await vi.waitFor(() => expect(input.unacked).toBe(0), WAIT);
  });

  it("keeps the session across stop(): unacked and newly published messages arrive on the next start", async () => {
    const topic = `${uniqueName("t")}/dev-1/temp`;
    const clientId = uniqueName("in");
    const first = newInput({ clientId, topic });
    const firstReceived: IncomingMessage[] = [];
    await first.start((msg) => firstReceived.push(msg));
    const publisher = await newPublisher();

    await publishAll(publisher, topic, range(0, 5));
    await vi.waitFor(() => expect(firstReceived).toHaveLength(5), WAIT);
    firstReceived[0]?.ack();
    firstReceived[1]?.ack();
    const disconnected = vi.fn();
    first.on("disconnected", disconnected);
    await first.stop();
    expect(first.connected).toBe(false);
    expect(disconnected).toHaveBeenCalledWith(undefined);
    // An ack after the connection is gone is a no-op; the broker redelivers instead.
    firstReceived[2]?.ack();

    await publishAll(publisher, topic, range(5, 10));

    const second = newInput({ clientId, topic });
    const connected = vi.fn();
    second.on("connected", connected);
    const secondReceived: string[] = [];
    await second.start((msg) => {
      secondReceived.push(msg.payload.toString());
      msg.ack();
    });
    expect(connected).toHaveBeenCalledWith({ sessionPresent: true });
    await vi.waitFor(() => expect(new Set(secondReceived)).toEqual(new Set(range(2, 10))), WAIT);
    // m0 and m1 were PUBACKed before DISCONNECT, so the broker does not send them again.
    expect(secondReceived).not.toContain("m0");
    expect(secondReceived).not.toContain("m1");
  });

  it("an ack() from a connection that is gone writes no PUBACK on the next connection", async () => {
    const tap = await startWireTap(MQTT_URL);
    const topic = `${uniqueName("t")}/dev-1/temp`;
    const input = newInput({ url: tap.url, clientId: uniqueName("in"), topic });
    const received: IncomingMessage[] = [];
    await input.start((msg) => received.push(msg));
    const connected = vi.fn();
    input.on("connected", connected);
    const publisher = await newPublisher();

    await publishAll(publisher, topic, ["m0"]);
    await vi.waitFor(() => expect(received).toHaveLength(1), WAIT);

    // Fault: the network drops the connection while the message is unacked.
    tap.cut();
    await vi.waitFor(() => expect(connected).toHaveBeenCalledWith({ sessionPresent: true }), WAIT);
    await vi.waitFor(() => expect(received).toHaveLength(2), WAIT);
    expect(payloads(received)).toEqual(["m0", "m0"]);

    received[0]?.ack();
    await sleep(QUIET_MS);
    expect(tap.pubacks()).toEqual([]);
    expect(input.unacked).toBe(1);

    received[1]?.ack();
    await vi.waitFor(() => expect(tap.pubacks()).toHaveLength(1), WAIT);
    expect(input.unacked).toBe(0);
  });

  it("reconnects by itself after the broker is killed and restarted, and receives what is published then", async () => {
    const dir = await mkdtemp(join(tmpdir(), "mqtt-input-"));
    const port = await freePort();
    let broker = await startPrivateBroker(port, dir);
    cleanups.push(async () => {
      await killBroker(broker);
      await rm(dir, { recursive: true, force: true });
    });
    const url = `mqtt://127.0.0.1:${port}`;
    const topic = `${uniqueName("t")}/dev-1/temp`;
    const input = newInput({
      url,
      clientId: uniqueName("in"),
      topic,
      reconnectMinMs: 50,
      reconnectMaxMs: 200,
    });
    sessions.pop(); // dies with the private broker
    const received: string[] = [];
    const connected = vi.fn();
    const disconnected = vi.fn();
    input.on("connected", connected);
    input.on("disconnected", disconnected);
    await input.start((msg) => {
      received.push(msg.payload.toString());
      msg.ack();
    });

    // Fault: SIGKILL, so the broker sends no DISCONNECT and the socket just closes.
    await killBroker(broker);
    expect(connected).toHaveBeenCalledTimes(1);
    await vi.waitFor(() => expect(disconnected).toHaveBeenCalledTimes(1), WAIT);
    expect(disconnected.mock.calls[0]?.[0]).toBeInstanceOf(Error);
    expect(input.connected).toBe(false);
    // Keep the broker down for a few reconnect attempts.
    await sleep(300);

    broker = await startPrivateBroker(port, dir);
    await vi.waitFor(() => expect(connected).toHaveBeenCalledTimes(2), WAIT);
    expect(connected).toHaveBeenLastCalledWith({ sessionPresent: false });
    expect(input.connected).toBe(true);

    const publisher = await newPublisher(url);
    await publishAll(publisher, topic, ["after-restart"]);
    await vi.waitFor(() => expect(received).toEqual(["after-restart"]), WAIT);
  });

  it("keeps the connection up with keepalive 1 s while a message is held unacked for 3 s", async () => {
    const tap = await startWireTap(MQTT_URL);
    const topic = `${uniqueName("t")}/dev-1/temp`;
    const input = newInput({ url: tap.url, clientId: uniqueName("in"), topic, keepaliveSeconds: 1 });
    const disconnected = vi.fn();
    input.on("disconnected", disconnected);
    const received: IncomingMessage[] = [];
    await input.start((msg) => received.push(msg));
    const publisher = await newPublisher();

    await publishAll(publisher, topic, ["held"]);
    await vi.waitFor(() => expect(received).toHaveLength(1), WAIT);
    await sleep(3_000);

    expect(disconnected).not.toHaveBeenCalled();
    expect(input.connected).toBe(true);
    expect(tap.fromClient.filter((packet) => packet.cmd === "pingreq").length).toBeGreaterThanOrEqual(2);
    expect(tap.fromBroker.filter((packet) => packet.cmd === "pingresp").length).toBeGreaterThanOrEqual(2);
    received[0]?.ack();
    await vi.waitFor(() => expect(tap.pubacks()).toHaveLength(1), WAIT);
  });

  it("drops a connection whose PINGRESP does not come within the keepalive, and reconnects", async () => {
    const tap = await startWireTap(MQTT_URL);
    const topic = `${uniqueName("t")}/dev-1/temp`;
    const input = newInput({ url: tap.url, clientId: uniqueName("in"), topic, keepaliveSeconds: 1 });
    const connected = vi.fn();
    const disconnected = vi.fn();
    input.on("connected", connected);
    input.on("disconnected", disconnected);
    await input.start(() => {});

    // Fault: the broker's packets stop arriving, but the socket stays open.
    tap.stall();
    await vi.waitFor(() => expect(disconnected).toHaveBeenCalledTimes(1), WAIT);
    expect(disconnected.mock.calls[0]?.[0]?.message).toMatch(/no PINGRESP within 1 s/);
    await vi.waitFor(() => expect(connected).toHaveBeenCalledTimes(2), WAIT);
    expect(input.connected).toBe(true);
  });

  it("start() rejects with the broker's reason when the CONNACK refuses the connection", async () => {
    const dir = await mkdtemp(join(tmpdir(), "mqtt-input-"));
    const port = await freePort();
    // Anonymous clients are refused, and we send no credentials.
    const broker = await startPrivateBroker(port, dir, ["allow_anonymous false"]);
    cleanups.push(async () => {
      await killBroker(broker);
      await rm(dir, { recursive: true, force: true });
    });
    const input = newInput({ url: `mqtt://127.0.0.1:${port}`, clientId: uniqueName("in"), topic: "x/+/+" });
    sessions.pop(); // never created
    await expect(input.start(() => {})).rejects.toThrow(
      /refused the connection: reason 0x87 \(Not authorized\)/,
    );
    expect(input.connected).toBe(false);
  });

  it("start() rejects when the broker grants the subscription only at QoS 0", async () => {
    const dir = await mkdtemp(join(tmpdir(), "mqtt-input-"));
    const port = await freePort();
    const broker = await startPrivateBroker(port, dir, ["max_qos 0"]);
    cleanups.push(async () => {
      await killBroker(broker);
      await rm(dir, { recursive: true, force: true });
    });
    const input = newInput({ url: `mqtt://127.0.0.1:${port}`, clientId: uniqueName("in"), topic: "x/+/+" });
    sessions.pop(); // dies with the private broker
    await expect(input.start(() => {})).rejects.toThrow(
      /subscription to "x\/\+\/\+" failed: the broker granted only QoS 0/,
    );
    expect(input.connected).toBe(false);
  });

  it("start() rejects when nothing listens at the URL, and does not retry", async () => {
    const port = await freePort();
    const input = newInput({ url: `mqtt://127.0.0.1:${port}`, clientId: uniqueName("in"), topic: "x/+/+" });
    sessions.pop(); // never created
    await expect(input.start(() => {})).rejects.toThrow(`MQTT connection to 127.0.0.1:${port} failed`);
    expect(input.connected).toBe(false);
  });
});
