/**
 * What the MQTT input's integration tests share (mqtt-input-*.test.ts): inputs started on the shared or a private
 * broker, publishers, a wire tap that decodes MQTT packets, hung and silent brokers, and the clean-up after each test.
 */
import { randomUUID } from "node:crypto";
import { once } from "node:events";
import { connect, createServer, type Server, type Socket } from "node:net";
import mqtt from "mqtt";
import { type Packet, parser } from "mqtt-packet";
import { pino } from "pino";
import { afterEach, expect, inject, vi } from "vitest";
import { type Logger, silentLogger } from "../../common/log.js";
import type { Delivery } from "../../common/pipeline.js";
import { type MqttInput, type MqttInputOptions, type MqttMessage, startMqttInput } from "../../mqtt/input.js";
import { endMqttSession } from "./mqtt-session.js";
import { type PrivateMosquitto, startPrivateMosquitto } from "./private-brokers.js";

/** MQTT_URL when set, else a testcontainers Mosquitto where Docker answers, else mqtt://127.0.0.1:1883. */
export const MQTT_URL = inject("mqttUrl");
/** How long we watch for something that must not happen (a PUBACK, a disconnect). */
export const QUIET_MS = 250;
/** `vi.waitFor` options for what must happen soon. */
export const WAIT = { timeout: 5_000, interval: 20 } as const;

/** What to close after the test, in reverse order (`cleanUpAfterEach`). */
export const cleanups: (() => Promise<void>)[] = [];
/** Persistent sessions the test opened on a broker that outlives it, ended after the test. */
export const sessions: { url: string; clientId: string }[] = [];

/**
 * Registers, in the calling test file, the clean-up after each test: what `cleanups` holds, in reverse order, then
 * each persistent session in `sessions` ended with a clean start.
 */
export function cleanUpAfterEach(): void {
  afterEach(async () => {
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
    // Persistent sessions left on the shared broker would keep collecting messages: end each with a clean start.
    for (const { url, clientId } of sessions.splice(0)) await endMqttSession(url, clientId);
  });
}

/** A client id or topic part of the test's own: `test-<label>-<random>`. */
export function uniqueName(label: string): string {
  return `test-${label}-${randomUUID().slice(0, 8)}`;
}

/** What the test does with each delivery the input hands on. */
export type Handler = (delivery: Delivery<MqttMessage>) => void;

/** Starts an input and returns at once, as `startMqttInput` does: listeners added now miss no event. */
export async function openInput(
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

/** Resolves once the input is connected and subscribed. */
export async function untilConnected(input: MqttInput): Promise<void> {
  await vi.waitFor(() => expect(input.connected).toBe(true), WAIT);
}

/** Starts an input and waits until it is subscribed. */
export async function startInput(
  overrides: Partial<MqttInputOptions> & Pick<MqttInputOptions, "clientId" | "topic">,
  handler: Handler,
): Promise<MqttInput> {
  const input = await openInput(overrides, handler);
  await untilConnected(input);
  return input;
}

/**
 * An input on the shared broker through a wire tap, subscribed to a topic of the test's own (`<unique>/dev-1/temp`),
 * that collects every delivery in `received` without acking it; `overrides` are further input options.
 */
export async function startTappedInput(overrides: Partial<MqttInputOptions> = {}): Promise<{
  tap: WireTap;
  topic: string;
  received: Delivery<MqttMessage>[];
  input: MqttInput;
}> {
  const tap = await startWireTap(MQTT_URL);
  const topic = `${uniqueName("t")}/dev-1/temp`;
  const received: Delivery<MqttMessage>[] = [];
  const input = await startInput({ url: tap.url, clientId: uniqueName("in"), topic, ...overrides }, (d) =>
    received.push(d),
  );
  return { tap, topic, received, input };
}

/** An MQTT 5 publisher with a clean session on `url` (the shared broker by default), closed after the test. */
export async function newPublisher(url = MQTT_URL): Promise<mqtt.MqttClient> {
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
export async function publishAll(client: mqtt.MqttClient, topic: string, payloads: string[]): Promise<void> {
  await Promise.all(payloads.map((payload) => client.publishAsync(topic, payload, { qos: 1 })));
}

/** Payloads `m<from>` .. `m<to - 1>`. */
export function range(from: number, to: number): string[] {
  return Array.from({ length: to - from }, (_, i) => `m${from + i}`);
}

/** Listens on a free port of 127.0.0.1 until the test's clean-up, which destroys `sockets` and closes `server`. */
async function listenUntilCleanup(server: Server, sockets: Set<Socket>): Promise<number> {
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  cleanups.push(async () => {
    for (const socket of sockets) socket.destroy();
    server.close();
  });
  const address = server.address();
  if (address === null || typeof address === "string") throw new Error("a test server has no TCP address");
  return address.port;
}

/** A TCP proxy in front of the broker that decodes what goes through, so tests can see PUBACKs on the wire. */
export interface WireTap {
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

/** Starts a wire tap in front of the broker at `target` (`mqtt://host:port`); closed after the test. */
export async function startWireTap(target: string): Promise<WireTap> {
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
  const tapPort = await listenUntilCleanup(server, sockets);
  return {
    url: `mqtt://127.0.0.1:${tapPort}`,
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
export function publishIds(tap: WireTap): (number | undefined)[] {
  return tap.fromBroker.filter((packet) => packet.cmd === "publish").map((packet) => packet.messageId);
}

/** A Mosquitto of the test's own, without persistence, that the test may kill, hang or restart. */
export async function privateBroker(extraConfig: string[] = []): Promise<PrivateMosquitto> {
  const broker = await startPrivateMosquitto({ extraConfig });
  cleanups.push(() => broker.stop());
  return broker;
}

/** Log lines as objects, for tests that check what an operator reads. */
export function capturedLog(): { log: Logger; lines: Record<string, unknown>[] } {
  const lines: Record<string, unknown>[] = [];
  const log = pino({ level: "info" }, { write: (line: string) => void lines.push(JSON.parse(line)) });
  return { log, lines };
}

/** pino's level number of a warning. */
export const WARN = 40;

/** When each hung broker process was stopped, by pid. */
export const hungSince = new Map<number, number>();

/** Fault: SIGSTOP, so the broker keeps its sockets open and answers nothing. SIGCONT at cleanup at the latest. */
export function hang(broker: PrivateMosquitto): number {
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
export function resume(broker: PrivateMosquitto): number {
  const { pid } = broker;
  const at = hungSince.get(pid) ?? Date.now();
  hungSince.delete(pid);
  process.kill(pid, "SIGCONT");
  return Date.now() - at;
}

/** A TCP server that accepts connections and never answers: a hung broker as seen from outside. */
export async function startSilentServer(): Promise<{
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
  const port = await listenUntilCleanup(server, sockets);
  return {
    url: `mqtt://127.0.0.1:${port}`,
    port,
    connections: () => connections,
    bytesReceived: () => bytes,
  };
}

/** Rejects if `promise` has not settled within `ms`. */
export async function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
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

/** The payloads of `deliveries` as text, in order. */
export function payloads(deliveries: Delivery<MqttMessage>[]): string[] {
  return deliveries.map((d) => d.item.payload.toString());
}
