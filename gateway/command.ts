import { setFlagsFromString } from "node:v8";
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

/** Host names Docker and Kubernetes make up per container: no stable session can be named after one. */
const CONTAINER_ID = /^(?:[0-9a-f]{12}|[0-9a-f]{64})$/;

/**
 * GATEWAY_INFLIGHT_BYTES by default: 32 MiB. A reading waiting for its confirm takes about 350 bytes as the budget
 * counts it, so this keeps about 95,000 readings in flight, far more than the 4,000 the AMQP sink has awaiting
 * confirms at once (PUBLISH_BATCH x PUBLISH_WINDOW), while resident memory stays within about 120 MB of idle even
 * with payloads at the size limit (300 of 8,000 readings while RabbitMQ blocks: +114 MB measured), which a small
 * edge box with 512 MiB of RAM can spare.
 */
const DEFAULT_INFLIGHT_BYTES = 33_554_432;
const MIN_INFLIGHT_BYTES = 1_048_576;
const MAX_INFLIGHT_BYTES = 68_719_476_736;

/**
 * How far V8 lets the heap grow past what survived its last full collection (V8's own choice: up to 300% while
 * allocation is fast). Every reading the gateway holds dies at its confirm, so that slack fills with garbage: with
 * the default budget and 300 payloads of 8,000 readings while RabbitMQ blocks, resident memory grew by 254 MB with
 * V8's choice and by 114 MB with 50%. 20% went further (99 MB) but made full collections so frequent on a small
 * heap that the spool's kill-loop test could no longer keep up; 50% costs nothing measurable there.
 */
const HEAP_GROWING_PERCENT = 50;

/** Default port of the gateway's /healthz, /readyz and /metrics. */
export const GATEWAY_HTTP_PORT = 9_464;
/** MQTT messages in flight by default (GATEWAY_INFLIGHT): the Receive Maximum the gateway asks for. */
export const GATEWAY_INFLIGHT_DEFAULT = 4_000;

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
    sparkplugGroups: setting<readonly string[]>({
      flag: "sparkplug-groups",
      env: "SPARKPLUG_GROUPS",
      default: [],
      defaultLabel: "unset: Sparkplug B off",
      description:
        "Comma list of Sparkplug B group ids: the gateway also reads spBv1.0/<group>/NBIRTH|NDATA|NDEATH/<node> and " +
        "DBIRTH|DDATA|DDEATH/<node>/<device>, stores each numeric metric as a reading of <node> or <node>.<device>, " +
        "and publishes a rebirth request (NCMD) to a node whose aliases it does not know. See docs/industrial.md.",
      parse: (raw: string): readonly string[] => {
        const groups = raw
          .split(",")
          .map((g) => g.trim())
          .filter((g) => g !== "");
        for (const g of groups) {
          if (!/^[^/+#\0]{1,128}$/.test(g))
            throw new Error(`group id ${JSON.stringify(g)} must be 1-128 characters without / + or #`);
        }
        return groups;
      },
    }),
    inflight: setting({
      flag: "inflight",
      env: "GATEWAY_INFLIGHT",
      default: GATEWAY_INFLIGHT_DEFAULT,
      description:
        "MQTT messages in flight at once: the MQTT 5 Receive Maximum asked of the broker. With batching the gateway carries at most about this many readings per confirm round trip, so it bounds throughput too. GATEWAY_INFLIGHT_BYTES bounds the memory they take.",
      parse: parsers.int(1, 65_535),
    }),
    inflightBytes: setting({
      flag: "inflight-bytes",
      env: "GATEWAY_INFLIGHT_BYTES",
      default: DEFAULT_INFLIGHT_BYTES,
      description:
        "Memory the gateway may hold for readings, together: MQTT messages not yet PUBACKed, readings awaiting RabbitMQ's confirm, and the spool's drain (at most half). When it is full the gateway stops reading MQTT (PUBACKs wait, the broker keeps the rest) until confirms free room; a single message larger than all of it still passes alone. Resident memory grows by about three to four times this under load. The default suits a small edge box (512 MiB of RAM or more) and still keeps about 95,000 readings in flight.",
      parse: parsers.bytes(MIN_INFLIGHT_BYTES, MAX_INFLIGHT_BYTES),
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
        "RabbitMQ messages awaiting their confirm at once when batching. With nothing in flight what waits goes at once; while messages await their confirm only full ones follow (PUBLISH_BATCH readings or PUBLISH_BATCH_BYTES), up to this many: it bounds throughput under load, not the wait of a lone reading.",
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
    setFlagsFromString(`--heap-growing-percent=${HEAP_GROWING_PERCENT}`);
    const log = createLogger("gateway", config.logLevel);
    // Every setting as it took effect, secrets as ***: what an operator compares with what they meant to set.
    log.info({ config: effectiveConfig(gatewayCommand.spec, config) }, "configuration");
    return runUntilSignal(log, (signal) => startGateway(config, log, signal));
  },
});
