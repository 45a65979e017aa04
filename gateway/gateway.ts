import { Counter, Gauge, Histogram, Registry } from "prom-client";
import type { QueueType } from "../amqp/topology.js";
import { sleep } from "../common/backoff.js";
import { type HttpEndpoint, type Readiness, startHttp } from "../common/http.js";
import type { Logger } from "../common/log.js";
import { ProgressWatch } from "../common/progress-watch.js";
import { RateLimitedLog } from "../common/rate-limited-log.js";
import { createMqttInput, type IncomingMessage } from "../mqtt/input.js";
import { SchemaRegistry } from "../schemas/index.js";
import { AmqpOutput, type Envelope } from "./amqp-output.js";
import { parsePayload } from "./validate.js";

/** Everything the gateway needs, parsed and checked by the CLI (or built by a test). */
export interface GatewayConfig {
  readonly mqttUrl: string;
  readonly amqpUrl: string;
  readonly queue: string;
  readonly queueType: QueueType;
  readonly topicPrefix: string;
  readonly gatewayId: string;
  /** MQTT messages in flight at once (the Receive Maximum the gateway asks the broker for). */
  readonly inflight: number;
  readonly keepaliveSeconds: number;
  readonly sessionExpirySeconds: number;
  /** How long SIGTERM waits for in-flight confirms before closing anyway. */
  readonly drainTimeoutMs: number;
  /** Readings waiting with none confirmed for this long make /readyz report a stall. */
  readonly stallTimeoutMs: number;
  readonly httpHost: string;
  readonly httpPort: number;
}

export interface RunningGateway {
  /** Port of the health and metrics endpoint. */
  readonly httpPort: number;
  readonly registry: Registry;
  readiness(): Readiness;
  /**
   * Stops taking MQTT messages, waits up to `drainTimeoutMs` for what is in flight to be confirmed and
   * PUBACKed, then disconnects (keeping the MQTT session) and closes. What was not PUBACKed is redelivered by
   * the MQTT broker to the next session with the same GATEWAY_ID.
   */
  stop(): Promise<void>;
}

function createMetrics(registry: Registry) {
  const opts = { registers: [registry] };
  return {
    received: new Counter({
      name: "telemetry_gateway_messages_received_total",
      help: "MQTT messages received",
      ...opts,
    }),
    published: new Counter({
      name: "telemetry_gateway_readings_published_total",
      help: "Readings confirmed by RabbitMQ on <QUEUE>",
      ...opts,
    }),
    rejected: new Counter({
      name: "telemetry_gateway_rejected_total",
      help: "MQTT messages refused as invalid and confirmed on <QUEUE>.rejected",
      ...opts,
    }),
    inflight: new Gauge({
      name: "telemetry_gateway_inflight_messages",
      help: "MQTT messages taken in and not yet confirmed downstream",
      ...opts,
    }),
    backlog: new Gauge({
      name: "telemetry_gateway_publish_backlog",
      help: "AMQP messages waiting for a channel (RabbitMQ down, blocked or full)",
      ...opts,
    }),
    mqttConnected: new Gauge({ name: "telemetry_gateway_mqtt_connected", help: "1 when connected", ...opts }),
    amqpConnected: new Gauge({ name: "telemetry_gateway_amqp_connected", help: "1 when connected", ...opts }),
    amqpBlocked: new Gauge({
      name: "telemetry_gateway_amqp_blocked",
      help: "1 while RabbitMQ blocks publishers (resource alarm)",
      ...opts,
    }),
    latency: new Histogram({
      name: "telemetry_gateway_confirm_latency_seconds",
      help: "From MQTT receive to RabbitMQ confirm",
      buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5],
      ...opts,
    }),
  };
}

/** Starts the gateway: health endpoint, then RabbitMQ (declares the queues), then the MQTT subscription. */
export async function startGateway(config: GatewayConfig, log: Logger): Promise<RunningGateway> {
  const schemas = SchemaRegistry.load();
  const registry = new Registry();
  const m = createMetrics(registry);
  let blocked: string | undefined;
  let stopping = false;
  const progress = new ProgressWatch(config.stallTimeoutMs);

  const output = new AmqpOutput({
    url: config.amqpUrl,
    queue: config.queue,
    queueType: config.queueType,
    gatewayId: config.gatewayId,
    registry: schemas,
    log,
    onConfirm: (e: Envelope) => {
      progress.touch();
      if (e.kind === "rejected") m.rejected.inc();
      else {
        m.published.inc(e.readings.length);
        m.latency.observe((Date.now() - e.readings[0]!.received_at) / 1000);
      }
    },
  });
  output.session.on("blocked", (reason: string) => {
    blocked = reason;
    log.warn({ reason }, "rabbitmq blocked publishers; holding PUBACKs so the MQTT broker buffers");
  });
  output.session.on("unblocked", () => {
    blocked = undefined;
    log.info("rabbitmq unblocked publishers");
  });

  const input = createMqttInput({
    url: config.mqttUrl,
    clientId: `telemetry-gateway-${config.gatewayId}`,
    topic: `${config.topicPrefix}/+/+`,
    receiveMaximum: config.inflight,
    keepaliveSeconds: config.keepaliveSeconds,
    sessionExpirySeconds: config.sessionExpirySeconds,
    reconnectMinMs: 200,
    reconnectMaxMs: 15_000,
    log,
  });

  const readiness = (): Readiness => {
    if (stopping) return { ready: false, reason: "stopping" };
    if (!output.session.connected) return { ready: false, reason: "rabbitmq not connected" };
    if (blocked) return { ready: false, reason: `rabbitmq blocked publishers: ${blocked}` };
    if (!input.connected) return { ready: false, reason: "mqtt not connected" };
    const stalled = progress.stalledFor(output.inFlight > 0);
    if (stalled !== undefined) {
      return {
        ready: false,
        reason: `stalled: ${output.inFlight} messages waiting, none confirmed for ${Math.round(stalled / 1000)} s`,
      };
    }
    return { ready: true };
  };
  const collect = () => {
    m.inflight.set(output.inFlight);
    m.backlog.set(output.backlog);
    m.mqttConnected.set(input.connected ? 1 : 0);
    m.amqpConnected.set(output.session.connected ? 1 : 0);
    m.amqpBlocked.set(blocked ? 1 : 0);
  };
  const http: HttpEndpoint = await startHttp({
    host: config.httpHost,
    port: config.httpPort,
    readiness,
    registry,
    beforeMetrics: collect,
  });

  const rejectLog = new RateLimitedLog(log, "rejected invalid input");
  const onMessage = (msg: IncomingMessage) => {
    if (stopping) return; // not acknowledged: the broker redelivers it to the next session
    m.received.inc();
    if (output.inFlight === 0) progress.touch();
    const parsed = parsePayload(msg.topic, msg.payload, {
      topicPrefix: config.topicPrefix,
      gatewayId: config.gatewayId,
      receivedAt: msg.receivedAt,
    });
    if (parsed.ok) {
      output.write({ kind: "readings", readings: parsed.readings }, msg.ack);
    } else {
      rejectLog.warn({ topic: msg.topic, reason: parsed.reason, bytes: msg.payload.length });
      output.write(
        {
          kind: "rejected",
          topic: msg.topic,
          payload: msg.payload,
          reason: parsed.reason,
          receivedAt: msg.receivedAt,
        },
        msg.ack,
      );
    }
  };

  try {
    await output.start();
    await input.start(onMessage);
  } catch (err) {
    await input.stop().catch(() => undefined);
    await output.close();
    await http.close();
    throw err;
  }
  log.info(
    {
      topic: `${config.topicPrefix}/+/+`,
      queue: config.queue,
      inflight: config.inflight,
      httpPort: http.port,
    },
    "gateway started",
  );

  return {
    httpPort: http.port,
    registry,
    readiness,
    async stop() {
      stopping = true;
      const deadline = Date.now() + config.drainTimeoutMs;
      while (output.inFlight > 0 && Date.now() < deadline) await sleep(20);
      if (output.inFlight > 0) {
        log.warn(
          { inFlight: output.inFlight },
          "stopping with readings unconfirmed; the MQTT broker redelivers them",
        );
      }
      await input.stop();
      await output.close();
      rejectLog.flush();
      await http.close();
      log.info("gateway stopped");
    },
  };
}
