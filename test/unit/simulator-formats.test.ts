import sparkplugPayload from "sparkplug-payload";
import { describe, expect, it } from "vitest";
import { parseSenml } from "../../gateway/senml.js";
import { SparkplugDecoder } from "../../gateway/sparkplug.js";
import { encodeRebirthRequest } from "../../gateway/sparkplug-payload.js";
import { FormatShaper } from "../../simulators/formats.js";
import type { SimMessage } from "../../simulators/model.js";
import type { SimReading } from "../../simulators/sensors.js";

const tahu = sparkplugPayload.get("spBv1.0");
if (!tahu) throw new Error("sparkplug-payload has no spBv1.0 codec");
const T0 = Date.UTC(2026, 0, 1);
const NOW = T0 + 60_000;

const reading = (sensor: string, i: number, unit: string | null): SimReading => ({
  deviceId: "sim-0001",
  sensor,
  ts: T0 + i * 250,
  value: 20 + i / 8,
  unit,
  seq: i,
});
const message = (readings: SimReading[]): SimMessage => ({
  topic: `sensors/sim-0001/${readings[0]?.sensor}`,
  payload: Buffer.from("[]"),
  kind: "reading",
  readings,
});
const stored = (readings: readonly { sensor: string; ts: number; value: number; unit: string | null }[]) =>
  readings.map((r) => [r.sensor, r.ts, r.value, r.unit]);

describe("the simulator publishes SenML and Sparkplug B that the gateway reads back as the same readings", () => {
  it("a batch becomes one SenML pack of the same readings", () => {
    const shaper = new FormatShaper("senml", "sensors", "g", ["temperature"]);
    const batch = [0, 1, 2].map((i) => reading("temperature", i, "°C"));
    const [out] = shaper.shape(message(batch));
    expect(out?.topic).toBe("sensors/sim-0001/senml");
    const parsed = parseSenml("sim-0001", out?.payload ?? Buffer.alloc(0), {
      gatewayId: "gw",
      receivedAt: NOW,
    });
    if (!parsed.ok) throw new Error(parsed.reason);
    expect(stored(parsed.readings)).toEqual(batch.map((r) => [r.sensor, r.ts, r.value, r.unit]));
  });

  it("an edge node births first, then sends data by alias; a rebirth request brings a new birth", () => {
    const shaper = new FormatShaper("sparkplug", "sensors", "g", ["temperature", "humidity"]);
    const decoder = new SparkplugDecoder("gw");
    const first = shaper.shape(message([reading("humidity", 0, "%")]));
    expect(first.map((m) => m.topic)).toEqual(["spBv1.0/g/NBIRTH/sim-0001", "spBv1.0/g/NDATA/sim-0001"]);
    const data = tahu.decodePayload(first[1]?.payload ?? Buffer.alloc(0));
    expect(data.metrics?.[0]).toMatchObject({ alias: expect.anything(), value: 20 });
    expect(data.metrics?.[0]?.name).toBeFalsy();
    const results = first.map((m) => decoder.decode(m.topic, m.payload, NOW));
    expect(results.map((r) => r.reason)).toEqual([undefined, undefined]);
    expect(stored(results[1]?.readings ?? [])).toEqual([["humidity", T0, 20, "%"]]);

    expect(shaper.shape(message([reading("temperature", 1, "°C")])).map((m) => m.topic)).toEqual([
      "spBv1.0/g/NDATA/sim-0001",
    ]);
    expect(shaper.command("spBv1.0/g/NCMD/sim-0001", encodeRebirthRequest(NOW))).toBe(true);
    expect(shaper.shape(message([reading("temperature", 2, "°C")])).map((m) => m.topic)).toEqual([
      "spBv1.0/g/NBIRTH/sim-0001",
      "spBv1.0/g/NDATA/sim-0001",
    ]);
  });
});
