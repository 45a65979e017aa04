import { Counter, Gauge, Histogram, type Registry } from "prom-client";

/** The processor's Prometheus metrics (names are part of what operators alert on: keep them stable). */
export function processorMetrics(registry: Registry) {
  const opts = { registers: [registry] };
  return {
    deliveries: new Counter({
      name: "telemetry_processor_deliveries_total",
      help: "Messages received from <QUEUE>",
      ...opts,
    }),
    readingsReceived: new Counter({
      name: "telemetry_processor_readings_received_total",
      help: "Readings decoded from the messages received (a batch message holds many)",
      ...opts,
    }),
    stored: new Counter({
      name: "telemetry_processor_readings_stored_total",
      help: "Rows committed to the store",
      ...opts,
    }),
    duplicates: new Counter({
      name: "telemetry_processor_duplicates_total",
      help: "Readings already stored with the same measurement (redelivered or resent), not written again",
      ...opts,
    }),
    conflicts: new Counter({
      name: "telemetry_processor_conflicts_total",
      help: "Readings whose key is stored with another measurement: the stored one is kept, this one goes to <QUEUE>.dead",
      ...opts,
    }),
    expired: new Counter({
      name: "telemetry_processor_expired_total",
      help: "Readings older than what retention already deleted (below the readings horizon): not stored, acked",
      ...opts,
    }),
    dead: new Counter({
      name: "telemetry_processor_dead_lettered_total",
      help: "Messages sent to <QUEUE>.dead, by failure kind",
      labelNames: ["kind"] as const,
      ...opts,
    }),
    storeErrors: new Counter({
      name: "telemetry_processor_store_errors_total",
      help: "Batches that failed to commit (retried; nothing acked)",
      ...opts,
    }),
    handedBack: new Counter({
      name: "telemetry_processor_handed_back_total",
      help: "Messages copied back to <QUEUE> (then acked) while the store refused writes, so that a long outage uses up none of the queue's delivery limit",
      ...opts,
    }),
    held: new Gauge({
      name: "telemetry_processor_inflight_deliveries",
      help: "Deliveries received and not yet acked",
      ...opts,
    }),
    heldReadings: new Gauge({
      name: "telemetry_processor_inflight_readings",
      help: "Readings decoded and not yet committed (a batch message holds many)",
      ...opts,
    }),
    connected: new Gauge({ name: "telemetry_processor_amqp_connected", help: "1 when connected", ...opts }),
    queueReady: new Gauge({
      name: "telemetry_processor_queue_ready_messages",
      help: "Messages ready on <QUEUE> at the last check (the backlog)",
      ...opts,
    }),
    lag: new Gauge({
      name: "telemetry_processor_lag_seconds",
      help: "Age (now - gateway receive time) of the newest reading committed",
      ...opts,
    }),
    batchSize: new Histogram({
      name: "telemetry_processor_batch_size",
      help: "Deliveries per committed batch",
      buckets: [1, 10, 50, 100, 250, 500, 1000, 2500, 5000],
      ...opts,
    }),
    commitSeconds: new Histogram({
      name: "telemetry_processor_commit_seconds",
      help: "Time to write and commit one batch",
      buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1],
      ...opts,
    }),
    latency: new Histogram({
      name: "telemetry_processor_latency_seconds",
      help: "From gateway receive to commit, per reading",
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5, 30],
      ...opts,
    }),
  };
}

export type ProcessorMetrics = ReturnType<typeof processorMetrics>;
