import { Counter, Gauge, Histogram, type Registry } from "prom-client";

/** The gateway's Prometheus metrics (names are part of what operators alert on: keep them stable). */
export function gatewayMetrics(registry: Registry) {
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
    notStored: new Counter({
      name: "telemetry_gateway_values_not_stored_total",
      help:
        "Values that are not readings, counted and not stored: Sparkplug String, DateTime, Bytes, DataSet, " +
        "Template or null metrics; SenML vs, vd or sum-only records",
      labelNames: ["format"] as const,
      ...opts,
    }),
    sparkplugSeqGaps: new Counter({
      name: "telemetry_gateway_sparkplug_seq_gaps_total",
      help: "Sparkplug messages whose seq did not follow the node's previous one (messages lost on the way)",
      ...opts,
    }),
    sparkplugRebirths: new Counter({
      name: "telemetry_gateway_sparkplug_rebirth_requests_total",
      help: "Rebirth requests published to Sparkplug edge nodes (NCMD Node Control/Rebirth)",
      ...opts,
    }),
    inflight: new Gauge({
      name: "telemetry_gateway_inflight_messages",
      help: "MQTT messages taken in and not yet confirmed downstream",
      ...opts,
    }),
    heldBytes: new Gauge({
      name: "telemetry_gateway_held_bytes",
      help:
        "Bytes the gateway holds in memory, as GATEWAY_INFLIGHT_BYTES counts them: MQTT messages not yet PUBACKed, " +
        "readings awaiting RabbitMQ's confirm, the spool's drain",
      ...opts,
    }),
    backlog: new Gauge({
      name: "telemetry_gateway_publish_backlog",
      help: "AMQP messages waiting to be (re)published (RabbitMQ down, blocked, full, or returning them)",
      ...opts,
    }),
    mqttConnected: new Gauge({ name: "telemetry_gateway_mqtt_connected", help: "1 when connected", ...opts }),
    sessionsLost: new Counter({
      name: "telemetry_gateway_mqtt_sessions_lost_total",
      help:
        "Reconnects on which the MQTT broker had no session for this gateway: what was published while it was " +
        "disconnected was not queued for it",
      ...opts,
    }),
    brokerDropped: new Counter({
      name: "telemetry_gateway_mqtt_broker_dropped_total",
      help:
        "Messages the MQTT broker reported dropped ($SYS/broker/publish/messages/dropped, Mosquitto) while this " +
        "gateway watched: acknowledged to their publishers, then lost to a full session queue",
      ...opts,
    }),
    amqpConnected: new Gauge({ name: "telemetry_gateway_amqp_connected", help: "1 when connected", ...opts }),
    amqpBlocked: new Gauge({
      name: "telemetry_gateway_amqp_blocked",
      help: "1 while RabbitMQ blocks publishers (resource alarm)",
      ...opts,
    }),
    refused: new Counter({
      name: "telemetry_gateway_publishes_refused_total",
      help: "Publishes RabbitMQ nacked (queue full) or returned (queue missing); each is published again",
      labelNames: ["why"] as const,
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

export type GatewayMetrics = ReturnType<typeof gatewayMetrics>;
