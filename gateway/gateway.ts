import { join } from "node:path";
import { Registry } from "prom-client";
import { AmqpSink } from "../amqp/sink.js";
import type { QueueType } from "../amqp/topology.js";
import { sleep } from "../common/backoff.js";
import { ByteBudget } from "../common/byte-budget.js";
import { startHttp } from "../common/http.js";
import type { Logger } from "../common/log.js";
import type { OutgoingBatch } from "../common/outgoing.js";
import { heldBytes } from "../common/outgoing.js";
import { type Delivery, firstUnhealthy, type Health, type Running, running } from "../common/pipeline.js";
import type { AmqpSecurityConfig, MqttSecurityConfig } from "../common/settings.js";
import { readTls, type TlsMaterial } from "../common/tls.js";
import { type MqttInput, type MqttMessage, startMqttInput } from "../mqtt/input.js";
import { SchemaRegistry } from "../schemas/index.js";
import { type FullPolicy, type RunningSpool, startSpool } from "../spool/index.js";
import { watchBrokerDrops } from "./broker-drops.js";
import { encodeEnvelope } from "./encode.js";
import { validator } from "./formats.js";
import { type GatewayMetrics, gatewayMetrics } from "./metrics.js";
import { sparkplugFilters } from "./sparkplug.js";

/** Everything the gateway needs, parsed and checked by the CLI (or built by a test). */
export interface GatewayConfig extends MqttSecurityConfig, AmqpSecurityConfig {
  /** With the TLS files (for `mqtts://`) and credentials, which override the URL's. */
  readonly mqttUrl: string;
  /** With the TLS files (for `amqps://`). */
  readonly amqpUrl: string;
  readonly queue: string;
  readonly queueType: QueueType;
  readonly topicPrefix: string;
  readonly gatewayId: string;
  /** MQTT 5 share name: gateways with the same one share `$share/<group>/<topicPrefix>/+/+` (unset: a plain subscription). */
  readonly shareGroup?: string | undefined;
  /** Sparkplug B group ids whose nodes and devices the gateway also reads (empty: Sparkplug off). */
  readonly sparkplugGroups?: readonly string[] | undefined;
  /** MQTT messages in flight at once (the Receive Maximum the gateway asks the broker for). */
  readonly inflight: number;
  /**
   * Bytes the gateway may hold in memory: MQTT messages not yet PUBACKed, readings awaiting RabbitMQ's confirm, and
   * the spool's drain, together. Full: the gateway stops reading MQTT until confirms free room.
   */
  readonly inflightBytes: number;
  readonly keepaliveSeconds: number;
  readonly sessionExpirySeconds: number;
  /** How long SIGTERM waits for in-flight confirms before closing anyway. */
  readonly drainTimeoutMs: number;
  /** Readings waiting with none confirmed for this long make /readyz report a stall. */
  readonly stallTimeoutMs: number;
  /** Readings per AMQP message at most (1: single-reading messages, as gateways before batching wrote). */
  readonly publishBatch: number;
  /** Bytes of readings per AMQP message at most. */
  readonly publishBatchBytes: number;
  /** AMQP messages awaiting their confirm at once; what arrives meanwhile is packed into the next message. */
  readonly publishWindow: number;
  readonly httpHost: string;
  readonly httpPort: number;
  /** The store-and-forward spool's directory; unset: no spool (PUBACK after RabbitMQ's confirm). */
  readonly spoolPath?: string | undefined;
  readonly spoolMaxBytes?: number;
  readonly spoolMaxAgeMs?: number;
  readonly spoolFull?: FullPolicy;
}

export interface RunningGateway extends Running {
  /** Port of the health and metrics endpoint. */
  readonly httpPort: number;
  readonly registry: Registry;
  health(): Health;
}

const DRAIN_POLL_MS = 20;
/** The Sparkplug alias maps' file in the spool's directory (the spool reads only its own segment files). */
const SPARKPLUG_ALIAS_FILE = "sparkplug-aliases.json";

/**
 * Starts the gateway: MQTT input -> validate -> encode -> AMQP sink. Each MQTT message travels with its PUBACK,
 * which the sink releases once RabbitMQ has confirmed every message it became (PUBACKs leave in arrival order).
 * `stop()` stops taking messages, waits up to `drainTimeoutMs` for what is in flight, then disconnects (keeping
 * the MQTT session): what was not PUBACKed is redelivered to the next session with the same GATEWAY_ID.
 * `signal` abandons a start still waiting for RabbitMQ (SIGTERM before the service was up): the promise rejects.
 */
export async function startGateway(
  config: GatewayConfig,
  log: Logger,
  signal?: AbortSignal,
): Promise<RunningGateway> {
  const schemas = SchemaRegistry.load();
  const registry = new Registry();
  const m = gatewayMetrics(registry);
  const budget = new ByteBudget(config.inflightBytes);
  let stopping = false;

  const sparkplugGroups = config.sparkplugGroups ?? [];
  const formats = validator({
    topicPrefix: config.topicPrefix,
    gatewayId: config.gatewayId,
    sparkplug: sparkplugGroups.length > 0,
    aliasFile: config.spoolPath ? join(config.spoolPath, SPARKPLUG_ALIAS_FILE) : undefined,
    metrics: m,
    log,
    publish: (topic, payload) => input?.publish(topic, payload) ?? false,
  });

  const sink = new AmqpSink({
    url: config.amqpUrl,
    tls: readTls({ caFile: config.amqpCaFile, certFile: config.amqpCertFile, keyFile: config.amqpKeyFile }),
    queue: config.queue,
    queueType: config.queueType,
    name: `telemetry-gateway ${config.gatewayId}`,
    log,
    stallTimeoutMs: config.stallTimeoutMs,
    framing: {
      single: (datum) => schemas.frameSingle(datum),
      batch: (datums, bytes) => schemas.frameBatch(datums, bytes),
    },
    batching: {
      maxReadings: config.publishBatch,
      maxBytes: config.publishBatchBytes,
      window: config.publishWindow,
    },
    messageIdPrefix: `${config.gatewayId}-${Date.now().toString(36)}-${process.pid}`,
    onConfirmed: (msg) => {
      if (msg.route === "rejected") m.rejected.inc();
      else m.published.inc();
      m.latency.observe((Date.now() - msg.receivedAt) / 1000);
    },
    onRefused: (why) => m.refused.inc({ why }),
  });
  let input: MqttInput | undefined;
  let mqtt: MqttInput;
  // With a spool: encode -> spool sink (PUBACK once durable on disk); spool input -> AMQP sink.
  const spool: RunningSpool | undefined = config.spoolPath
    ? startSpool(
        {
          path: config.spoolPath,
          maxBytes: config.spoolMaxBytes ?? 1_073_741_824,
          maxAgeMs: config.spoolMaxAgeMs ?? 7 * 86_400_000,
          full: config.spoolFull ?? "block",
          drainTimeoutMs: config.drainTimeoutMs,
          budget,
        },
        sink,
        registry,
        log,
      )
    : undefined;
  const downstream = spool?.sink ?? sink;

  const single = config.publishBatch === 1;
  const onMessage = (d: Delivery<MqttMessage>) => {
    if (stopping) return; // not acknowledged: the broker redelivers it to the next session
    m.received.inc();
    const encoded: OutgoingBatch = encodeEnvelope(
      formats.validate(d.item),
      schemas,
      config.gatewayId,
      single,
    );
    // A Sparkplug death, or a message of values that are not readings: nothing to confirm downstream.
    if (encoded.length === 0) {
      d.ack();
      return;
    }
    // The encoded readings weigh far more than the payload (objects around each datum): the budget counts them.
    const release = budget.hold(heldBytes(encoded));
    downstream.write({
      item: encoded,
      ack: () => {
        release();
        d.ack();
      },
    });
  };

  const health = (): Health => {
    if (stopping) return { ready: false, reason: "stopping" };
    const mqttHealth = input?.health() ?? { ready: false, reason: "mqtt not started" };
    // With a spool an uplink outage is absorbed: readiness shows only a full or failing spool.
    return firstUnhealthy(spool?.health() ?? sink.health(), mqttHealth);
  };

  // The health endpoint first, so that /readyz tells an orchestrator what the gateway is waiting for.
  const http = await startHttp({
    host: config.httpHost,
    port: config.httpPort,
    readiness: health,
    registry,
    beforeMetrics: () => {
      m.inflight.set(downstream.inFlight);
      m.heldBytes.set(budget.held);
      spool?.updateMetrics(sink.connected && sink.health().ready);
      m.backlog.set(sink.backlog);
      m.mqttConnected.set(input?.connected ? 1 : 0);
      m.amqpConnected.set(sink.connected ? 1 : 0);
      m.amqpBlocked.set(sink.blocked ? 1 : 0);
    },
  });
  const abandon = async () => {
    await input?.stop();
    await spool?.stop();
    await sink.stop();
    await http.close();
  };
  let mqttTls: TlsMaterial = {};
  const onAbort = () => void sink.stop();
  signal?.addEventListener("abort", onAbort, { once: true });
  try {
    // With a spool the gateway takes readings while RabbitMQ is unreachable: the AMQP sink connects in the background.
    if (spool) sink.start().catch((err: Error) => log.warn({ err: err.message }, "amqp sink not started"));
    else await sink.start();
    if (signal?.aborted) throw new Error("start abandoned: the service was told to stop");
    mqttTls = readTls({
      caFile: config.mqttCaFile,
      certFile: config.mqttCertFile,
      keyFile: config.mqttKeyFile,
    });
    mqtt = input = await startMqttInput(
      {
        url: config.mqttUrl,
        username: config.mqttUsername,
        password: config.mqttPassword,
        tls: mqttTls,
        clientId: `telemetry-gateway-${config.gatewayId}`,
        topic: `${config.topicPrefix}/+/+`,
        extraTopics: sparkplugFilters(sparkplugGroups),
        shareGroup: config.shareGroup,
        receiveMaximum: config.inflight,
        budget,
        keepaliveSeconds: config.keepaliveSeconds,
        sessionExpirySeconds: config.sessionExpirySeconds,
        log,
      },
      onMessage,
    );
  } catch (err) {
    await abandon();
    throw err;
  } finally {
    signal?.removeEventListener("abort", onAbort);
  }
  watchSession(mqtt, log, m);
  const drops = watchBrokerDrops({
    url: config.mqttUrl,
    username: config.mqttUsername,
    password: config.mqttPassword,
    tls: mqttTls,
    clientId: `telemetry-gateway-${config.gatewayId}-sys`,
    log,
    onDropped: (n) => m.brokerDropped.inc(n),
  });
  log.info(
    {
      topic: `${config.topicPrefix}/+/+`,
      sparkplugGroups,
      queue: config.queue,
      inflight: config.inflight,
      inflightBytes: config.inflightBytes,
      httpPort: http.port,
    },
    "gateway started",
  );

  return running({ httpPort: http.port, registry, health }, async () => {
    stopping = true;
    const deadline = Date.now() + config.drainTimeoutMs;
    while (downstream.inFlight > 0 && Date.now() < deadline) await sleep(DRAIN_POLL_MS);
    if (downstream.inFlight > 0) {
      log.warn(
        { inFlight: downstream.inFlight },
        "stopping with readings unconfirmed; the MQTT broker redelivers them",
      );
    }
    await drops.stop();
    await mqtt.stop();
    await spool?.stop();
    await sink.stop();
    formats.flush();
    await http.close();
    log.info("gateway stopped");
  });
}

/**
 * The broker's session is what keeps readings for the gateway while it is disconnected. A reconnect that finds no
 * session (CONNACK session present 0) after this process had one means the broker lost it (restarted without
 * persistence, lost its state in a kill, or MQTT_SESSION_EXPIRY passed): what sensors published meanwhile was
 * PUBACKed to them and dropped. The gateway cannot get it back; it says so (a warning, and
 * `telemetry_gateway_mqtt_sessions_lost_total`) instead of going on without a word. The first connection of a
 * process may find none: a new GATEWAY_ID, or a gateway down longer than the expiry; that is logged as information.
 */
function watchSession(mqtt: MqttInput, log: Logger, m: GatewayMetrics): void {
  let hadSession = false;
  mqtt.on("connected", ({ sessionPresent }) => {
    if (!sessionPresent && hadSession) {
      m.sessionsLost.inc();
      log.warn(
        "the MQTT broker had no session for this gateway on reconnect: readings published while it was " +
          "disconnected were not queued for it and are lost (broker restarted without persistence or lost its " +
          "state, or MQTT_SESSION_EXPIRY passed)",
      );
    } else if (!sessionPresent) {
      log.info("new MQTT session: the broker queues readings for this gateway from now on, not before");
    }
    hadSession = true;
  });
}
