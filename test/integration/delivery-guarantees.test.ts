/**
 * The shared delivery-guarantee suite (test/helpers/delivery-suite.ts) against every input and sink: one line per
 * implementation. A part that breaks or fills its broker does so on a private broker of its describe (at most one).
 */
import { describe } from "vitest";
import {
  amqpInputAdapter,
  amqpSinkAdapter,
  mqttInputAdapter,
  spoolInputAdapter,
  spoolSinkAdapter,
  sqliteStoreAdapter,
} from "../helpers/delivery-adapters.js";
import { deliverySuite } from "../helpers/delivery-suite.js";

describe("delivery guarantees: MQTT input", () => deliverySuite(mqttInputAdapter()));
describe("delivery guarantees: AMQP sink", () => deliverySuite(amqpSinkAdapter()));
describe("delivery guarantees: AMQP input", () => deliverySuite(amqpInputAdapter()));
describe("delivery guarantees: SQLite store sink", () => deliverySuite(sqliteStoreAdapter()));
describe("delivery guarantees: spool sink", () => deliverySuite(spoolSinkAdapter()));
describe("delivery guarantees: spool input", () => deliverySuite(spoolInputAdapter()));
