import { describeTlsError } from "../common/tls.js";

/** MQTT 5 reason codes (section 2.4) that the subscriber session sends or checks for. */
export const RC_SUCCESS = 0x00;
/** In a SUBACK: the subscription was granted at QoS 0 only (the same byte as success). */
export const RC_GRANTED_QOS_0 = 0x00;
export const RC_MALFORMED_PACKET = 0x81;
export const RC_PROTOCOL_ERROR = 0x82;
export const RC_TOPIC_ALIAS_INVALID = 0x94;
export const RC_QOS_NOT_SUPPORTED = 0x9b;

/** Names of the MQTT 5 reason codes >= 0x80, and of the lower ones CONNACK and DISCONNECT use. */
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

/** A reason code as operators read it in logs and `/readyz`: `0x87 (Not authorized)`. */
export function describeReason(code: number): string {
  return `0x${code.toString(16).padStart(2, "0")} (${REASON_NAMES.get(code) ?? "unknown reason code"})`;
}

const SOCKET_ERRORS: Readonly<Record<string, string>> = {
  ECONNREFUSED: "connection refused",
  ECONNRESET: "connection reset",
  ENOTFOUND: "host not found",
  EAI_AGAIN: "host name lookup failed",
  EHOSTUNREACH: "host unreachable",
  ENETUNREACH: "network unreachable",
  ETIMEDOUT: "TCP timeout",
  EPIPE: "connection closed while writing",
};

/**
 * A socket error as operators read it (`connection refused (ECONNREFUSED)`, or a TLS refusal naming the settings to
 * check, see `describeTlsError`); unknown codes pass through.
 */
export function describeSocketError(err: NodeJS.ErrnoException): Error {
  const tls = describeTlsError(err, "MQTT");
  if (tls !== undefined) return new Error(tls, { cause: err });
  const known = err.code === undefined ? undefined : SOCKET_ERRORS[err.code];
  return known === undefined ? err : new Error(`${known} (${err.code})`, { cause: err });
}
