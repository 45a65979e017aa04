import { randomUUID } from "node:crypto";
import { once } from "node:events";
import { connect, createServer, type Server, type Socket } from "node:net";
import { setTimeout as sleep } from "node:timers/promises";
import mqtt from "mqtt";
import { type Packet, parser } from "mqtt-packet";
import { pino } from "pino";
import { afterEach, describe, expect, inject, it, vi } from "vitest";
import { type Logger, silentLogger } from "../../common/log.js";
import type { Delivery } from "../../common/pipeline.js";
import { type MqttInput, type MqttInputOptions, type MqttMessage, startMqttInput } from "../../mqtt/input.js";
import { type PrivateMosquitto, startPrivateMosquitto } from "../helpers/private-brokers.js";

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

type Handler = (delivery: Delivery<MqttMessage>) => void;

/** Starts an input and returns at once, as `startMqttInput` does: listeners added now miss no event. */
async function openInput(
  overrides: Partial<MqttInputOptions> & Pick<MqttInputOptions, "clientId" | "topic">,
  handler: Handler,
): Promise<MqttInput> {
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
  const input = await startMqttInput(opts, handler);
  // A wire tap's URL leads to MQTT_URL too, and the tap may be gone by the time the session is cleaned up.
  sessions.push({ url: MQTT_URL, clientId: opts.clientId });
  cleanups.push(() => input.stop());
  return input;
}

async function untilConnected(input: MqttInput): Promise<void> {
  await vi.waitFor(() => expect(input.connected).toBe(true), WAIT);
}

/** Starts an input and waits until it is subscribed. */
async function startInput(
  overrides: Partial<MqttInputOptions> & Pick<MqttInputOptions, "clientId" | "topic">,
  handler: Handler,
): Promise<MqttInput> {
  const input = await openInput(overrides, handler);
  await untilConnected(input);
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

/** A Mosquitto of the test's own, without persistence, that the test may kill, hang or restart. */
async function privateBroker(extraConfig: string[] = []): Promise<PrivateMosquitto> {
  const broker = await startPrivateMosquitto({ extraConfig });
  cleanups.push(() => broker.stop());
  return broker;
}

/** Log lines as objects, for tests that check what an operator reads. */
function capturedLog(): { log: Logger; lines: Record<string, unknown>[] } {
  const lines: Record<string, unknown>[] = [];
  const log = pino({ level: "info" }, { write: (line: string) => void lines.push(JSON.parse(line)) });
  return { log, lines };
}

const WARN = 40;

/** When each hung broker process was stopped, by pid. */
const hungSince = new Map<number, number>();

/** Fault: SIGSTOP, so the broker keeps its sockets open and answers nothing. SIGCONT at cleanup at the latest. */
function hang(broker: PrivateMosquitto): number {
  const { pid } = broker;
  process.kill(pid, "SIGSTOP");
  const at = Date.now();
  hungSince.set(pid, at);
  cleanups.push(async () => {
    if (hungSince.delete(pid)) process.kill(pid, "SIGCONT");
  });
  return at;
}

/** SIGCONT; returns how long the broker was hung. */
function resume(broker: PrivateMosquitto): number {
  const { pid } = broker;
  const at = hungSince.get(pid) ?? Date.now();
  hungSince.delete(pid);
  process.kill(pid, "SIGCONT");
  return Date.now() - at;
}

/** A TCP server that accepts connections and never answers: a hung broker as seen from outside. */
async function startSilentServer(): Promise<{
  url: string;
  port: number;
  connections(): number;
  bytesReceived(): number;
}> {
  let connections = 0;
  let bytes = 0;
  const sockets = new Set<Socket>();
  const server = createServer((socket) => {
    connections++;
    sockets.add(socket);
    socket.on("data", (chunk: Buffer) => {
      bytes += chunk.length;
    });
    socket.on("error", () => {});
    socket.on("close", () => sockets.delete(socket));
  });
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  cleanups.push(async () => {
    for (const socket of sockets) socket.destroy();
    server.close();
  });
  const address = server.address();
  if (address === null || typeof address === "string") throw new Error("silent server has no TCP address");
  return {
    url: `mqtt://127.0.0.1:${address.port}`,
    port: address.port,
    connections: () => connections,
    bytesReceived: () => bytes,
  };
}

/** Rejects if `promise` has not settled within `ms`. */
async function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} did not settle within ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([promise, late]);
  } finally {
    clearTimeout(timer);
  }
}

function payloads(deliveries: Delivery<MqttMessage>[]): string[] {
  return deliveries.map((d) => d.item.payload.toString());
}

describe("MQTT input", () => {
  it("a QoS 1 message is PUBACKed only once ack() is called", async () => {
    const tap = await startWireTap(MQTT_URL);
    const topic = `${uniqueName("t")}/dev-1/temp`;
    const received: Delivery<MqttMessage>[] = [];
    const input = await startInput({ url: tap.url, clientId: uniqueName("in"), topic }, (d) =>
      received.push(d),
    );
    const publisher = await newPublisher();

    await publishAll(publisher, topic, ['{"value":1}']);
    await vi.waitFor(() => expect(received).toHaveLength(1), WAIT);
    const [msg] = received;
    expect(msg?.item.topic).toBe(topic);
    expect(msg?.item.qos).toBe(1);
    expect(msg?.item.payload.toString()).toBe('{"value":1}');
    expect(msg?.item.receivedAt).toBeGreaterThan(Date.now() - 5_000);

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
    const received: Delivery<MqttMessage>[] = [];
    const input = await startInput({ url: tap.url, clientId: uniqueName("in"), topic }, (d) =>
      received.push(d),
    );
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
    const received: Delivery<MqttMessage>[] = [];
    let acking = false;
    let outstanding = 0;
    let maxOutstanding = 0;
    const input = await startInput({ clientId: uniqueName("in"), topic, receiveMaximum: 100 }, (msg) => {
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
    const received: string[] = [];
    let outstanding = 0;
    let maxOutstanding = 0;
    const input = await startInput({ clientId: uniqueName("in"), topic, receiveMaximum: 10 }, (msg) => {
      received.push(msg.item.payload.toString());
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
    const firstReceived: Delivery<MqttMessage>[] = [];
    const first = await startInput({ clientId, topic }, (msg) => firstReceived.push(msg));
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

    const secondReceived: string[] = [];
    const second = await openInput({ clientId, topic }, (msg) => {
      secondReceived.push(msg.item.payload.toString());
      msg.ack();
    });
    const connected = vi.fn();
    second.on("connected", connected);
    await untilConnected(second);
    expect(connected).toHaveBeenCalledWith({ sessionPresent: true });
    await vi.waitFor(() => expect(new Set(secondReceived)).toEqual(new Set(range(2, 10))), WAIT);
    // m0 and m1 were PUBACKed before DISCONNECT, so the broker does not send them again.
    expect(secondReceived).not.toContain("m0");
    expect(secondReceived).not.toContain("m1");
  });

  it("an ack() from a connection that is gone writes no PUBACK on the next connection", async () => {
    const tap = await startWireTap(MQTT_URL);
    const topic = `${uniqueName("t")}/dev-1/temp`;
    const received: Delivery<MqttMessage>[] = [];
    const input = await startInput({ url: tap.url, clientId: uniqueName("in"), topic }, (msg) =>
      received.push(msg),
    );
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
    const broker = await privateBroker();
    const topic = `${uniqueName("t")}/dev-1/temp`;
    const received: string[] = [];
    const input = await openInput(
      { url: broker.url, clientId: uniqueName("in"), topic, reconnectMinMs: 50, reconnectMaxMs: 200 },
      (msg) => {
        received.push(msg.item.payload.toString());
        msg.ack();
      },
    );
    sessions.pop(); // dies with the private broker
    const connected = vi.fn();
    const disconnected = vi.fn();
    input.on("connected", connected);
    input.on("disconnected", disconnected);
    await untilConnected(input);

    // Fault: SIGKILL, so the broker sends no DISCONNECT and the socket just closes.
    await broker.kill9();
    expect(connected).toHaveBeenCalledTimes(1);
    await vi.waitFor(() => expect(disconnected).toHaveBeenCalledTimes(1), WAIT);
    expect(disconnected.mock.calls[0]?.[0]).toBeInstanceOf(Error);
    expect(input.connected).toBe(false);
    // Keep the broker down for a few reconnect attempts.
    await sleep(300);

    await broker.restart();
    await vi.waitFor(() => expect(connected).toHaveBeenCalledTimes(2), WAIT);
    expect(connected).toHaveBeenLastCalledWith({ sessionPresent: false });
    expect(input.connected).toBe(true);

    const publisher = await newPublisher(broker.url);
    await publishAll(publisher, topic, ["after-restart"]);
    await vi.waitFor(() => expect(received).toEqual(["after-restart"]), WAIT);
  });

  it("keeps the connection up with keepalive 1 s while a message is held unacked for 3 s", async () => {
    const tap = await startWireTap(MQTT_URL);
    const topic = `${uniqueName("t")}/dev-1/temp`;
    const received: Delivery<MqttMessage>[] = [];
    const input = await startInput(
      { url: tap.url, clientId: uniqueName("in"), topic, keepaliveSeconds: 1 },
      (msg) => received.push(msg),
    );
    const disconnected = vi.fn();
    input.on("disconnected", disconnected);
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
    const input = await openInput(
      { url: tap.url, clientId: uniqueName("in"), topic, keepaliveSeconds: 1 },
      () => {},
    );
    const connected = vi.fn();
    const disconnected = vi.fn();
    input.on("connected", connected);
    input.on("disconnected", disconnected);
    await untilConnected(input);

    // Fault: the broker's packets stop arriving, but the socket stays open.
    tap.stall();
    await vi.waitFor(() => expect(disconnected).toHaveBeenCalledTimes(1), WAIT);
    expect(disconnected.mock.calls[0]?.[0]?.message).toMatch(/no PINGRESP within 1 s/);
    await vi.waitFor(() => expect(connected).toHaveBeenCalledTimes(2), WAIT);
    expect(input.connected).toBe(true);
  });

  it("reports the broker's reason in health() and the log, and retries, when the CONNACK refuses the connection", async () => {
    // Anonymous clients are refused, and we send no credentials.
    const broker = await privateBroker(["allow_anonymous false"]);
    const { log, lines } = capturedLog();
    const input = await openInput(
      { url: broker.url, clientId: uniqueName("in"), topic: "x/+/+", log },
      () => {},
    );
    sessions.pop(); // never created
    const failed = vi.fn();
    input.on("failed", failed);

    await vi.waitFor(() => expect(failed).toHaveBeenCalledTimes(2), WAIT);
    expect(input.health()).toEqual({
      ready: false,
      reason: expect.stringMatching(/refused the connection: reason 0x87 \(Not authorized\)/),
    });
    expect(input.connected).toBe(false);
    const warnings = lines.filter((line) => line.level === WARN).map((line) => String(line.msg));
    expect(warnings.slice(0, 2)).toEqual([
      expect.stringMatching(
        `^MQTT connection to 127.0.0.1:${broker.port} failed: broker refused the connection: reason 0x87 \\(Not authorized\\): check MQTT_USERNAME and MQTT_PASSWORD; retrying in \\d+ ms$`,
      ),
      expect.stringMatching(`^MQTT connection to 127.0.0.1:${broker.port} failed: .*Not authorized`),
    ]);
  });

  it("reports in health() and retries when the broker grants the subscription only at QoS 0", async () => {
    const broker = await privateBroker(["max_qos 0"]);
    const input = await openInput({ url: broker.url, clientId: uniqueName("in"), topic: "x/+/+" }, () => {});
    sessions.pop(); // dies with the private broker
    const failed = vi.fn();
    input.on("failed", failed);

    await vi.waitFor(() => expect(failed).toHaveBeenCalledTimes(2), WAIT);
    expect(input.health()).toEqual({
      ready: false,
      reason: expect.stringMatching(/subscription to "x\/\+\/\+" failed: the broker granted only QoS 0/),
    });
    expect(input.connected).toBe(false);
  });

  it("keeps retrying while nothing listens at the URL, logs each refusal, and connects once the broker is up", async () => {
    // Fault: the broker is down when the input starts (issue 18: the same as RabbitMQ, no exit).
    const broker = await privateBroker();
    await broker.kill9();
    const { log, lines } = capturedLog();
    const input = await openInput(
      { url: broker.url, clientId: uniqueName("in"), topic: "x/+/+", log },
      () => {},
    );
    sessions.pop(); // dies with the private broker
    const failed = vi.fn();
    input.on("failed", failed);
    expect(input.health()).toEqual({
      ready: false,
      reason: `mqtt not connected: connecting to ${broker.host}:${broker.port}`,
    });

    await vi.waitFor(() => expect(failed.mock.calls.length).toBeGreaterThanOrEqual(3), WAIT);
    expect(input.health()).toEqual({
      ready: false,
      reason: expect.stringContaining(
        `MQTT connection to 127.0.0.1:${broker.port} failed: connection refused`,
      ),
    });
    expect(input.connected).toBe(false);
    const refusals = lines.filter(
      (line) =>
        line.level === WARN &&
        String(line.msg).startsWith(`MQTT connection to 127.0.0.1:${broker.port} failed: connection refused`),
    );
    expect(refusals.length).toBe(failed.mock.calls.length);

    await broker.restart();
    await untilConnected(input);
    expect(input.health()).toEqual({ ready: true });
  });

  it("a connect attempt to a broker that accepts TCP but never answers times out and is retried", async () => {
    // Fault: what a hung broker looks like from outside; its kernel still completes the TCP handshake.
    const silent = await startSilentServer();
    const input = await openInput(
      { url: silent.url, clientId: uniqueName("in"), topic: "x/+/+", connectTimeoutMs: 300 },
      () => {},
    );
    sessions.pop(); // never created
    const failed = vi.fn();
    input.on("failed", failed);

    await vi.waitFor(() => expect(failed).toHaveBeenCalledTimes(2), WAIT);
    expect(failed.mock.calls[0]?.[0]?.message).toBe(
      `MQTT connection to 127.0.0.1:${silent.port} failed: no CONNACK within 300 ms`,
    );
    expect(silent.connections()).toBeGreaterThanOrEqual(2);
    expect(input.health()).toEqual({
      ready: false,
      reason: expect.stringMatching(/no CONNACK within 300 ms$/),
    });
  });

  describe("stop() ends promptly", () => {
    /** Far above what each state needs (at most CLOSE_TIMEOUT_MS, 2 s, for a broker that does not answer). */
    const PROMPT_MS = 5_000;

    it("while the first TCP connection is still being opened", async () => {
      const input = await openInput({ clientId: uniqueName("in"), topic: "x/+/+" }, () => {});
      sessions.pop(); // the stop comes before CONNECT is sent
      await within(input.stop(), PROMPT_MS, "stop()");
      expect(input.health()).toEqual({ ready: false, reason: "mqtt input stopped" });
      expect(input.connected).toBe(false);
    });

    it("while waiting to retry a broker that was never reached", async () => {
      const broker = await privateBroker();
      await broker.kill9();
      const input = await openInput(
        {
          url: broker.url,
          clientId: uniqueName("in"),
          topic: "x/+/+",
          reconnectMinMs: 600_000,
          reconnectMaxMs: 600_000,
        },
        () => {},
      );
      sessions.pop(); // never created
      const failed = vi.fn();
      input.on("failed", failed);
      await vi.waitFor(() => expect(failed).toHaveBeenCalledTimes(1), WAIT);
      await within(input.stop(), PROMPT_MS, "stop()");
      expect(input.health()).toEqual({ ready: false, reason: "mqtt input stopped" });
    });

    it("during the handshake with a broker that does not answer CONNECT", async () => {
      const silent = await startSilentServer();
      const input = await openInput(
        { url: silent.url, clientId: uniqueName("in"), topic: "x/+/+" },
        () => {},
      );
      sessions.pop(); // never created
      await vi.waitFor(() => expect(silent.bytesReceived()).toBeGreaterThan(0), WAIT);
      await within(input.stop(), PROMPT_MS, "stop()");
      expect(input.connected).toBe(false);
    });

    it("while connected to a broker that hangs (SIGSTOP) and never answers DISCONNECT", async () => {
      const broker = await privateBroker();
      const input = await startInput(
        { url: broker.url, clientId: uniqueName("in"), topic: "x/+/+" },
        () => {},
      );
      sessions.pop(); // dies with the private broker
      hang(broker);
      await within(input.stop(), PROMPT_MS, "stop()");
      expect(input.connected).toBe(false);
    });
  });

  it("a broker hung by SIGSTOP longer than the keepalive is noticed, and after SIGCONT every QoS 1 message published before and during the hang is delivered and acked", async () => {
    const KEEPALIVE_S = 5;
    const CONNECT_TIMEOUT_MS = 2_000;
    /** Each ack waits a little, so that some messages are in flight when the broker hangs. */
    const ACK_DELAY_MS = 50;
    const broker = await privateBroker();
    const topic = `${uniqueName("t")}/dev-1/temp`;
    const clientId = uniqueName("in");
    const acked = new Set<string>();
    const options = {
      url: broker.url,
      clientId,
      topic,
      keepaliveSeconds: KEEPALIVE_S,
      connectTimeoutMs: CONNECT_TIMEOUT_MS,
      reconnectMinMs: 200,
      reconnectMaxMs: 1_000,
    };
    const input = await startInput(options, (d) => {
      setTimeout(() => {
        d.ack();
        acked.add(d.item.payload.toString());
      }, ACK_DELAY_MS);
    });
    sessions.pop(); // dies with the private broker
    const publisher = await newPublisher(broker.url);
    await publishAll(publisher, topic, range(0, 50));

    // Fault: the broker stops answering; its sockets stay open.
    const hungAt = hang(broker);
    const duringHang = publishAll(publisher, topic, range(50, 100));
    await vi.waitFor(() => expect(input.health().ready).toBe(false), {
      timeout: 2 * KEEPALIVE_S * 1_000,
      interval: 50,
    });
    const detectedMs = Date.now() - hungAt;
    expect(input.health()).toEqual({
      ready: false,
      reason: expect.stringMatching(
        `^mqtt not connected: MQTT connection to 127.0.0.1:${broker.port} lost: no PINGRESP within 5 s`,
      ),
    });
    // The reconnect attempts meet a kernel that accepts TCP for a broker that never answers CONNECT.
    await vi.waitFor(
      () =>
        expect(input.health()).toEqual({
          ready: false,
          reason: expect.stringMatching(/failed: no CONNACK within 2000 ms$/),
        }),
      { timeout: 20_000, interval: 50 },
    );
    const hungForMs = resume(broker);

    await duringHang;
    await vi.waitFor(() => expect(input.health()).toEqual({ ready: true }), {
      timeout: 20_000,
      interval: 50,
    });
    const recoveredMs = Date.now() - hungAt - hungForMs;
    await vi.waitFor(() => expect([...acked].sort()).toEqual(range(0, 100).sort()), {
      timeout: 20_000,
      interval: 50,
    });
    await vi.waitFor(() => expect(input.unacked).toBe(0), WAIT);

    // Nothing is left unacknowledged at the broker: a new session with the same client id gets only what is
    // published after this one ended (the broker resends unacknowledged messages first).
    await input.stop();
    await publishAll(publisher, topic, ["marker"]);
    const next: string[] = [];
    await startInput({ ...options, keepaliveSeconds: 30 }, (d) => {
      next.push(d.item.payload.toString());
      d.ack();
    });
    sessions.pop(); // dies with the private broker
    await vi.waitFor(() => expect(next).toContain("marker"), WAIT);
    expect(next).toEqual(["marker"]);
    console.log(
      `MQTT broker hung ${hungForMs} ms: not ready after ${detectedMs} ms (keepalive ${KEEPALIVE_S} s), ` +
        `ready again ${recoveredMs} ms after SIGCONT; 100 of 100 messages acked`,
    );
  });
});
