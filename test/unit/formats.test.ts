import { Registry } from "prom-client";
import { describe, expect, it } from "vitest";
import { silentLogger } from "../../common/log.js";
import { validator } from "../../gateway/formats.js";
import { gatewayMetrics } from "../../gateway/metrics.js";
import { MAX_PAYLOAD_BYTES } from "../../gateway/validate.js";

/** The gateway's validate step for every format, without brokers: the size rule holds whatever the format. */
describe("the gateway's formats", () => {
  const make = () =>
    validator({
      topicPrefix: "sensors",
      gatewayId: "gw-test",
      sparkplug: true,
      metrics: gatewayMetrics(new Registry()),
      log: silentLogger(),
      publish: () => true,
    });
  const message = (topic: string, payload: Buffer) => ({
    topic,
    payload,
    qos: 1 as const,
    receivedAt: Date.now(),
  });
  const oversized = Buffer.alloc(MAX_PAYLOAD_BYTES + 1, 0x20);

  it.each([
    ["our JSON", "sensors/dev-1/temperature"],
    ["SenML", "sensors/dev-1/senml"],
    ["Sparkplug B", "spBv1.0/plant/NDATA/node-1"],
  ])("refuses a payload over 256 KiB in %s, naming the limit", (_format, topic) => {
    const envelope = make().validate(message(topic, oversized));
    expect(envelope).toMatchObject({
      kind: "rejected",
      reason: `payload of ${MAX_PAYLOAD_BYTES + 1} bytes is over the ${MAX_PAYLOAD_BYTES} byte limit`,
    });
  });
});
