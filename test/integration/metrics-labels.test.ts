import mqtt from "mqtt";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import {
  cleanup,
  countRows,
  httpGet,
  type Service,
  startPipeline,
  type TestNames,
  testNames,
} from "../helpers/services.js";

const DEVICES = ["lbl-dev-alpha", "lbl-dev-beta", "lbl-dev-gamma"];
const SENSORS = ["lbl-sensor-temp", "lbl-sensor-hum"];

/** Every label value of every sample in a Prometheus text exposition. */
function labelValues(exposition: string): string[] {
  const values: string[] = [];
  for (const line of exposition.split("\n")) {
    if (line.startsWith("#")) continue;
    const labels = /^[^{\s]+\{(.*)\}\s/.exec(line)?.[1];
    if (!labels) continue;
    for (const m of labels.matchAll(/[a-zA-Z_][a-zA-Z0-9_]*="((?:[^"\\]|\\.)*)"/g)) values.push(m[1]!);
  }
  return values;
}

describe("metrics of a fleet: no label per device or sensor", () => {
  let names: TestNames;
  const services: Service[] = [];

  beforeAll(() => {
    names = testNames("metric-labels");
  });

  afterAll(async () => {
    await Promise.all(services.map((s) => s.stop("SIGKILL")));
    await cleanup(names);
  });

  it("after good and bad readings from several devices and sensors, no label value of gateway or processor names one", async () => {
    const { gateway, processor } = await startPipeline(names);
    services.push(gateway, processor);

    const client = await mqtt.connectAsync(names.mqttUrl, { clean: true, reconnectPeriod: 0 });
    const sent: Promise<unknown>[] = [];
    for (const device of DEVICES) {
      for (const sensor of SENSORS) {
        const topic = `${names.topicPrefix}/${device}/${sensor}`;
        sent.push(
          client.publishAsync(topic, JSON.stringify({ value: 1, ts: 1_700_000_000_000 }), { qos: 1 }),
        );
        // Rejected readings too: their counters carry a reason label.
        sent.push(client.publishAsync(topic, JSON.stringify({ value: "high" }), { qos: 1 }));
      }
    }
    await Promise.all(sent);
    await client.endAsync();
    await vi.waitFor(() => expect(countRows(names.dbPath)).toBe(DEVICES.length * SENSORS.length), {
      timeout: 15_000,
    });

    const ids = new Set([...DEVICES, ...SENSORS]);
    for (const service of [gateway, processor]) {
      const { body } = await httpGet(service.httpPort, "/metrics");
      const values = labelValues(body);
      expect(values.length).toBeGreaterThan(0); // the parse found labelled samples at all
      expect(values.filter((v) => [...ids].some((id) => v.includes(id)))).toEqual([]);
    }
  });
});
