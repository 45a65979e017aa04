import { EventEmitter } from "node:events";
import { connect as netConnect, type Socket } from "node:net";
import { generate, type IConnectPacket, type IPublishPacket, type Packet, parser } from "mqtt-packet";
import type { Logger } from "pino";
import { AckSequencer } from "./ack-sequencer.js";

export interface MqttInputOptions {
  /** `mqtt://host:port` or `tcp://host:port`; user name and password in the URL are sent in CONNECT. */
  url: string;
  /** Names the persistent session. */
  clientId: string;
  /** Subscription filter, e.g. `sensors/+/+`, subscribed at QoS 1. */
  topic: string;
  /** MQTT 5 Receive Maximum sent in CONNECT: the broker's in-flight window towards us (1 to 65,535). */
  receiveMaximum: number;
  /** Keep Alive; a PINGREQ goes out every interval even while PUBACKs are held. 0 disables it. */
  keepaliveSeconds: number;
  /** Session Expiry Interval: how long the broker keeps the session and its messages while we are away. */
  sessionExpirySeconds: number;
  /** Reconnect delays: exponential backoff from `reconnectMinMs` up to `reconnectMaxMs`, with full jitter. */
  reconnectMinMs: number;
  reconnectMaxMs: number;
  log: Logger;
}

export interface IncomingMessage {
  readonly topic: string;
  readonly payload: Buffer;
  readonly qos: 0 | 1;
  /** Date.now() at arrival. */
  readonly receivedAt: number;
  /**
   * Call once the message is safely handed on; the PUBACK goes out when this and every earlier message of the
   * same connection are acked. A no-op for QoS 0, and after the connection it arrived on is gone (the broker
   * redelivers it on the next connection).
   */
  ack(): void;
}

export interface MqttInput {
  /**
   * Connects, waits for CONNACK (fails with a clear Error if the broker refuses: reason code and name) and SUBACK
   * (fails if the subscription is refused, e.g. granted QoS 0x80+ or QoS 0). Resolves once subscribed. Rejects if
   * the first connection fails (so a misconfigured URL is reported at start); after the first success, connection
   * losses are handled by reconnecting forever with backoff+jitter, re-subscribing (always resubscribe, even when
   * session present).
   *
   * `onMessage` is called synchronously for every PUBLISH, in arrival order; it must not throw. Messages can
   * arrive between CONNACK and SUBACK (the broker sends what it kept for the session).
   */
  start(onMessage: (msg: IncomingMessage) => void): Promise<void>;
  /** CONNACK accepted, subscription granted, socket open. */
  readonly connected: boolean;
  /** Messages received on the current connection and not yet PUBACKed. */
  readonly unacked: number;
  /**
   * Stops taking new messages: sends DISCONNECT (reason 0, keep the session) after giving the acks already
   * released a chance to be written, closes the socket, stops reconnecting. Messages not acked by then are
   * redelivered by the broker to the next session. Idempotent.
   */
  stop(): Promise<void>;
  /** After every successful CONNACK + SUBACK, the first one included. */
  on(event: "connected", l: (info: { sessionPresent: boolean }) => void): this;
  /** When a subscribed connection is gone: the error that ended it, or undefined after stop(). */
  on(event: "disconnected", l: (err: Error | undefined) => void): this;
}

/**
 * An MQTT 5 subscriber session over `mqtt-packet` that sends each PUBACK only when the message and every earlier
 * one on the connection are acked, while up to `receiveMaximum` messages are in flight. Throws if the URL is not
 * an `mqtt://` or `tcp://` URL, clientId or topic is empty, or a number is out of range.
 */
export function createMqttInput(opts: MqttInputOptions): MqttInput {
  return new MqttSubscriberSession(opts);
}

const DEFAULT_PORT = 1_883;
/** From opening the socket to SUBACK. */
const HANDSHAKE_TIMEOUT_MS = 10_000;
/** How long stop() waits for the broker to close the socket after DISCONNECT. */
const CLOSE_TIMEOUT_MS = 2_000;
const SUBSCRIBE_PACKET_ID = 1;
const PROTOCOL = { protocolVersion: 5 } as const;

const RC_SUCCESS = 0x00;
const RC_GRANTED_QOS_0 = 0x00;
const RC_MALFORMED_PACKET = 0x81;
const RC_PROTOCOL_ERROR = 0x82;
const RC_TOPIC_ALIAS_INVALID = 0x94;
const RC_QOS_NOT_SUPPORTED = 0x9b;

/** MQTT 5 reason codes, section 2.4 (names of the codes >= 0x80, and of those CONNACK/DISCONNECT use below). */
const REASON_NAMES: ReadonlyMap<number, string> = new Map([
  [0x00, "Success"],
  [0x04, "Disconnect with Will Message"],
  [0x80, "Unspecified error"],
  [0x81, "Malformed Packet"],
  [0x82, "Protocol Error"],
  [0x83, "Implementation specific error"],
  [0x84, "Unsupported Protocol Version"],
  [0x85, "Client Identifier not valid"],
  [0x86, "Bad User Name or Password"],
  [0x87, "Not authorized"],
  [0x88, "Server unavailable"],
  [0x89, "Server busy"],
  [0x8a, "Banned"],
  [0x8b, "Server shutting down"],
  [0x8c, "Bad authentication method"],
  [0x8d, "Keep Alive timeout"],
  [0x8e, "Session taken over"],
  [0x8f, "Topic Filter invalid"],
  [0x90, "Topic Name invalid"],
  [0x91, "Packet Identifier in use"],
  [0x92, "Packet Identifier not found"],
  [0x93, "Receive Maximum exceeded"],
  [0x94, "Topic Alias invalid"],
  [0x95, "Packet too large"],
  [0x96, "Message rate too high"],
  [0x97, "Quota exceeded"],
  [0x98, "Administrative action"],
  [0x99, "Payload format invalid"],
  [0x9a, "Retain not supported"],
  [0x9b, "QoS not supported"],
  [0x9c, "Use another server"],
  [0x9d, "Server moved"],
  [0x9e, "Shared Subscriptions not supported"],
  [0x9f, "Connection rate exceeded"],
  [0xa0, "Maximum connect time"],
  [0xa1, "Subscription Identifiers not supported"],
  [0xa2, "Wildcard Subscriptions not supported"],
]);

function describeReason(code: number): string {
  return `0x${code.toString(16).padStart(2, "0")} (${REASON_NAMES.get(code) ?? "unknown reason code"})`;
}

interface BrokerAddress {
  readonly host: string;
  readonly port: number;
  readonly username: string | undefined;
  readonly password: string | undefined;
  /** host:port, for logs and errors; never the credentials. */
  readonly display: string;
}

function parseBrokerUrl(url: string): BrokerAddress {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch (cause) {
    throw new Error(`MQTT URL ${JSON.stringify(url)} is not a URL (expected mqtt://host:port)`, { cause });
  }
  if (parsed.protocol !== "mqtt:" && parsed.protocol !== "tcp:") {
    throw new Error(
      `MQTT URL scheme ${JSON.stringify(parsed.protocol)} is not supported (use mqtt:// or tcp://)`,
    );
  }
  const port = parsed.port === "" ? DEFAULT_PORT : Number(parsed.port);
  return {
    host: parsed.hostname.replace(/^\[(.*)\]$/, "$1"),
    port,
    username: parsed.username === "" ? undefined : decodeURIComponent(parsed.username),
    password: parsed.password === "" ? undefined : decodeURIComponent(parsed.password),
    display: `${parsed.hostname}:${port}`,
  };
}

/**
 * - handshake: socket open, CONNECT sent, waiting for CONNACK and SUBACK; messages are taken after CONNACK.
 * - ready: subscribed.
 * - draining: stop() called; no new messages are taken, released PUBACKs are still written.
 * - closing: DISCONNECT written or the connection failed; nothing more is written.
 */
type Phase = "handshake" | "ready" | "draining" | "closing" | "closed";

interface Connection {
  readonly generation: number;
  readonly socket: Socket;
  readonly acks: AckSequencer<number>;
  readonly closed: Promise<void>;
  phase: Phase;
  connackReceived: boolean;
  sessionPresent: boolean;
  corked: boolean;
  pingOutstanding: boolean;
  /** PUBLISH packets that arrived while the window was full, oldest at `heldHead`; see hold(). */
  readonly held: Arrival[];
  heldHead: number;
  drainScheduled: boolean;
  overflowLogged: boolean;
  /** Reading is paused while `held` is long; the broker's packets wait in the TCP buffers. */
  paused: boolean;
  /** Paused at some point since the last PINGREQ, so a missing PINGRESP proves nothing. */
  pausedSincePing: boolean;
  keepaliveTimer: NodeJS.Timeout | undefined;
  handshakeTimer: NodeJS.Timeout | undefined;
  /** Why the connection ended, when we know better than a bare socket close. */
  error: Error | undefined;
  /** Settles the handshake: set until SUBACK (or failure). */
  handshake: { resolve(): void; reject(err: Error): void } | undefined;
}

interface Arrival {
  readonly packet: IPublishPacket;
  readonly receivedAt: number;
}

type Events = {
  connected: [info: { sessionPresent: boolean }];
  disconnected: [err: Error | undefined];
};

function uncork(conn: Connection): void {
  conn.corked = false;
  conn.socket.uncork();
}

function ignoreAck(): void {}

/** The packet codec throws on out-of-range values, and it runs in socket callbacks: check them up front. */
function requireInteger(name: string, value: number, min: number, max: number): void {
  if (!Number.isInteger(value) || value < min || value > max) {
    throw new RangeError(`${name} must be an integer from ${min} to ${max}, got ${value}`);
  }
}

/** Handed on and not yet PUBACKed, plus held back beyond the window. */
function unackedOn(conn: Connection): number {
  return conn.acks.pending + conn.held.length - conn.heldHead;
}

class MqttSubscriberSession extends EventEmitter<Events> implements MqttInput {
  private readonly broker: BrokerAddress;
  private readonly log: Logger;
  private onMessage: ((msg: IncomingMessage) => void) | undefined;
  private conn: Connection | undefined;
  private generation = 0;
  private started = false;
  private stopping = false;
  private stopped: Promise<void> | undefined;
  private reconnectTimer: NodeJS.Timeout | undefined;
  private reconnectAttempt = 0;

  constructor(private readonly opts: MqttInputOptions) {
    super();
    requireInteger("receiveMaximum", opts.receiveMaximum, 1, 65_535);
    requireInteger("keepaliveSeconds", opts.keepaliveSeconds, 0, 65_535);
    requireInteger("sessionExpirySeconds", opts.sessionExpirySeconds, 0, 4_294_967_295);
    // A persistent session needs a client id of our own; an empty topic filter is a protocol error.
    if (opts.clientId === "") throw new RangeError("clientId must not be empty");
    if (opts.topic === "") throw new RangeError("topic must not be empty");
    this.broker = parseBrokerUrl(opts.url);
    this.log = opts.log.child({
      component: "mqtt-input",
      broker: this.broker.display,
      clientId: opts.clientId,
    });
  }

  get connected(): boolean {
    return this.conn?.phase === "ready";
  }

  get unacked(): number {
    return this.conn === undefined ? 0 : unackedOn(this.conn);
  }

  async start(onMessage: (msg: IncomingMessage) => void): Promise<void> {
    if (this.started) throw new Error("MQTT input already started");
    if (this.stopping) throw new Error("MQTT input already stopped");
    this.started = true;
    this.onMessage = onMessage;
    await this.connect();
  }

  stop(): Promise<void> {
    this.stopped ??= this.shutdown();
    return this.stopped;
  }

  private async shutdown(): Promise<void> {
    this.stopping = true;
    clearTimeout(this.reconnectTimer);
    this.reconnectTimer = undefined;
    const conn = this.conn;
    if (conn === undefined) return;
    if (conn.phase !== "ready") {
      conn.error ??= new Error("stop() was called before the subscription was granted");
      conn.socket.destroy();
      await conn.closed;
      return;
    }
    conn.phase = "draining";
    // PUBACKs released so far sit in the corked socket until the next tick; let them out before DISCONNECT.
    await new Promise<void>((resolve) => setImmediate(resolve));
    if (conn.phase === "draining") {
      const unacked = unackedOn(conn);
      this.closeWith(conn, RC_SUCCESS);
      this.log.info({ unacked }, "MQTT input stopping: DISCONNECT sent, session kept");
    }
    const timer = setTimeout(() => conn.socket.destroy(), CLOSE_TIMEOUT_MS);
    try {
      await conn.closed;
    } finally {
      clearTimeout(timer);
    }
  }

  /** Opens one connection; resolves once it is subscribed, rejects if it fails before that. */
  private connect(): Promise<void> {
    const { host, port } = this.broker;
    const socket = netConnect({ host, port });
    socket.setNoDelay(true);
    let markClosed!: () => void;
    const conn: Connection = {
      generation: ++this.generation,
      socket,
      // clear() on close already silences a previous connection's acks; the generation check makes it explicit.
      acks: new AckSequencer<number>((messageId) => {
        if (conn.generation !== this.generation) return;
        this.write(conn, { cmd: "puback", messageId, reasonCode: RC_SUCCESS });
        if (conn.heldHead < conn.held.length && !conn.drainScheduled) {
          conn.drainScheduled = true;
          process.nextTick(() => this.drainHeld(conn));
        }
      }),
      closed: new Promise<void>((resolve) => {
        markClosed = resolve;
      }),
      phase: "handshake",
      connackReceived: false,
      sessionPresent: false,
      corked: false,
      pingOutstanding: false,
      held: [],
      heldHead: 0,
      drainScheduled: false,
      overflowLogged: false,
      paused: false,
      pausedSincePing: false,
      keepaliveTimer: undefined,
      handshakeTimer: undefined,
      error: undefined,
      handshake: undefined,
    };
    this.conn = conn;

    const packets = parser(PROTOCOL);
    packets.on("packet", (packet: Packet) => this.onPacket(conn, packet));
    packets.on("error", (err: Error) => this.abort(conn, RC_MALFORMED_PACKET, err));
    socket.on("connect", () => this.write(conn, this.connectPacket()));
    socket.on("data", (chunk: Buffer) => {
      if (conn.phase !== "closed") packets.parse(chunk);
    });
    socket.on("error", (err) => {
      conn.error ??= err;
    });
    socket.on("close", () => {
      this.onClose(conn);
      markClosed();
    });

    return new Promise<void>((resolve, reject) => {
      conn.handshake = { resolve, reject };
      conn.handshakeTimer = setTimeout(() => {
        conn.error ??= new Error(`no CONNACK and SUBACK within ${HANDSHAKE_TIMEOUT_MS} ms`);
        socket.destroy();
      }, HANDSHAKE_TIMEOUT_MS);
    });
  }

  private connectPacket(): IConnectPacket {
    const { username, password } = this.broker;
    return {
      cmd: "connect",
      protocolId: "MQTT",
      protocolVersion: 5,
      clean: false,
      clientId: this.opts.clientId,
      keepalive: this.opts.keepaliveSeconds,
      properties: {
        sessionExpiryInterval: this.opts.sessionExpirySeconds,
        receiveMaximum: this.opts.receiveMaximum,
      },
      ...(username === undefined ? {} : { username }),
      ...(password === undefined ? {} : { password: Buffer.from(password) }),
    };
  }

  private onPacket(conn: Connection, packet: Packet): void {
    if (conn.phase === "closing" || conn.phase === "closed") return;
    switch (packet.cmd) {
      case "publish":
        this.onPublish(conn, packet);
        return;
      case "pingresp":
        conn.pingOutstanding = false;
        return;
      case "connack": {
        if (conn.connackReceived) {
          this.abort(conn, RC_PROTOCOL_ERROR, new Error("second CONNACK"));
          return;
        }
        const reasonCode = packet.reasonCode ?? RC_SUCCESS;
        if (reasonCode !== RC_SUCCESS) {
          conn.error = new Error(`broker refused the connection: reason ${describeReason(reasonCode)}`);
          conn.phase = "closing";
          conn.socket.destroy();
          return;
        }
        conn.connackReceived = true;
        conn.sessionPresent = packet.sessionPresent;
        this.startKeepalive(conn, packet.properties?.serverKeepAlive ?? this.opts.keepaliveSeconds);
        this.write(conn, {
          cmd: "subscribe",
          messageId: SUBSCRIBE_PACKET_ID,
          subscriptions: [{ topic: this.opts.topic, qos: 1 }],
        });
        return;
      }
      case "suback":
        this.onSuback(conn, packet.messageId, packet.granted[0]);
        return;
      case "disconnect": {
        const reason = describeReason(packet.reasonCode ?? RC_SUCCESS);
        const detail = packet.properties?.reasonString;
        // Mosquitto answers an invalid topic filter with DISCONNECT 0x81 rather than a SUBACK failure code.
        const when =
          conn.phase === "handshake" && conn.connackReceived
            ? ` in reply to SUBSCRIBE ${JSON.stringify(this.opts.topic)}`
            : "";
        conn.error = new Error(
          `broker sent DISCONNECT${when}: reason ${reason}${detail ? `: ${detail}` : ""}`,
        );
        conn.phase = "closing";
        conn.socket.destroy();
        return;
      }
      default:
        this.abort(
          conn,
          RC_PROTOCOL_ERROR,
          new Error(`unexpected ${packet.cmd.toUpperCase()} from the broker`),
        );
    }
  }

  private onSuback(conn: Connection, messageId: number | undefined, granted: unknown): void {
    if (conn.phase !== "handshake" || messageId !== SUBSCRIBE_PACKET_ID) {
      this.abort(conn, RC_PROTOCOL_ERROR, new Error(`unexpected SUBACK for packet id ${messageId}`));
      return;
    }
    const code = typeof granted === "number" ? granted : Number.NaN;
    if (code === RC_GRANTED_QOS_0 || !(code >= 0 && code <= 2)) {
      const why =
        code === RC_GRANTED_QOS_0 ? "granted only QoS 0" : `refused it: reason ${describeReason(code)}`;
      conn.error = new Error(`subscription to ${JSON.stringify(this.opts.topic)} failed: the broker ${why}`);
      this.closeWith(conn, RC_SUCCESS);
      return;
    }
    clearTimeout(conn.handshakeTimer);
    conn.phase = "ready";
    const handshake = conn.handshake;
    conn.handshake = undefined;
    this.log.info(
      { sessionPresent: conn.sessionPresent, grantedQos: code, receiveMaximum: this.opts.receiveMaximum },
      "MQTT connected and subscribed",
    );
    handshake?.resolve();
    this.emit("connected", { sessionPresent: conn.sessionPresent });
  }

  private onPublish(conn: Connection, packet: IPublishPacket): void {
    if (!conn.connackReceived) {
      this.abort(conn, RC_PROTOCOL_ERROR, new Error("PUBLISH before CONNACK"));
      return;
    }
    if (packet.qos === 2) {
      this.abort(conn, RC_QOS_NOT_SUPPORTED, new Error("QoS 2 PUBLISH on a QoS 1 subscription"));
      return;
    }
    if (packet.topic === "") {
      // We send no Topic Alias Maximum, so the broker may not use aliases.
      this.abort(conn, RC_TOPIC_ALIAS_INVALID, new Error("PUBLISH with a topic alias"));
      return;
    }
    if (packet.qos === 1 && packet.messageId === undefined) {
      this.abort(conn, RC_MALFORMED_PACKET, new Error("QoS 1 PUBLISH without a packet id"));
      return;
    }
    if (conn.phase === "draining") return;
    const arrival: Arrival = { packet, receivedAt: Date.now() };
    const windowFull = packet.qos === 1 && conn.acks.pending >= this.opts.receiveMaximum;
    if (conn.heldHead === conn.held.length && !windowFull) {
      this.deliver(conn, arrival);
    } else {
      this.hold(conn, arrival);
    }
  }

  /**
   * The broker sent more unacknowledged messages than our Receive Maximum, a protocol violation (MQTT 5 4.9) that
   * Mosquitto 2.0 commits when it has a backlog: each PUBACK for the oldest in-flight message moves up to Receive
   * Maximum queued messages into flight. Disconnecting with 0x93 would only loop, so keep the excess in arrival
   * order, hand it on as acks free the window, and stop reading while the excess is large.
   */
  private hold(conn: Connection, arrival: Arrival): void {
    if (!conn.overflowLogged) {
      conn.overflowLogged = true;
      this.log.warn(
        { receiveMaximum: this.opts.receiveMaximum },
        "MQTT broker exceeds Receive Maximum; holding the excess until acks free the window",
      );
    }
    conn.held.push(arrival);
    if (!conn.paused && conn.held.length - conn.heldHead >= this.opts.receiveMaximum) {
      conn.paused = true;
      conn.pausedSincePing = true;
      conn.socket.pause();
    }
  }

  private drainHeld(conn: Connection): void {
    conn.drainScheduled = false;
    if (conn.phase !== "handshake" && conn.phase !== "ready") return;
    for (;;) {
      const next = conn.held[conn.heldHead];
      if (next === undefined) break;
      if (next.packet.qos === 1 && conn.acks.pending >= this.opts.receiveMaximum) return;
      conn.heldHead++;
      this.deliver(conn, next);
    }
    conn.held.length = 0;
    conn.heldHead = 0;
    if (conn.paused) {
      conn.paused = false;
      conn.socket.resume();
    }
  }

  private deliver(conn: Connection, { packet, receivedAt }: Arrival): void {
    const onMessage = this.onMessage;
    if (onMessage === undefined) return;
    const { topic } = packet;
    const payload = typeof packet.payload === "string" ? Buffer.from(packet.payload) : packet.payload;
    if (packet.qos === 1 && packet.messageId !== undefined) {
      onMessage({ topic, payload, qos: 1, receivedAt, ack: conn.acks.push(packet.messageId) });
    } else {
      onMessage({ topic, payload, qos: 0, receivedAt, ack: ignoreAck });
    }
  }

  private startKeepalive(conn: Connection, seconds: number): void {
    if (seconds <= 0) return;
    conn.keepaliveTimer = setInterval(() => {
      if (conn.pingOutstanding && !conn.pausedSincePing) {
        conn.error ??= new Error(`no PINGRESP within ${seconds} s (keepalive)`);
        conn.phase = "closing";
        conn.socket.destroy();
        return;
      }
      conn.pausedSincePing = conn.paused;
      conn.pingOutstanding = true;
      this.write(conn, { cmd: "pingreq" });
    }, seconds * 1_000);
    conn.keepaliveTimer.unref();
  }

  /** Writes are corked for the rest of the tick, so PUBACKs released together leave in one segment. */
  private write(conn: Connection, packet: Packet): void {
    if (conn.phase === "closing" || conn.phase === "closed") return;
    if (!conn.corked) {
      conn.corked = true;
      conn.socket.cork();
      process.nextTick(uncork, conn);
    }
    conn.socket.write(generate(packet, PROTOCOL));
  }

  /** Sends DISCONNECT with the reason code, then closes our side; the broker closes its side in turn. */
  private closeWith(conn: Connection, reasonCode: number): void {
    if (conn.phase === "closing" || conn.phase === "closed") return;
    this.write(conn, { cmd: "disconnect", reasonCode });
    conn.phase = "closing";
    conn.socket.end();
    // A socket paused for backpressure would never see the broker's close; what it reads now is dropped.
    if (conn.paused) conn.socket.resume();
    setTimeout(() => conn.socket.destroy(), CLOSE_TIMEOUT_MS).unref();
  }

  /** A protocol violation by the broker: tell it why, drop the connection, reconnect. */
  private abort(conn: Connection, reasonCode: number, err: Error): void {
    if (conn.phase === "closing" || conn.phase === "closed") return;
    conn.error ??= new Error(`protocol error: ${err.message}`, { cause: err });
    this.log.error({ err, reason: describeReason(reasonCode) }, "MQTT protocol error, disconnecting");
    this.closeWith(conn, reasonCode);
  }

  private onClose(conn: Connection): void {
    conn.phase = "closed";
    clearTimeout(conn.handshakeTimer);
    clearInterval(conn.keepaliveTimer);
    const unacked = unackedOn(conn);
    conn.acks.clear();
    conn.held.length = 0;
    conn.heldHead = 0;
    if (this.conn === conn) this.conn = undefined;

    const handshake = conn.handshake;
    if (handshake !== undefined) {
      conn.handshake = undefined;
      const cause =
        conn.error ??
        new Error(
          conn.connackReceived
            ? "the broker closed the connection before SUBACK (is the topic filter valid?)"
            : "the broker closed the connection before CONNACK",
        );
      handshake.reject(
        new Error(`MQTT connection to ${this.broker.display} failed: ${cause.message}`, { cause }),
      );
      return;
    }

    const err = this.stopping ? undefined : (conn.error ?? new Error("connection closed by the broker"));
    if (err === undefined) {
      this.log.info({ unacked }, "MQTT disconnected");
    } else {
      this.log.warn({ err, unacked }, "MQTT connection lost; unacked messages will be redelivered");
    }
    this.emit("disconnected", err);
    if (!this.stopping) this.scheduleReconnect();
  }

  private scheduleReconnect(): void {
    const { reconnectMinMs, reconnectMaxMs } = this.opts;
    this.reconnectAttempt++;
    const ceiling = Math.min(reconnectMaxMs, reconnectMinMs * 2 ** this.reconnectAttempt);
    const delayMs = Math.round(reconnectMinMs + Math.random() * Math.max(0, ceiling - reconnectMinMs));
    this.log.info({ attempt: this.reconnectAttempt, delayMs }, "MQTT reconnecting");
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = undefined;
      this.connect().then(
        () => {
          this.reconnectAttempt = 0;
        },
        (err: unknown) => {
          if (this.stopping) return;
          this.log.warn({ err, attempt: this.reconnectAttempt }, "MQTT reconnect failed");
          this.scheduleReconnect();
        },
      );
    }, delayMs);
  }
}
