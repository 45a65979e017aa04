import { isIP, connect as netConnect, type Socket } from "node:net";
import { connect as tlsConnect } from "node:tls";
import { generate, type IPublishPacket, type Packet, parser } from "mqtt-packet";
import type { Logger } from "../common/log.js";
import { Keepalive } from "./keepalive.js";
import {
  connectPacket,
  disconnectError,
  pubackPackets,
  publishViolation,
  subackFailure,
} from "./protocol.js";
import {
  describeReason,
  describeSocketError,
  RC_MALFORMED_PACKET,
  RC_PROTOCOL_ERROR,
  RC_SUCCESS,
} from "./reasons.js";
import type { MqttMessage, SessionSettings } from "./types.js";
import { InflightWindow } from "./window.js";

/** How long an ending connection waits for the broker to close the socket after DISCONNECT. */
const CLOSE_TIMEOUT_MS = 2_000;
const SUBSCRIBE_PACKET_ID = 1;
/** What a message costs in memory beside its payload (the message object, its topic, the window's entry). */
const MESSAGE_HELD_BYTES = 512;
const PROTOCOL = { protocolVersion: 5 } as const;
/**
 * MQTT 5 Retain Handling 1: the broker sends retained messages only when the subscription is new, not when a
 * reconnect with the session present subscribes again. A retained reading is stored once, at the session's first
 * subscription; with handling 0 every reconnect got it again, and a reading without `ts` (stamped with the receive
 * time) became a new row each time. A session the broker lost subscribes anew and gets it once more.
 */
const RETAIN_HANDLING_NEW_ONLY = 1;
/** CONNACK reasons that mean the credentials: Bad User Name or Password, Not authorized, Bad authentication method. */
const CREDENTIAL_REFUSALS: ReadonlySet<number> = new Set([0x86, 0x87, 0x8c]);

/**
 * - connecting: TCP connect under way.
 * - handshake: CONNECT sent, waiting for CONNACK and SUBACK; messages are taken after CONNACK.
 * - ready: subscribed.
 * - draining: end() called; no new messages are taken, released PUBACKs are still written.
 * - closing: DISCONNECT written or the connection failed; nothing more is written.
 */
type Phase = "connecting" | "handshake" | "ready" | "draining" | "closing" | "closed";

/** How a connection ended. */
export interface ConnectionEnd {
  /** It reached `ready`: its end is a lost connection rather than a failed attempt. */
  readonly subscribed: boolean;
  /** Why it ended, as precisely as we know. */
  readonly error: Error;
  /** Messages received on it and never PUBACKed; the broker redelivers them. */
  readonly unacked: number;
}

/** What a connection tells the session that opened it. */
export interface ConnectionHooks {
  /** Hand a message on, with the function that releases its PUBACK. */
  deliver(message: MqttMessage, ack: () => void): void;
  /** CONNACK accepted and SUBACK granted. */
  ready(sessionPresent: boolean): void;
  /** The socket is closed, whatever the reason; called once. */
  closed(end: ConnectionEnd): void;
}

/**
 * One TCP (or, for `mqtts://`, TLS) connection to the broker, from connect to close: CONNECT, CONNACK, SUBSCRIBE, SUBACK, then PUBLISH in and
 * PUBACK out through its own in-flight window, PINGREQ through its own keepalive. The handshake must finish within
 * `connectTimeoutMs`. It never reconnects; the session opens the next one.
 */
export class Connection {
  private readonly socket: Socket;
  private readonly window: InflightWindow<MqttMessage>;
  private readonly closedPromise: Promise<void>;
  private phase: Phase = "connecting";
  private connackReceived = false;
  private sessionPresent = false;
  private subscribed = false;
  private corked = false;
  /** PUBACKs released in this turn of the event loop, written together at its end (`flushPubacks`). */
  private pubacks: number[] = [];
  private keepalive: Keepalive | undefined;
  private readonly connectTimer: NodeJS.Timeout;
  /** Why the connection ended, when we know better than a bare socket close. */
  private error: Error | undefined;

  /** Opens the socket at once. */
  constructor(
    private readonly settings: SessionSettings,
    private readonly log: Logger,
    private readonly hooks: ConnectionHooks,
  ) {
    const { host, port, tls } = settings.broker;
    // SNI takes a host name only; Node warns about (and deprecates) an IP address there.
    const socket = tls
      ? tlsConnect({ host, port, ...(isIP(host) === 0 ? { servername: host } : {}), ...settings.tls })
      : netConnect({ host, port });
    this.socket = socket;
    socket.setNoDelay(true);
    this.window = new InflightWindow<MqttMessage>(
      settings.receiveMaximum,
      {
        deliver: hooks.deliver,
        puback: (messageId) => this.queuePuback(messageId),
        pause: () => {
          this.keepalive?.setPaused(true);
          socket.pause();
        },
        resume: () => {
          this.keepalive?.setPaused(false);
          socket.resume();
        },
        overflow: () =>
          log.warn(
            { receiveMaximum: settings.receiveMaximum },
            "MQTT broker exceeds Receive Maximum; holding the excess until acks free the window",
          ),
      },
      process.nextTick,
      settings.budget,
    );

    const packets = parser(PROTOCOL);
    packets.on("packet", (packet: Packet) => this.onPacket(packet));
    packets.on("error", (err: Error) => this.abort(RC_MALFORMED_PACKET, err));
    // Over TLS, CONNECT (which may hold the password) waits for the handshake, the broker's certificate checked.
    socket.on(tls ? "secureConnect" : "connect", () => {
      if (this.phase !== "connecting") return;
      this.phase = "handshake";
      this.write(connectPacket(settings));
    });
    socket.on("data", (chunk: Buffer) => {
      if (this.phase === "closed") return;
      this.keepalive?.heard();
      packets.parse(chunk);
    });
    socket.on("error", (err: NodeJS.ErrnoException) => {
      this.error ??= describeSocketError(err);
    });
    this.closedPromise = new Promise<void>((resolve) => {
      socket.on("close", () => {
        try {
          this.onClose();
        } finally {
          resolve();
        }
      });
    });
    // A hung broker still accepts TCP connections (the kernel does) and never answers: bound the whole handshake.
    this.connectTimer = setTimeout(() => {
      const awaited =
        this.phase === "connecting"
          ? tls
            ? "TLS handshake"
            : "TCP connection"
          : this.connackReceived
            ? "SUBACK"
            : "CONNACK";
      this.drop(new Error(`no ${awaited} within ${settings.connectTimeoutMs} ms`));
    }, settings.connectTimeoutMs);
  }

  /** CONNACK accepted, subscription granted, socket open. */
  get ready(): boolean {
    return this.phase === "ready";
  }

  get unacked(): number {
    return this.window.unacked;
  }

  get held(): number {
    return this.window.heldCount;
  }

  /**
   * Stops taking messages and ends the connection in whatever state it is: an attempt under way is dropped, a
   * subscribed connection writes the PUBACKs released so far and a DISCONNECT (reason 0, session kept), then has at
   * most CLOSE_TIMEOUT_MS to close. Resolves once the socket is closed.
   */
  async end(): Promise<void> {
    this.window.stopIntake();
    if (this.phase !== "ready") {
      this.drop(new Error("stopped before the subscription was granted"));
      return this.closedPromise;
    }
    this.phase = "draining";
    // PUBACKs released so far wait for the end of the tick (collected, or in the corked socket); let them out first.
    await new Promise<void>((resolve) => setImmediate(resolve));
    if (this.phase === "draining") {
      this.log.info({ unacked: this.window.unacked }, "MQTT input stopping: DISCONNECT sent, session kept");
      this.closeWith(RC_SUCCESS);
    }
    const timer = setTimeout(() => this.socket.destroy(), CLOSE_TIMEOUT_MS);
    try {
      await this.closedPromise;
    } finally {
      clearTimeout(timer);
    }
  }

  /**
   * Publishes at QoS 0 on this connection when it is subscribed; returns false (nothing sent) otherwise. For small
   * commands back to devices (a Sparkplug rebirth request), which the caller asks again for if they are lost.
   */
  publish(topic: string, payload: Buffer): boolean {
    if (this.phase !== "ready") return false;
    this.write({ cmd: "publish", topic, payload, qos: 0, dup: false, retain: false });
    return true;
  }

  private onPacket(packet: Packet): void {
    if (this.phase === "closing" || this.phase === "closed") return;
    switch (packet.cmd) {
      case "publish":
        this.onPublish(packet);
        return;
      case "pingresp":
        return;
      case "connack":
        this.onConnack(
          packet.reasonCode ?? RC_SUCCESS,
          packet.sessionPresent,
          packet.properties?.serverKeepAlive,
        );
        return;
      case "suback":
        this.onSuback(packet.messageId, packet.granted);
        return;
      case "disconnect": {
        const subscribing = this.connackReceived && !this.subscribed ? this.settings.topic : undefined;
        this.drop(disconnectError(packet.reasonCode, packet.properties?.reasonString, subscribing));
        return;
      }
      default:
        this.abort(RC_PROTOCOL_ERROR, new Error(`unexpected ${packet.cmd.toUpperCase()} from the broker`));
    }
  }

  private onConnack(reasonCode: number, sessionPresent: boolean, serverKeepAlive: number | undefined): void {
    if (this.connackReceived) {
      this.abort(RC_PROTOCOL_ERROR, new Error("second CONNACK"));
      return;
    }
    if (reasonCode !== RC_SUCCESS) {
      const hint = CREDENTIAL_REFUSALS.has(reasonCode) ? ": check MQTT_USERNAME and MQTT_PASSWORD" : "";
      this.drop(new Error(`broker refused the connection: reason ${describeReason(reasonCode)}${hint}`));
      return;
    }
    this.connackReceived = true;
    this.sessionPresent = sessionPresent;
    this.keepalive = new Keepalive(serverKeepAlive ?? this.settings.keepaliveSeconds, {
      ping: () => this.write({ cmd: "pingreq" }),
      dead: (err) => this.drop(err),
    });
    this.keepalive.setPaused(this.window.paused);
    this.keepalive.start();
    this.write({
      cmd: "subscribe",
      messageId: SUBSCRIBE_PACKET_ID,
      subscriptions: [this.settings.topic, ...this.settings.extraTopics].map((topic) => ({
        topic,
        qos: 1,
        rh: RETAIN_HANDLING_NEW_ONLY,
      })),
    });
  }

  private onSuback(messageId: number | undefined, granted: readonly unknown[]): void {
    if (this.subscribed || messageId !== SUBSCRIBE_PACKET_ID) {
      this.abort(RC_PROTOCOL_ERROR, new Error(`unexpected SUBACK for packet id ${messageId}`));
      return;
    }
    const filters = [this.settings.topic, ...this.settings.extraTopics];
    const failure = filters.map((f, i) => subackFailure(granted[i], f)).find((f) => f !== undefined);
    if (failure !== undefined) {
      this.error ??= new Error(failure);
      this.closeWith(RC_SUCCESS);
      return;
    }
    clearTimeout(this.connectTimer);
    this.subscribed = true;
    this.phase = "ready";
    this.log.info(
      {
        sessionPresent: this.sessionPresent,
        grantedQos: granted.length === 1 ? granted[0] : granted,
        receiveMaximum: this.settings.receiveMaximum,
      },
      "MQTT connected and subscribed",
    );
    this.hooks.ready(this.sessionPresent);
  }

  private onPublish(packet: IPublishPacket): void {
    const violation = this.connackReceived
      ? publishViolation(packet)
      : { reasonCode: RC_PROTOCOL_ERROR, error: new Error("PUBLISH before CONNACK") };
    if (violation !== undefined) {
      this.abort(violation.reasonCode, violation.error);
      return;
    }
    const payload = typeof packet.payload === "string" ? Buffer.from(packet.payload) : packet.payload;
    const qos = packet.qos === 1 ? 1 : 0;
    const message: MqttMessage = { topic: packet.topic, payload, qos, receivedAt: Date.now() };
    this.window.arrive(
      qos === 1 ? packet.messageId : undefined,
      message,
      payload.length + MESSAGE_HELD_BYTES,
    );
  }

  /**
   * A confirm releases PUBACKs by the hundred at once (a whole AMQP batch): they are collected and written as one
   * buffer at the end of the tick, one socket write instead of one per PUBACK.
   */
  private queuePuback(messageId: number): void {
    if (this.phase === "closing" || this.phase === "closed") return;
    if (this.pubacks.length === 0) process.nextTick(() => this.flushPubacks());
    this.pubacks.push(messageId);
  }

  private flushPubacks(): void {
    const ids = this.pubacks;
    if (ids.length === 0) return;
    this.pubacks = [];
    if (this.phase === "closing" || this.phase === "closed") return;
    this.socket.write(pubackPackets(ids));
  }

  /** Writes are corked for the rest of the tick, so packets written together leave in one segment. */
  private write(packet: Packet): void {
    if (this.phase === "closing" || this.phase === "closed") return;
    if (!this.corked) {
      this.corked = true;
      this.socket.cork();
      process.nextTick(() => {
        this.corked = false;
        this.socket.uncork();
      });
    }
    this.socket.write(generate(packet, PROTOCOL));
  }

  /** Ends the connection at once, nothing more written: the broker refused, hung, or went away. */
  private drop(err: Error): void {
    if (this.phase === "closed") return;
    this.error ??= err;
    this.phase = "closing";
    this.socket.destroy();
  }

  /** Sends DISCONNECT with the reason code, then closes our side; the broker closes its side in turn. */
  private closeWith(reasonCode: number): void {
    if (this.phase === "closing" || this.phase === "closed") return;
    // PUBACKs released before the DISCONNECT go out before it, as they would have without the collecting.
    this.flushPubacks();
    this.write({ cmd: "disconnect", reasonCode });
    this.phase = "closing";
    this.socket.end();
    // A socket paused for backpressure would never see the broker's close; what it reads now is dropped.
    if (this.window.paused) this.socket.resume();
    setTimeout(() => this.socket.destroy(), CLOSE_TIMEOUT_MS).unref();
  }

  /** A protocol violation by the broker: tell it why and drop the connection. */
  private abort(reasonCode: number, err: Error): void {
    if (this.phase === "closing" || this.phase === "closed") return;
    this.error ??= new Error(`protocol error: ${err.message}`, { cause: err });
    this.log.error({ err, reason: describeReason(reasonCode) }, "MQTT protocol error, disconnecting");
    this.closeWith(reasonCode);
  }

  private onClose(): void {
    const lastPhase = this.phase;
    this.phase = "closed";
    clearTimeout(this.connectTimer);
    this.keepalive?.stop();
    const unacked = this.window.unacked;
    this.window.close();
    const error =
      this.error ??
      new Error(
        this.subscribed
          ? "connection closed by the broker"
          : lastPhase === "connecting"
            ? "the connection closed before it opened"
            : this.connackReceived
              ? "the broker closed the connection before SUBACK (is the topic filter valid?)"
              : "the broker closed the connection before CONNACK",
      );
    this.hooks.closed({ subscribed: this.subscribed, error, unacked });
  }
}
