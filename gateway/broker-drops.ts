/**
 * Watches what the MQTT broker says it dropped. Mosquitto drops QoS 1 messages it has already PUBACKed to their
 * publisher when a session's queue is full (`max_queued_messages`, 1,000 by default): readings a sensor was told
 * were received, gone before the gateway could see them. The gateway cannot see such a loss in its own traffic,
 * but Mosquitto counts it in `$SYS/broker/publish/messages/dropped` (every `sys_interval` seconds, 10 by default).
 * This watcher subscribes to that topic on a connection of its own (clean, QoS 0, nothing to do with the readings'
 * session) and turns every rise into a warning and `telemetry_gateway_mqtt_broker_dropped_total`. The count is the
 * broker's, for all its sessions: on a broker that carries readings any drop is worth a look. Brokers without that
 * topic never answer, and the watcher stays silent. The first count seen is the starting point; Mosquitto 2.0.11
 * did not always hand a new subscriber its retained count at once, and then drops before its next publish are only
 * in the start-up warning.
 */
import mqtt from "mqtt";
import type { Logger } from "../common/log.js";
import type { MqttInputOptions } from "../mqtt/types.js";

export const DROPPED_TOPIC = "$SYS/broker/publish/messages/dropped";

/** The broker as the gateway's input reaches it (a client id of its own), and what to do with each rise. */
export type BrokerDropsOptions = Pick<
  MqttInputOptions,
  "url" | "username" | "password" | "tls" | "clientId"
> & {
  readonly log: Logger;
  /** Called with each rise of the broker's count while this process watched. */
  readonly onDropped: (count: number) => void;
};

export interface BrokerDropsWatch {
  stop(): Promise<void>;
}

/** Starts watching; never throws (a broker that refuses this connection only costs the warning it cannot give). */
export function watchBrokerDrops(opts: BrokerDropsOptions): BrokerDropsWatch {
  const client = mqtt.connect(opts.url, {
    ...opts.tls,
    ...(opts.username === undefined ? {} : { username: opts.username }),
    ...(opts.password === undefined ? {} : { password: opts.password }),
    clientId: opts.clientId,
    clean: true,
    protocolVersion: 4,
    reconnectPeriod: 5_000,
  });
  let last: number | undefined;
  client.on("connect", () => {
    client.subscribe(DROPPED_TOPIC, { qos: 0 }, (err) => {
      if (err) opts.log.debug({ err: err.message }, "cannot watch the MQTT broker's dropped count");
    });
  });
  client.on("message", (_topic, payload) => {
    const count = Number(payload.toString());
    if (!Number.isSafeInteger(count) || count < 0) return;
    if (last === undefined) {
      // The broker's count since it started: what it dropped before this process watched is not this one's to
      // count, but it is said once.
      if (count > 0)
        opts.log.warn(
          { dropped: count },
          "the MQTT broker reports messages it dropped since it started (queue limits: max_queued_messages)",
        );
      else
        opts.log.info(`watching the MQTT broker's count of dropped messages (${DROPPED_TOPIC}): none so far`);
    } else if (count > last) {
      opts.onDropped(count - last);
      opts.log.warn(
        { dropped: count - last, brokerTotal: count },
        "the MQTT broker dropped messages it had acknowledged to their publishers: readings are lost (a session's " +
          "queue was full: raise max_queued_messages, see README, The MQTT broker)",
      );
    }
    // A broker restarted counts from 0 again.
    last = count;
  });
  client.on("error", (err) => opts.log.debug({ err: err.message }, "broker drops watch: MQTT error"));
  return {
    stop: () => new Promise<void>((resolve) => client.end(true, {}, () => resolve())),
  };
}
