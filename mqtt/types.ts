/**
 * The MQTT input's shapes, shared by its parts (input, options, protocol, session, connection) so that each imports
 * them from here rather than from one another.
 */
import type { ByteBudget } from "../common/byte-budget.js";
import type { Logger } from "../common/log.js";
import type { TlsMaterial } from "../common/tls.js";
import type { BrokerAddress } from "./url.js";

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
  /** More filters subscribed beside `topic`, alike (QoS 1, the same share group), e.g. Sparkplug B's topics. */
  readonly extraTopics?: readonly string[] | undefined;
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
  /**
   * Bytes the service may hold, shared with its other parts: each message holds its payload's bytes from arrival
   * until its `ack`, and while the budget is full the input stops reading the broker (see `InflightWindow`).
   */
  readonly budget?: ByteBudget | undefined;
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

/** The session's options checked once, defaults filled in, the URL parsed. */
export interface SessionSettings {
  /** The URL's address, its credentials replaced by the options' where given. */
  readonly broker: BrokerAddress;
  /** For an `mqtts://` broker: CA, client certificate and key (empty: the system's CAs, no client certificate). */
  readonly tls: TlsMaterial;
  readonly clientId: string;
  /** The filter SUBSCRIBE sends: the options' topic, or `$share/<shareGroup>/<topic>` with a share group. */
  readonly topic: string;
  /** Further filters, each as SUBSCRIBE sends it (share group applied). */
  readonly extraTopics: readonly string[];
  readonly receiveMaximum: number;
  readonly keepaliveSeconds: number;
  readonly sessionExpirySeconds: number;
  readonly connectTimeoutMs: number;
  readonly reconnectMinMs: number;
  readonly reconnectMaxMs: number;
  readonly budget: ByteBudget | undefined;
  readonly log: Logger;
}
