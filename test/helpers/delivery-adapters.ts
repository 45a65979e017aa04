/**
 * Adapters of the shared delivery-guarantee suite (delivery-suite.ts), one per implementation, each in
 * test/helpers/delivery/ by connector: how to start it, how to put items upstream and see them downstream, how to
 * make the downstream refuse, and how to break and heal its broker. A new implementation (the PostgreSQL store)
 * adds an adapter there, one line here and one in test/integration/delivery-guarantees.test.ts.
 */
export { amqpInputAdapter } from "./delivery/amqp-input.js";
export { amqpSinkAdapter } from "./delivery/amqp-sink.js";
export { mqttInputAdapter } from "./delivery/mqtt-input.js";
export { spoolInputAdapter, spoolSinkAdapter } from "./delivery/spool.js";
export { sqliteStoreAdapter } from "./delivery/store-sink.js";
