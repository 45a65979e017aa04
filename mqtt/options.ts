import { subscriptionFilter } from "./protocol.js";
import type { MqttInputOptions, SessionSettings } from "./types.js";
import { type BrokerAddress, parseBrokerUrl } from "./url.js";

export type { SessionSettings } from "./types.js";

/** From opening the socket to SUBACK, unless the options say otherwise. */
const CONNECT_TIMEOUT_MS = 10_000;
const RECONNECT_MIN_MS = 200;
const RECONNECT_MAX_MS = 15_000;
/** setTimeout's largest delay. */
const MAX_TIMER_MS = 2_147_483_647;
const MAX_RECEIVE_MAXIMUM = 65_535;
const MAX_KEEPALIVE_SECONDS = 65_535;
const MAX_SESSION_EXPIRY_SECONDS = 4_294_967_295;

/** The packet codec throws on out-of-range values, and it runs in socket callbacks: check them up front. */
function requireInteger(name: string, value: number, min: number, max: number): void {
  if (!Number.isInteger(value) || value < min || value > max) {
    throw new RangeError(`${name} must be an integer from ${min} to ${max}, got ${value}`);
  }
}

function withCredentials(
  broker: BrokerAddress,
  username: string | undefined,
  password: string | undefined,
): BrokerAddress {
  return {
    ...broker,
    username: username ?? broker.username,
    password: password ?? broker.password,
  };
}

/**
 * Checks `opts` and fills in the defaults (connect timeout 10 s, reconnect backoff from 200 ms to 15 s). Throws a
 * RangeError naming the option that is out of range or empty, or an Error for a URL that is not `mqtt://`,
 * `tcp://` or `mqtts://`. `username` and `password` replace the URL's; a share group turns the topic into the
 * shared subscription `$share/<shareGroup>/<topic>` (a RangeError for a share name MQTT 5 forbids).
 */
export function resolveOptions(opts: MqttInputOptions): SessionSettings {
  const connectTimeoutMs = opts.connectTimeoutMs ?? CONNECT_TIMEOUT_MS;
  const reconnectMinMs = opts.reconnectMinMs ?? RECONNECT_MIN_MS;
  const reconnectMaxMs = opts.reconnectMaxMs ?? RECONNECT_MAX_MS;
  requireInteger("receiveMaximum", opts.receiveMaximum, 1, MAX_RECEIVE_MAXIMUM);
  requireInteger("keepaliveSeconds", opts.keepaliveSeconds, 0, MAX_KEEPALIVE_SECONDS);
  requireInteger("sessionExpirySeconds", opts.sessionExpirySeconds, 0, MAX_SESSION_EXPIRY_SECONDS);
  requireInteger("connectTimeoutMs", connectTimeoutMs, 1, MAX_TIMER_MS);
  requireInteger("reconnectMinMs", reconnectMinMs, 1, MAX_TIMER_MS);
  requireInteger("reconnectMaxMs", reconnectMaxMs, reconnectMinMs, MAX_TIMER_MS);
  // A persistent session needs a client id of our own; an empty topic filter is a protocol error.
  if (opts.clientId === "") throw new RangeError("clientId must not be empty");
  if (opts.topic === "" || opts.extraTopics?.includes("")) throw new RangeError("topic must not be empty");
  return Object.freeze({
    broker: withCredentials(parseBrokerUrl(opts.url), opts.username, opts.password),
    tls: opts.tls ?? {},
    clientId: opts.clientId,
    topic: subscriptionFilter(opts.topic, opts.shareGroup),
    extraTopics: (opts.extraTopics ?? []).map((t) => subscriptionFilter(t, opts.shareGroup)),
    receiveMaximum: opts.receiveMaximum,
    keepaliveSeconds: opts.keepaliveSeconds,
    sessionExpirySeconds: opts.sessionExpirySeconds,
    connectTimeoutMs,
    reconnectMinMs,
    reconnectMaxMs,
    budget: opts.budget,
    log: opts.log,
  });
}
