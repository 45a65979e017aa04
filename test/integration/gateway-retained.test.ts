import mqtt from "mqtt";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import {
  cleanup,
  readRows,
  type Service,
  startService,
  type TestNames,
  testNames,
  untilReady,
} from "../helpers/services.js";

const TS0 = Date.UTC(2026, 0, 1);

describe("a retained reading (MQTT 5 Retain Handling 1)", () => {
  let names: TestNames;
  let processor: Service;
  let publisher: mqtt.MqttClient;
  const retainedTopic = () => `${names.topicPrefix}/dev-retained/temperature`;

  beforeAll(async () => {
    names = testNames("retained");
    processor = await startService("processor", names.env);
    await untilReady(processor);
    publisher = await mqtt.connectAsync(names.mqttUrl, { clean: true, reconnectPeriod: 0 });
  });

  afterAll(async () => {
    // An empty retained payload clears the broker's retained message; no gateway is subscribed any more.
    await publisher?.publishAsync(retainedTopic(), "", { qos: 1, retain: true });
    await publisher?.endAsync();
    await processor?.stop();
    await cleanup(names);
  });

  it("is stored once, at the gateway's first subscription, and not again when it restarts with its session", async () => {
    // Published before the gateway ever subscribed: only the retained copy can bring it, with no ts of its own.
    await publisher.publishAsync(retainedTopic(), JSON.stringify({ value: 7 }), { qos: 1, retain: true });
    const marker = `${names.topicPrefix}/dev-marker/count`;
    for (let run = 0; run < 3; run++) {
      const gateway = await startService("gateway", names.env);
      try {
        await untilReady(gateway);
        // The broker sends retained messages right after SUBACK, before anything published later: once this
        // run's marker is stored, the gateway has had every retained message this subscription brings.
        await publisher.publishAsync(marker, JSON.stringify({ value: run, ts: TS0 + run }), { qos: 1 });
        await vi.waitFor(
          () =>
            expect(readRows(names.dbPath).filter((r) => r.device_id === "dev-marker")).toHaveLength(run + 1),
          { timeout: 15_000 },
        );
      } finally {
        expect(await gateway.stop()).toBe(0);
      }
    }
    const retained = readRows(names.dbPath).filter((r) => r.device_id === "dev-retained");
    expect(retained.map((r) => r.value)).toEqual([7]);
  });
});
