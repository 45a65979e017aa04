import type { Logger } from "../common/log.js";
import { type Delivery, type Health, type Input, running } from "../common/pipeline.js";
import type { TlsMaterial } from "../common/tls.js";
import { resolveOptions } from "./options.js";
import { MqttSession } from "./session.js";

export interface MqttInputOptions {
  /**
   * `mqtt://host:port`, `tcp://host:port` or `mqtts://host:port` (TLS); user name and password in the URL are sent
   * in CONNECT unless `username` or `password` is given.
   */
  readonly url: string;
  /** User name sent in CONNECT; overrides the URL's. */
  readonly username?: string | undefined;
  /** Password sent in CONNECT; overrides the URL's. Never logged. */
  readonly password?: string | undefined;
  /** CA, client certificate and key for an `mqtts://` URL (ignored otherwise); the system's CAs when no `ca`. */
  readonly tls?: TlsMaterial | undefined;
  /** Names the persistent session. */
  readonly clientId: string;
  /** Subscription filter, e.g. `sensors/+/+`, subscribed at QoS 1. */
  readonly topic: string;
  /**
   * MQTT 5 share name: when given, the session subscribes to `$share/<shareGroup>/<topic>` and the broker gives
   * each message to one of the sessions sharing that name (1 to 128 characters, no `/`, `+` or `#`).
   */
  readonly shareGroup?: string | undefined;
  /** MQTT 5 Receive Maximum sent in CONNECT: the broker's in-flight window towards us (1 to 65,535). */
  readonly receiveMaximum: number;
  /**
   * Keep Alive in seconds; 0 disables it. A PINGREQ goes out every half interval even while PUBACKs are held, and a
   * broker silent for a whole interval (hung, or the network cut) is given up and reconnected to.
   */
  readonly keepaliveSeconds: number;
  /** Session Expiry Interval: how long the broker keeps the session and its messages while we are away. */
  readonly sessionExpirySeconds: number;
  /** Reconnect delays: `backoffDelay` (common/backoff.ts) from this (default 200 ms)... */
  readonly reconnectMinMs?: number;
  /** ...up to this (default 15 s). */
  readonly reconnectMaxMs?: number;
  /** Bound on one attempt, from opening the socket to SUBACK (default 10 s): a hung broker accepts TCP only. */
  readonly connectTimeoutMs?: number;
  readonly log: Logger;
}

/** One MQTT PUBLISH as the input hands it on. */
export interface MqttMessage {
  readonly topic: string;
  readonly payload: Buffer;
  /** 1 for what the subscription was meant for; 0 when the publisher sent QoS 0 (no PUBACK, no redelivery). */
  readonly qos: 0 | 1;
  /** Date.now() at arrival. */
  readonly receivedAt: number;
}

/** The events of an `MqttInput`; listeners added right after `startMqttInput` resolves miss none of them. */
export type MqttInputEvents = {
  /** After every CONNACK + SUBACK, the first one included. */
  connected: [info: { sessionPresent: boolean }];
  /** A subscribed connection is gone: the error that ended it, or undefined after stop(). */
  disconnected: [err: Error | undefined];
  /** An attempt ended before the subscription was granted (refused, CONNACK reason, timeout); a retry follows. */
  failed: [err: Error];
};

/** A running MQTT subscriber session (see `startMqttInput`). */
export interface MqttInput extends Input {
  /** Ready when connected and subscribed; else `mqtt not connected: <last error>` (or `connecting to host:port`). */
  health(): Health;
  /** CONNACK accepted, subscription granted, socket open. */
  readonly connected: boolean;
  /** Messages received on the current connection and not yet PUBACKed (handed on or held). */
  readonly unacked: number;
  /** Messages the broker sent beyond the Receive Maximum, waiting to be handed on. */
  readonly held: number;
  on<E extends keyof MqttInputEvents>(event: E, listener: (...args: MqttInputEvents[E]) => void): this;
  once<E extends keyof MqttInputEvents>(event: E, listener: (...args: MqttInputEvents[E]) => void): this;
  off<E extends keyof MqttInputEvents>(event: E, listener: (...args: MqttInputEvents[E]) => void): this;
}

/**
 * Starts an MQTT 5 subscriber session over `mqtt-packet` (clean start off, QoS 1, Receive Maximum
 * `receiveMaximum`) that hands each PUBLISH to `handler` and sends its PUBACK only once `ack()` was called for it
 * and for every earlier message of the same connection, while up to `receiveMaximum` messages are in flight.
 *
 * Resolves as soon as the first connection attempt is under way; it does not wait for the broker. An unreachable,
 * refusing or hung broker is retried forever with backoff, each failure logged in one line naming the broker and
 * the reason and reported by `health()`, the same as a connection lost later. Rejects only for options that can
 * never work (a URL that is not `mqtt://`, `tcp://` or `mqtts://`, an empty clientId or topic, a number out of
 * range). A certificate refused either way, or a refused password, is such a failure: retried, logged, reported.
 *
 * `handler` is called synchronously for every PUBLISH, in arrival order, and must not throw. Messages can arrive
 * between CONNACK and SUBACK (what the broker kept for the session). `ack()` is idempotent, a no-op for QoS 0, and
 * a no-op once the connection the message came on is gone: the broker redelivers it on the next connection.
 *
 * `stop()` ends promptly in every state: it cancels a pending retry or drops an attempt under way; a subscribed
 * connection stops taking messages, writes the PUBACKs released so far, sends DISCONNECT (session kept) and
 * closes (at most 2 s). What was not acked is redelivered to the next session with the same clientId.
 */
export async function startMqttInput(
  options: MqttInputOptions,
  handler: (delivery: Delivery<MqttMessage>) => void,
): Promise<MqttInput> {
  const session = new MqttSession(resolveOptions(options), (item, ack) => handler({ item, ack }));
  const input: MqttInput = running(session, () => session.shutdown());
  session.connect();
  return input;
}
