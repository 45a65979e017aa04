import { type Delivery, type Health, type Input, running } from "../common/pipeline.js";
import { resolveOptions } from "./options.js";
import { MqttSession } from "./session.js";
import type { MqttInputEvents, MqttInputOptions, MqttMessage } from "./types.js";

export type { MqttInputEvents, MqttInputOptions, MqttMessage } from "./types.js";

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
  /**
   * Publishes `payload` at QoS 0 on the session's connection (e.g. a Sparkplug rebirth request). Returns false,
   * sending nothing, while no connection is subscribed; QoS 0 may be lost, so callers that care ask again later.
   */
  publish(topic: string, payload: Buffer): boolean;
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
