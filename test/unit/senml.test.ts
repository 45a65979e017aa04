import { describe, expect, it } from "vitest";
import { parseSenml } from "../../gateway/senml.js";
import { RFC8428 } from "../fixtures/senml-rfc8428.js";

const NOW = Date.UTC(2026, 10, 25, 12, 0, 0);

function parse(text: string) {
  return parseSenml("dev-1", Buffer.from(text), { gatewayId: "gw-1", receivedAt: NOW });
}

function rows(text: string) {
  const r = parse(text);
  if (!r.ok) throw new Error(r.reason);
  return r.readings.map((x) => [x.sensor, x.ts, x.value, x.unit]);
}

describe("RFC 8428's examples are read as the RFC reads them", () => {
  it("a single datapoint without a time is now", () => {
    expect(rows(RFC8428.singleDatapoint)).toEqual([["urn:dev:ow:10e2073a01080063", NOW, 23.1, "Cel"]]);
  });

  it("the base name prefixes each record's name", () => {
    expect(rows(RFC8428.multipleDatapoints)).toEqual([
      ["urn:dev:ow:10e2073a01080063:voltage", NOW, 120.1, "V"],
      ["urn:dev:ow:10e2073a01080063:current", NOW, 1.2, "A"],
    ]);
  });

  it("relative times are added to the base time; the base unit applies where a record has none", () => {
    const bt = 1_276_020_076_001;
    expect(rows(RFC8428.multipleMeasurements)).toEqual([
      ["urn:dev:ow:10e2073a0108006:voltage", bt, 120.1, "V"],
      ...[1.2, 1.3, 1.4, 1.5, 1.6].map((v, i) => [
        "urn:dev:ow:10e2073a0108006:current",
        bt - (5 - i) * 1000,
        v,
        "A",
      ]),
      ["urn:dev:ow:10e2073a0108006:current", bt, 1.7, "A"],
    ]);
  });

  it("one name in several units (humidity, its position, battery) is one series per unit, each at its time", () => {
    const bt = 1_320_067_464_000;
    const name = "urn:dev:ow:10e2073a01080063:";
    const at = (s: number) => bt + s * 1000;
    expect(rows(RFC8428.humidityAndPosition)).toEqual([
      [`${name}__RH`, at(0), 20, "%RH"],
      [`${name}_lon`, at(0), 24.30621, "lon"],
      [`${name}_lat`, at(0), 60.07965, "lat"],
      [`${name}__RH`, at(60), 20.3, "%RH"],
      [`${name}_lon`, at(60), 24.30622, "lon"],
      [`${name}_lat`, at(60), 60.07965, "lat"],
      [`${name}__RH`, at(120), 20.7, "%RH"],
      [`${name}_lon`, at(120), 24.30623, "lon"],
      [`${name}_lat`, at(120), 60.07966, "lat"],
      [`${name}__EL`, at(150), 98, "%EL"],
      [`${name}__RH`, at(180), 21.2, "%RH"],
      [`${name}_lon`, at(180), 24.30628, "lon"],
      [`${name}_lat`, at(180), 60.07967, "lat"],
    ]);
  });

  it("a boolean is 0 or 1; string and data values are counted, not stored", () => {
    const r = parse(RFC8428.multipleDataTypes);
    if (!r.ok) throw new Error(r.reason);
    expect(r.notStored).toBe(2);
    expect(r.readings.map((x) => [x.sensor, x.value, x.unit])).toEqual([
      ["urn:dev:ow:10e2073a01080063:temp", 23.1, "Cel"],
      ["urn:dev:ow:10e2073a01080063:open", 0, null],
    ]);
  });
});

describe("SenML's base value and names outside the id rule", () => {
  it("the base value is added to v, and characters outside the id rule become _", () => {
    expect(rows('[{"bn":"pump/1/","bv":100,"bt":1.7e9,"n":"flow rate","v":2.5}]')).toEqual([
      ["pump_1_flow_rate", 1.7e12, 102.5, null],
    ]);
  });
});

describe("a pack that breaks SenML's rules is refused whole, with the reason", () => {
  const refused: [string, string, RegExp][] = [
    ["not JSON", "[{", /not SenML JSON/],
    ["not an array", '{"n":"a","v":1}', /non-empty JSON array/],
    ["an empty array", "[]", /non-empty JSON array/],
    ["a value of the wrong type", '[{"n":"a","v":"1"}]', /record 0: v must be a number/],
    ["no name", '[{"v":1}]', /record 0: no name/],
    ["a name but no value", '[{"n":"a","v":1},{"n":"b"}]', /record 1: no value/],
    [
      "the same sensor and time twice",
      '[{"n":"a","v":1,"t":1.7e9},{"n":"a","v":2,"t":1.7e9}]',
      /records 0 and 1/,
    ],
    ["a time before 2000", '[{"n":"a","v":1,"t":9.0e8}]', /before 2000/],
  ];
  it.each(refused)("%s", (_what, text, reason) => {
    const r = parse(text);
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.reason).toMatch(reason);
  });
});
