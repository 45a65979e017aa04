import { Counter, Gauge, type Registry } from "prom-client";

/** The spool's Prometheus metrics, in the gateway's registry (names are what operators alert on: keep them stable). */
export function spoolMetrics(registry: Registry) {
  const opts = { registers: [registry] };
  return {
    depthReadings: new Gauge({
      name: "telemetry_gateway_spool_depth_readings",
      help: "Readings (and refused payloads) in the spool not yet confirmed by RabbitMQ",
      ...opts,
    }),
    depthRecords: new Gauge({
      name: "telemetry_gateway_spool_depth_records",
      help: "Spool records (one per MQTT message) not yet confirmed by RabbitMQ",
      ...opts,
    }),
    depthBytes: new Gauge({
      name: "telemetry_gateway_spool_bytes",
      help: "Bytes of spool segment files on disk (bounded by SPOOL_MAX_BYTES)",
      ...opts,
    }),
    oldestAge: new Gauge({
      name: "telemetry_gateway_spool_oldest_age_seconds",
      help: "Age of the oldest segment still holding unconfirmed records (0 when empty)",
      ...opts,
    }),
    drained: new Counter({
      name: "telemetry_gateway_spool_drained_total",
      help: "Readings taken out of the spool once RabbitMQ confirmed them; rate() is the drain rate",
      labelNames: ["from"] as const,
      ...opts,
    }),
    dropped: new Counter({
      name: "telemetry_gateway_spool_dropped_total",
      help: "Readings dropped unsent, by cause: drop-oldest, drop-newest (SPOOL_FULL), max-age (SPOOL_MAX_AGE), corrupt",
      labelNames: ["reason"] as const,
      ...opts,
    }),
    full: new Gauge({
      name: "telemetry_gateway_spool_full",
      help: "1 while the spool is full under SPOOL_FULL=block (PUBACKs held)",
      ...opts,
    }),
    uplinkUp: new Gauge({
      name: "telemetry_gateway_uplink_up",
      help: "1 while RabbitMQ is connected and taking publishes; 0 while the spool absorbs an outage",
      ...opts,
    }),
  };
}

export type SpoolMetrics = ReturnType<typeof spoolMetrics>;
