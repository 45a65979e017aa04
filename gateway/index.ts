import { defineCommand } from "../common/command.js";
import { effectiveConfig, parsers, setting } from "../common/config.js";
import { createLogger } from "../common/log.js";
import { runUntilSignal } from "../common/service.js";
import {
  amqpSecurity,
  common,
  httpHost,
  httpPort,
  mqttSecurity,
  securityProblem,
  stallTimeout,
} from "../common/settings.js";
import { spoolSettings } from "../spool/settings.js";
import { startGateway } from "./gateway.js";

export { type GatewayConfig, type RunningGateway, startGateway as start } from "./gateway.js";

/** Host names Docker and Kubernetes make up per container: no stable session can be named after one. */
const CONTAINER_ID = /^(?:[0-9a-f]{12}|[0-9a-f]{64})$/;

/** Default port of the gateway's /healthz, /readyz and /metrics. */
export const GATEWAY_HTTP_PORT = 9_464;

export const gatewayCommand = defineCommand({
  name: "gateway",
  usage: "telemetry gateway [options]",
  summary:
    "Subscribes to <TOPIC_PREFIX>/+/+ at QoS 1 with a persistent MQTT session, validates each reading, publishes it\n" +
    "Avro-encoded and persistent to the durable <QUEUE>, and sends the MQTT PUBACK only after RabbitMQ confirmed it.\n" +
    "Invalid input goes, raw, to <QUEUE>.rejected with its topic and reason. Runs until SIGINT/SIGTERM.",
  spec: {
    mqttUrl: common.mqttUrl,
    ...mqttSecurity,
    amqpUrl: common.amqpUrl,
    ...amqpSecurity,
    queue: common.queue,
    queueType: common.queueType,
    topicPrefix: common.topicPrefix,
    gatewayId: common.gatewayId,
    shareGroup: setting<string | undefined>({
      flag: "share-group",
      env: "GATEWAY_SHARE_GROUP",
      default: undefined,
      defaultLabel: "unset: a subscription of this gateway's own",
      description:
        "MQTT 5 share name: gateways with the same group share the subscription $share/<group>/<TOPIC_PREFIX>/+/+ " +
        "and the broker gives each reading to one of them. Give each gateway its own GATEWAY_ID.",
      parse: parsers.string({
        max: 128,
        pattern: /^[^/+#\0]+$/,
        what: "an MQTT share name without / + or #",
      }),
    }),
    inflight: setting({
      flag: "inflight",
      env: "GATEWAY_INFLIGHT",
      default: 4_000,
      description:
        "MQTT messages in flight at once: the MQTT 5 Receive Maximum asked of the broker, and so the bound on memory. With batching the gateway carries at most about this many readings per confirm round trip, so it bounds throughput too.",
      parse: parsers.int(1, 65_535),
    }),
    keepaliveSeconds: setting({
      flag: "keepalive",
      env: "MQTT_KEEPALIVE",
      default: 30,
      description: "MQTT keepalive in seconds.",
      parse: parsers.int(5, 3_600),
    }),
    sessionExpirySeconds: setting({
      flag: "session-expiry",
      env: "MQTT_SESSION_EXPIRY",
      default: 7 * 24 * 3_600,
      description:
        "Seconds the MQTT broker keeps the gateway's session (and queues its readings) while it is away.",
      parse: parsers.int(60, 0xffff_ffff),
    }),
    drainTimeoutMs: setting({
      flag: "drain-timeout",
      env: "DRAIN_TIMEOUT",
      default: 10_000,
      description: "On SIGTERM, how long to wait for in-flight readings to be confirmed.",
      parse: parsers.duration(0, 600_000),
    }),
    stallTimeoutMs: stallTimeout,
    publishBatch: setting({
      flag: "publish-batch",
      env: "PUBLISH_BATCH",
      default: 500,
      description:
        "Readings per RabbitMQ message at most: readings that arrive while earlier messages await their confirm go out together (no added delay). 1 publishes one reading per message, the format processors before batching read.",
      parse: parsers.int(1, 10_000),
    }),
    publishBatchBytes: setting({
      flag: "publish-batch-bytes",
      env: "PUBLISH_BATCH_BYTES",
      default: 262_144,
      description: "Bytes of encoded readings per RabbitMQ message at most.",
      parse: parsers.int(1_024, 16_777_216),
    }),
    publishWindow: setting({
      flag: "publish-window",
      env: "PUBLISH_WINDOW",
      default: 8,
      description:
        "RabbitMQ messages awaiting their confirm at once when batching: smaller packs more readings per message, larger publishes sooner.",
      parse: parsers.int(1, 1_000),
    }),
    ...spoolSettings,
    httpHost,
    httpPort: httpPort(GATEWAY_HTTP_PORT),
    logLevel: common.logLevel,
  },
  check: (c) =>
    securityProblem(c) ??
    (CONTAINER_ID.test(c.gatewayId)
      ? `GATEWAY_ID ${c.gatewayId} looks like a container id, which changes on every restart and would orphan the ` +
        "MQTT session holding readings; set GATEWAY_ID (or --gateway-id) to a stable name"
      : undefined),
  run: (config) => {
    const log = createLogger("gateway", config.logLevel);
    // Every setting as it took effect, secrets as ***: what an operator compares with what they meant to set.
    log.info({ config: effectiveConfig(gatewayCommand.spec, config) }, "configuration");
    return runUntilSignal(log, (signal) => startGateway(config, log, signal));
  },
});
