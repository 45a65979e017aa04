import { describe, expect, it } from "vitest";
import type { Reading } from "../../schemas/index.js";
import { packReadings, unpackReadings } from "../../store/worker-batch.js";

const reading = (over: Partial<Reading>): Reading => ({
  device_id: "dev-1",
  sensor: "temp",
  ts: 1_733_600_000_000,
  value: 21.5,
  unit: "C",
  seq: 7,
  gateway_id: "gw-1",
  received_at: 1_733_600_000_123,
  quality: "good",
  tags: {},
  ...over,
});

/** What travels through postMessage: a structured clone of the packed batch. */
const travel = (readings: readonly Reading[]) => {
  const { packed, transfer } = packReadings(readings);
  return unpackReadings(structuredClone(packed, { transfer }));
};

describe("packed readings for the SQLite worker", () => {
  it("arrive as they left: nulls, extreme numbers, qualities, tags, shared and distinct strings", () => {
    const readings = [
      reading({}),
      reading({ unit: null, seq: null, value: -0, quality: "bad", tags: { site: "north", fw: "2.1.0" } }),
      reading({
        device_id: "dev-2",
        ts: Number.MAX_SAFE_INTEGER,
        seq: -Number.MAX_SAFE_INTEGER,
        value: 1e308,
      }),
      reading({ sensor: "hum", value: Number.MIN_VALUE, quality: "uncertain", gateway_id: "gw-2" }),
      reading({ unit: "", tags: { "": "" } }),
    ];
    const back = travel(readings);
    expect(back).toEqual(readings);
    expect(Object.is(back[1]!.value, -0)).toBe(true);
  });

  it("keeps a reading without quality without one, and gives tags {} to readings without tags", () => {
    const { quality: _, tags: __, ...bare } = reading({});
    const back = travel([bare]);
    expect(back[0]).not.toHaveProperty("quality");
    expect(back[0]!.tags).toEqual({});
  });

  it("carries each distinct string once, and no tags array when no reading has tags", () => {
    const readings = Array.from({ length: 500 }, (_, i) => reading({ device_id: `dev-${i % 20}`, ts: i }));
    const { packed } = packReadings(readings);
    expect(packed.strings).toHaveLength(20 + 4);
    expect(packed.tags).toBeUndefined();
    expect(travel(readings)).toEqual(readings);
  });

  it("hands its buffers over: they are empty on the sender's side after the transfer", () => {
    const { packed, transfer } = packReadings([reading({})]);
    structuredClone(packed, { transfer });
    expect(packed.numbers.length).toBe(0);
  });

  it("packs an empty batch", () => {
    expect(travel([])).toEqual([]);
  });
});
