import Long from "long";
import sparkplugPayload from "sparkplug-payload";
import { describe, expect, it } from "vitest";
import { REBIRTH_INTERVAL_MS, SparkplugDecoder, sparkplugFilters } from "../../gateway/sparkplug.js";
import { encodeRebirthRequest } from "../../gateway/sparkplug-payload.js";

// Eclipse Tahu's encoder, independent of ours: what an edge node would send.
const tahu = sparkplugPayload.get("spBv1.0");
if (!tahu) throw new Error("sparkplug-payload has no spBv1.0 codec");
type Payload = Parameters<typeof tahu.encodePayload>[0];
type Metric = NonNullable<Payload["metrics"]>[number];

const NOW = Date.UTC(2026, 10, 25, 12, 0, 0);
const T0 = NOW - 60_000;
const encode = (p: Payload) => Buffer.from(tahu.encodePayload(p));
const topic = (type: string, device?: string) =>
  `spBv1.0/plant-1/${type}/edge-7${device ? `/${device}` : ""}`;
const unit = (u: string) => ({ engUnit: { type: "String" as const, value: u } });

function birth(seq: number): Buffer {
  const metrics: Metric[] = [
    { name: "bdSeq", type: "UInt64", value: 0 },
    { name: "Inputs/Temperature", alias: 1, type: "Float", value: 21.5, properties: unit("°C") },
    { name: "Outputs/Running", alias: 2, type: "Boolean", value: true },
    { name: "Label", alias: 3, type: "String", value: "line A" },
  ];
  return encode({ timestamp: T0, seq, metrics });
}

describe("Sparkplug B payloads from Tahu's encoder become readings", () => {
  it("a birth's numeric metrics are readings named, timed and united as the node said; strings are counted", () => {
    const d = new SparkplugDecoder("gw-1");
    const r = d.decode(topic("NBIRTH"), birth(0), NOW);
    expect(r.reason).toBeUndefined();
    expect(r.notStored).toBe(1);
    expect(r.readings.map((x) => [x.device_id, x.sensor, x.ts, x.value, x.unit, x.tags])).toEqual([
      ["edge-7", "bdSeq", T0, 0, null, { sparkplug_group: "plant-1" }],
      ["edge-7", "Inputs_Temperature", T0, 21.5, "°C", { sparkplug_group: "plant-1" }],
      ["edge-7", "Outputs_Running", T0, 1, null, { sparkplug_group: "plant-1" }],
    ]);
  });

  it("data by alias is resolved with the birth's names and units, at the metric's own timestamp", () => {
    const d = new SparkplugDecoder("gw-1");
    d.decode(topic("NBIRTH"), birth(0), NOW);
    const r = d.decode(
      topic("NDATA"),
      encode({
        timestamp: T0 + 5,
        seq: 1,
        metrics: [
          { alias: 1, timestamp: T0 + 1, type: "Float", value: 22.25 },
          { alias: 2, type: "Boolean", value: false },
        ],
      }),
      NOW,
    );
    expect(r.rebirthTopic).toBeUndefined();
    expect(r.readings.map((x) => [x.sensor, x.ts, x.value, x.unit])).toEqual([
      ["Inputs_Temperature", T0 + 1, 22.25, "°C"],
      ["Outputs_Running", T0 + 5, 0, null],
    ]);
  });

  it("every numeric datatype keeps its value and sign", () => {
    const d = new SparkplugDecoder("gw-1");
    const metrics: Metric[] = [
      { name: "i8", type: "Int8", value: -5 },
      { name: "i16", type: "Int16", value: -300 },
      { name: "i32", type: "Int32", value: -70_000 },
      { name: "i64", type: "Int64", value: Long.fromNumber(-5_000_000_000) },
      { name: "u8", type: "UInt8", value: 250 },
      { name: "u16", type: "UInt16", value: 65_000 },
      { name: "u32", type: "UInt32", value: 4_000_000_000 },
      { name: "u64", type: "UInt64", value: Long.fromNumber(9_000_000_000, true) },
      { name: "f", type: "Float", value: 0.5 },
      { name: "d", type: "Double", value: 1.1 },
      { name: "dt", type: "DateTime", value: Long.fromNumber(T0, true) },
      { name: "b", type: "Bytes", value: new Uint8Array([1, 2]) },
      { name: "nothing", type: "Double", value: null, isNull: true },
    ];
    const r = d.decode(topic("NBIRTH"), encode({ timestamp: T0, seq: 0, metrics }), NOW);
    expect(Object.fromEntries(r.readings.map((x) => [x.sensor, x.value]))).toEqual({
      i8: -5,
      i16: -300,
      i32: -70_000,
      i64: -5_000_000_000,
      u8: 250,
      u16: 65_000,
      u32: 4_000_000_000,
      u64: 9_000_000_000,
      f: 0.5,
      d: 1.1,
    });
    expect(r.notStored).toBe(3);
  });

  it("device data is resolved with the device's birth and stored as <node>.<device>", () => {
    const d = new SparkplugDecoder("gw-1");
    d.decode(topic("NBIRTH"), birth(0), NOW);
    const dbirth = encode({
      timestamp: T0,
      seq: 1,
      metrics: [{ name: "Pressure", alias: 1, type: "Double", value: 1.5, properties: unit("bar") }],
    });
    expect(d.decode(topic("DBIRTH", "pump-2"), dbirth, NOW).readings[0]).toMatchObject({
      device_id: "edge-7.pump-2",
      sensor: "Pressure",
      unit: "bar",
    });
    const r = d.decode(
      topic("DDATA", "pump-2"),
      encode({ timestamp: T0 + 1, seq: 2, metrics: [{ alias: 1, type: "Double", value: 1.75 }] }),
      NOW,
    );
    expect(r.readings.map((x) => [x.device_id, x.sensor, x.value, x.unit])).toEqual([
      ["edge-7.pump-2", "Pressure", 1.75, "bar"],
    ]);
  });
});

describe("what the gateway cannot resolve is refused and asks the node for a rebirth", () => {
  const data = (seq: number, alias = 1) =>
    encode({ timestamp: T0, seq, metrics: [{ alias, type: "Float", value: 1 }] });

  it("data from a node whose birth the gateway never saw: refused, rebirth requested on the node's NCMD", () => {
    const d = new SparkplugDecoder("gw-1");
    const r = d.decode(topic("NDATA"), data(3), NOW);
    expect(r.reason).toMatch(/NBIRTH this gateway has not seen/);
    expect(r.rebirthTopic).toBe("spBv1.0/plant-1/NCMD/edge-7");
  });

  it("an alias no birth named: refused with the alias in the reason; requests are limited per node", () => {
    const d = new SparkplugDecoder("gw-1");
    d.decode(topic("NBIRTH"), birth(0), NOW);
    const first = d.decode(topic("NDATA"), data(1, 99), NOW);
    expect(first.reason).toMatch(/alias 99/);
    expect(first.rebirthTopic).toBe("spBv1.0/plant-1/NCMD/edge-7");
    expect(d.decode(topic("NDATA"), data(2, 99), NOW + 1).rebirthTopic).toBeUndefined();
    expect(d.decode(topic("NDATA"), data(3, 99), NOW + REBIRTH_INTERVAL_MS).rebirthTopic).toBeDefined();
  });

  it("a seq gap is reported and asks for a rebirth, and the data is still stored; 255 wraps to 0", () => {
    const d = new SparkplugDecoder("gw-1");
    d.decode(topic("NBIRTH"), birth(254), NOW);
    expect(d.decode(topic("NDATA"), data(255), NOW).seqGap).toBe(false);
    expect(d.decode(topic("NDATA"), data(0), NOW).seqGap).toBe(false);
    const gap = d.decode(topic("NDATA"), data(5), NOW);
    expect(gap.seqGap).toBe(true);
    expect(gap.readings).toHaveLength(1);
    expect(gap.rebirthTopic).toBe("spBv1.0/plant-1/NCMD/edge-7");
  });

  it("ids that break the id rule, and bytes that are not Sparkplug, are refused with the reason", () => {
    const d = new SparkplugDecoder("gw-1");
    expect(d.decode("spBv1.0/plant-1/NBIRTH/edge 7", birth(0), NOW).reason).toMatch(/ids must be/);
    expect(d.decode(topic("NDATA"), Buffer.from([0xff, 0xff, 0xff]), NOW).reason).toMatch(
      /not a Sparkplug B/,
    );
  });

  it("the rebirth request decodes, with Tahu, as the boolean Node Control/Rebirth = true", () => {
    const decoded = tahu.decodePayload(encodeRebirthRequest(NOW));
    expect(decoded.metrics).toMatchObject([{ name: "Node Control/Rebirth", type: "Boolean", value: true }]);
  });

  it("the gateway subscribes to births, data and deaths of each group", () => {
    expect(sparkplugFilters(["a"])).toEqual([
      "spBv1.0/a/NBIRTH/+",
      "spBv1.0/a/NDATA/+",
      "spBv1.0/a/NDEATH/+",
      "spBv1.0/a/DBIRTH/+/+",
      "spBv1.0/a/DDATA/+/+",
      "spBv1.0/a/DDEATH/+/+",
    ]);
  });
});

describe("the alias maps survive a restart through a snapshot", () => {
  const data = (seq: number) =>
    encode({ timestamp: T0, seq, metrics: [{ alias: 1, type: "Float", value: 3 }] });
  const restarted = (before: SparkplugDecoder) => {
    const after = new SparkplugDecoder("gw-1");
    after.restore(JSON.parse(JSON.stringify(before.snapshot())));
    return after;
  };

  it("a restored decoder resolves data by alias when its seq follows the saved one", () => {
    const before = new SparkplugDecoder("gw-1");
    before.decode(topic("NBIRTH"), birth(0), NOW);
    before.decode(topic("NDATA"), data(1), NOW);
    const r = restarted(before).decode(topic("NDATA"), data(2), NOW);
    expect(r.reason).toBeUndefined();
    expect(r.rebirthTopic).toBeUndefined();
    expect(r.readings.map((x) => [x.sensor, x.value, x.unit])).toEqual([["Inputs_Temperature", 3, "°C"]]);
  });

  it("a seq that does not follow the saved one (messages missed while away) refuses and asks for a rebirth", () => {
    const before = new SparkplugDecoder("gw-1");
    before.decode(topic("NBIRTH"), birth(0), NOW);
    const after = restarted(before);
    const r = after.decode(topic("NDATA"), data(7), NOW);
    expect(r.reason).toMatch(/seq does not follow/);
    expect(r.rebirthTopic).toBe("spBv1.0/plant-1/NCMD/edge-7");
    after.decode(topic("NBIRTH"), birth(0), NOW);
    expect(after.decode(topic("NDATA"), data(1), NOW).readings).toHaveLength(1);
  });

  it("a snapshot of another shape is ignored", () => {
    const d = new SparkplugDecoder("gw-1");
    d.restore({ version: 99, nodes: { "plant-1/edge-7": {} } });
    d.restore(null);
    expect(d.decode(topic("NDATA"), data(1), NOW).reason).toMatch(/NBIRTH this gateway has not seen/);
  });
});
