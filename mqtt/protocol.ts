import type { IConnectPacket, IPublishPacket } from "mqtt-packet";
import {
  describeReason,
  RC_GRANTED_QOS_0,
  RC_MALFORMED_PACKET,
  RC_QOS_NOT_SUPPORTED,
  RC_TOPIC_ALIAS_INVALID,
} from "./reasons.js";
import type { SessionSettings } from "./types.js";

/**
 * CONNECT for the gateway's persistent session: MQTT 5, clean start off, the session expiry and Receive Maximum
 * of the settings, and the URL's credentials when it has them.
 */
export function connectPacket(settings: SessionSettings): IConnectPacket {
  const { username, password } = settings.broker;
  return {
    cmd: "connect",
    protocolId: "MQTT",
    protocolVersion: 5,
    clean: false,
    clientId: settings.clientId,
    keepalive: settings.keepaliveSeconds,
    properties: {
      sessionExpiryInterval: settings.sessionExpirySeconds,
      receiveMaximum: settings.receiveMaximum,
    },
    ...(username === undefined ? {} : { username }),
    ...(password === undefined ? {} : { password: Buffer.from(password) }),
  };
}

/** MQTT 5 (section 4.8.2): a share name is at least one character and holds no `/`, `+` or `#`. */
const SHARE_NAME_FORBIDDEN = /[/+#]/;

/**
 * The topic filter the session subscribes to: `topic` itself, or with a share name the shared subscription
 * `$share/<shareGroup>/<topic>`, whose messages the broker deals out among the sessions sharing that name. The
 * PUBLISH packets of a shared subscription carry the message's own topic, never the `$share/...` filter. Throws a
 * RangeError for a share name MQTT 5 forbids.
 */
export function subscriptionFilter(topic: string, shareGroup: string | undefined): string {
  if (shareGroup === undefined) return topic;
  if (shareGroup === "" || SHARE_NAME_FORBIDDEN.test(shareGroup)) {
    throw new RangeError(
      `shareGroup must be a non-empty MQTT share name without / + or #, got ${JSON.stringify(shareGroup)}`,
    );
  }
  return `$share/${shareGroup}/${topic}`;
}

/** What is wrong with a PUBLISH from the broker, with the reason code to disconnect with; undefined if nothing. */
export function publishViolation(packet: IPublishPacket): { reasonCode: number; error: Error } | undefined {
  if (packet.qos === 2) {
    return { reasonCode: RC_QOS_NOT_SUPPORTED, error: new Error("QoS 2 PUBLISH on a QoS 1 subscription") };
  }
  if (packet.topic === "") {
    // We send no Topic Alias Maximum, so the broker may not use aliases.
    return { reasonCode: RC_TOPIC_ALIAS_INVALID, error: new Error("PUBLISH with a topic alias") };
  }
  if (packet.qos === 1 && packet.messageId === undefined) {
    return { reasonCode: RC_MALFORMED_PACKET, error: new Error("QoS 1 PUBLISH without a packet id") };
  }
  return undefined;
}

/**
 * Why the SUBACK's first return code does not give us the subscription at QoS 1 or 2 (granted QoS 0 only, or a
 * failure reason code); undefined when it does.
 */
export function subackFailure(granted: unknown, topic: string): string | undefined {
  const code = typeof granted === "number" ? granted : Number.NaN;
  if (code === RC_GRANTED_QOS_0)
    return `subscription to ${JSON.stringify(topic)} failed: the broker granted only QoS 0`;
  if (code >= 1 && code <= 2) return undefined;
  return `subscription to ${JSON.stringify(topic)} failed: the broker refused it: reason ${describeReason(code)}`;
}

/**
 * The error a DISCONNECT from the broker ends the connection with. `subscribing`: it came in reply to our
 * SUBSCRIBE, which is how Mosquitto answers an invalid topic filter (DISCONNECT 0x81, not a SUBACK failure code).
 */
export function disconnectError(
  reasonCode: number | undefined,
  reasonString: string | undefined,
  subscribing: string | undefined,
): Error {
  const when = subscribing === undefined ? "" : ` in reply to SUBSCRIBE ${JSON.stringify(subscribing)}`;
  const detail = reasonString ? `: ${reasonString}` : "";
  return new Error(`broker sent DISCONNECT${when}: reason ${describeReason(reasonCode ?? 0)}${detail}`);
}

/** PUBACK with Reason Code 0 and no properties: MQTT 5 section 3.4.2.1 lets both be left out (Remaining Length 2). */
const PUBACK_BYTES = 4;

/**
 * The PUBACKs for `messageIds`, in that order, as one buffer: what one socket write sends for every PUBACK released
 * in a turn of the event loop, instead of a packet object, a generated buffer and a write each.
 */
export function pubackPackets(messageIds: readonly number[]): Buffer {
  const out = Buffer.allocUnsafe(messageIds.length * PUBACK_BYTES);
  messageIds.forEach((id, i) => {
    const at = i * PUBACK_BYTES;
    out[at] = 0x40;
    out[at + 1] = 2;
    out.writeUInt16BE(id, at + 2);
  });
  return out;
}
