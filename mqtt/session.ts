import { EventEmitter } from "node:events";
import { backoffDelay } from "../common/backoff.js";
import type { Logger } from "../common/log.js";
import { HEALTHY, type Health } from "../common/pipeline.js";
import { Connection, type ConnectionEnd } from "./connection.js";
import type { MqttInputEvents, MqttMessage, SessionSettings } from "./types.js";

/**
 * The MQTT 5 subscriber session behind `startMqttInput`: one connection at a time, the next one opened after
 * `backoffDelay` whenever an attempt fails or a connection is lost, from the first attempt on. Each failure is
 * logged in one line naming the broker and the reason, and `health()` reports the last one until a connection is
 * subscribed again.
 */
export class MqttSession extends EventEmitter<MqttInputEvents> {
  private readonly log: Logger;
  private conn: Connection | undefined;
  private stopping = false;
  private reconnectTimer: NodeJS.Timeout | undefined;
  /** Attempts since the last subscribed connection: drives the backoff. */
  private attempt = 0;
  private lastError: Error | undefined;

  constructor(
    private readonly settings: SessionSettings,
    private readonly handler: (message: MqttMessage, ack: () => void) => void,
  ) {
    super();
    this.log = settings.log.child({
      component: "mqtt-input",
      broker: settings.broker.display,
      clientId: settings.clientId,
    });
  }

  get connected(): boolean {
    return this.conn?.ready ?? false;
  }

  get unacked(): number {
    return this.conn?.unacked ?? 0;
  }

  get held(): number {
    return this.conn?.held ?? 0;
  }

  health(): Health {
    if (this.stopping) return { ready: false, reason: "mqtt input stopped" };
    if (this.connected) return HEALTHY;
    const why = this.lastError?.message ?? `connecting to ${this.settings.broker.display}`;
    return { ready: false, reason: `mqtt not connected: ${why}` };
  }

  /** Publishes at QoS 0 on the current connection; false when there is none subscribed (see Connection.publish). */
  publish(topic: string, payload: Buffer): boolean {
    return this.conn?.publish(topic, payload) ?? false;
  }

  /** Opens the next connection (the first one from `startMqttInput`). */
  connect(): void {
    if (this.stopping) return;
    const conn: Connection = new Connection(this.settings, this.log, {
      deliver: this.handler,
      ready: (sessionPresent) => {
        this.attempt = 0;
        this.lastError = undefined;
        this.emit("connected", { sessionPresent });
      },
      closed: (end) => {
        if (this.conn === conn) this.conn = undefined;
        this.onClosed(end);
      },
    });
    this.conn = conn;
  }

  /** Cancels a pending retry, ends the current connection in whatever state it is, and opens no other. */
  async shutdown(): Promise<void> {
    this.stopping = true;
    clearTimeout(this.reconnectTimer);
    this.reconnectTimer = undefined;
    await this.conn?.end();
  }

  private onClosed({ subscribed, error: cause, unacked }: ConnectionEnd): void {
    if (this.stopping) {
      if (subscribed) {
        this.log.info({ unacked }, "MQTT disconnected");
        this.emit("disconnected", undefined);
      }
      return;
    }
    const { display } = this.settings.broker;
    const err = new Error(
      `MQTT connection to ${display} ${subscribed ? "lost" : "failed"}: ${cause.message}`,
      {
        cause,
      },
    );
    this.lastError = err;
    this.attempt++;
    const delayMs = backoffDelay(this.attempt, this.settings.reconnectMinMs, this.settings.reconnectMaxMs);
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = undefined;
      this.connect();
    }, delayMs);
    if (subscribed) {
      this.log.warn(
        { reason: cause.message, unacked, retryInMs: delayMs },
        "MQTT connection lost; unacked messages will be redelivered",
      );
      this.emit("disconnected", err);
    } else {
      this.log.warn(
        { reason: cause.message, attempt: this.attempt, retryInMs: delayMs },
        `${err.message}; retrying in ${delayMs} ms`,
      );
      this.emit("failed", err);
    }
  }
}
