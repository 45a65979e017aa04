import { describe, expect, it } from "vitest";
import {
  MAX_PAYLOAD_BYTES,
  MAX_TAG_VALUE_LENGTH,
  MAX_TAGS,
  parsePayload,
  parseTopic,
} from "../../gateway/validate.js";

const RECEIVED_AT = Date.UTC(2026, 10, 25, 12, 0, 0);
const opts = { topicPrefix: "sensors", gatewayId: "gw-1", receivedAt: RECEIVED_AT };
const TOPIC = "sensors/greenhouse-7/temperature";

function parse(payload: string | Buffer, topic = TOPIC) {
  return parsePayload(topic, typeof payload === "string" ? Buffer.from(payload) : payload, opts);
}

describe("a valid payload becomes readings", () => {
  const good: [string, string, object][] = [
    [
      "a full reading",
      '{"value":21.5,"ts":1764072000000,"unit":"°C","seq":7}',
      { value: 21.5, ts: 1764072000000, unit: "°C", seq: 7 },
    ],
    [
      "only a value: ts is the receive time",
      '{"value":-3}',
      { value: -3, ts: RECEIVED_AT, unit: null, seq: null },
    ],
    ["an ISO time with Z", '{"value":1,"ts":"2026-11-25T11:00:00Z"}', { ts: Date.UTC(2026, 10, 25, 11) }],
    [
      "an ISO time with an offset",
      '{"value":1,"ts":"2026-11-25T13:00:00.250+02:00"}',
      { ts: Date.UTC(2026, 10, 25, 11, 0, 0, 250) },
    ],
    [
      "null optional fields",
      '{"value":0,"ts":null,"unit":null,"seq":null}',
      { ts: RECEIVED_AT, unit: null, seq: null },
    ],
    ["unknown fields are ignored", '{"value":1,"colour":"blue","nested":{"a":[1]}}', { value: 1 }],
    ["seq zero", '{"value":1,"seq":0}', { seq: 0 }],
    ["an exponent", '{"value":1.5e3}', { value: 1500 }],
    ["a 32-character unit", `{"value":1,"unit":"${"u".repeat(32)}"}`, { unit: "u".repeat(32) }],
  ];
  it.each(good)("%s", (_name, payload, expected) => {
    const r = parse(payload);
    expect(r.ok).toBe(true);
    if (!r.ok) return;
    expect(r.readings).toHaveLength(1);
    expect(r.readings[0]).toMatchObject({
      device_id: "greenhouse-7",
      sensor: "temperature",
      gateway_id: "gw-1",
      received_at: RECEIVED_AT,
      ...expected,
    });
  });

  it("a device batch (array) becomes one reading per element, in order", () => {
    const r = parse('[{"value":1,"ts":1764072000000},{"value":2,"ts":1764072001000},{"value":3}]');
    expect(r.ok && r.readings.map((x) => x.value)).toEqual([1, 2, 3]);
  });
});

describe("an invalid payload is refused with a precise reason", () => {
  const bad: [string, string | Buffer, RegExp][] = [
    ["invalid JSON", "{value:1}", /not valid JSON/],
    ["empty payload", "", /not valid JSON/],
    ["a bare number", "21.5", /must be a JSON object/],
    ["a string", '"21.5"', /must be a JSON object/],
    ["null", "null", /must be a JSON object/],
    ["an empty array", "[]", /empty array/],
    ["missing value", '{"ts":1764072000000}', /value is missing/],
    ["value as a string", '{"value":"21.5"}', /finite number/],
    ["value null", '{"value":null}', /finite number/],
    ["value NaN (not JSON)", '{"value":NaN}', /not valid JSON/],
    ["value Infinity (not JSON)", '{"value":Infinity}', /not valid JSON/],
    ["value overflowing to Infinity", '{"value":1e400}', /finite number/],
    ["value -1e400", '{"value":-1e400}', /finite number/],
    ["value true", '{"value":true}', /finite number/],
    ["value an array", '{"value":[1]}', /finite number/],
    ["ts fractional", '{"value":1,"ts":1764072000000.5}', /ts must be an integer/],
    ["ts in seconds (year 1970)", '{"value":1,"ts":1764072000}', /before 2000/],
    ["ts negative", '{"value":1,"ts":-1}', /before 2000/],
    ["ts far future", '{"value":1,"ts":99999999999999}', /future/],
    ["ts ISO without offset", '{"value":1,"ts":"2026-11-25T11:00:00"}', /UTC offset/],
    [
      "ts ISO nonsense date",
      '{"value":1,"ts":"2026-13-45T11:00:00Z"}',
      /ts "2026-13-45T11:00:00Z" names month 13/,
    ],
    [
      "ts ISO 30 February",
      '{"value":1,"ts":"2025-02-30T12:00:00Z"}',
      /^ts "2025-02-30T12:00:00Z" names 2025-02-30, a day/,
    ],
    ["ts ISO hour 24", '{"value":1,"ts":"2025-06-15T24:00:00Z"}', /^ts "2025-06-15T24:00:00Z" names hour 24/],
    [
      "ts ISO beyond ms",
      '{"value":1,"ts":"2025-06-15T10:00:00.1234Z"}',
      /^ts "2025-06-15T10:00:00.1234Z" has .1234/,
    ],
    ["ts a word", '{"value":1,"ts":"yesterday"}', /ISO-8601/],
    ["ts boolean", '{"value":1,"ts":true}', /ts must be/],
    ["unit too long", `{"value":1,"unit":"${"u".repeat(33)}"}`, /unit must be/],
    ["unit a number", '{"value":1,"unit":5}', /unit must be/],
    ["unit holding a NUL", '{"value":1,"unit":"C\\u0000"}', /^unit contains a NUL character/],
    ["seq negative", '{"value":1,"seq":-1}', /seq must be/],
    ["seq fractional", '{"value":1,"seq":1.5}', /seq must be/],
    ["seq a string", '{"value":1,"seq":"1"}', /seq must be/],
    ["one bad reading in a batch refuses the batch", '[{"value":1},{"value":"x"}]', /^reading 1: value/],
    ["a batch holding a non-object", '[{"value":1},2]', /^reading 1: a reading must be/],
    ["invalid UTF-8", Buffer.from([0x7b, 0x22, 0xff, 0xfe, 0x22, 0x7d]), /not valid UTF-8/],
  ];
  it.each(bad)("%s", (_name, payload, reason) => {
    const r = parse(payload);
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.reason).toMatch(reason);
  });

  it("a payload over 256 KiB is refused before it is parsed", () => {
    const r = parse(Buffer.alloc(MAX_PAYLOAD_BYTES + 1, 0x20));
    expect(r).toEqual({ ok: false, reason: expect.stringMatching(/over the 262144 byte limit/) });
  });

  it("deeply nested JSON is refused without crashing", () => {
    const r = parse(`${"[".repeat(100_000)}${"]".repeat(100_000)}`);
    expect(r.ok).toBe(false);
  });

  it("a huge array within the size limit is all-or-nothing", () => {
    const items = Array.from({ length: 5_000 }, (_, i) => ({ value: i, ts: 1764072000000 + i }));
    const ok = parse(JSON.stringify(items));
    expect(ok.ok && ok.readings.length).toBe(5_000);
    items.push({ value: Number.NaN, ts: 1 });
    const refused = parse(JSON.stringify(items));
    expect(refused).toEqual({ ok: false, reason: expect.stringMatching(/^reading 5000: /) });
  });
});

describe("quality and tags (schema version 2)", () => {
  const tags = (n: number) => Object.fromEntries(Array.from({ length: n }, (_, i) => [`k${i}`, `v${i}`]));

  it.each([
    ["absent: quality good, no tags", '{"value":1}', { quality: "good", tags: {} }],
    ["null: the same as absent", '{"value":1,"quality":null,"tags":null}', { quality: "good", tags: {} }],
    ["quality good", '{"value":1,"quality":"good"}', { quality: "good" }],
    ["quality uncertain", '{"value":1,"quality":"uncertain"}', { quality: "uncertain" }],
    ["quality bad", '{"value":1,"quality":"bad"}', { quality: "bad" }],
    ["an empty tags object", '{"value":1,"tags":{}}', { tags: {} }],
    [
      "tags with site and firmware",
      '{"value":1,"tags":{"site":"north","firmware":"2.1.0"}}',
      { tags: { firmware: "2.1.0", site: "north" } },
    ],
    [`${MAX_TAGS} tags`, JSON.stringify({ value: 1, tags: tags(MAX_TAGS) }), { tags: tags(MAX_TAGS) }],
    [
      "a 64-character name of every allowed character, a 256-character value, an empty value",
      JSON.stringify({ value: 1, tags: { [`A1.b_c:d-${"e".repeat(55)}`]: "v".repeat(256), x: "" } }),
      { tags: { [`A1.b_c:d-${"e".repeat(55)}`]: "v".repeat(256), x: "" } },
    ],
    [
      "names that are Object.prototype properties stay ordinary tags",
      '{"value":1,"tags":{"constructor":"a","toString":"b","hasOwnProperty":"c"}}',
      { tags: { constructor: "a", hasOwnProperty: "c", toString: "b" } },
    ],
  ])("%s", (_name, payload, expected) => {
    const r = parse(payload);
    expect(r.ok).toBe(true);
    if (r.ok) expect(r.readings[0]).toMatchObject(expected);
  });

  it("orders tags by name, whatever order the device wrote them in", () => {
    const r = parse('{"value":1,"tags":{"site":"n","firmware":"2","area":"a"}}');
    expect(r.ok && Object.keys(r.readings[0]!.tags!)).toEqual(["area", "firmware", "site"]);
  });

  it("gives each reading of a batch its own quality and tags", () => {
    const r = parse('[{"value":1,"quality":"bad","tags":{"a":"1"}},{"value":2}]');
    expect(r.ok && r.readings.map((x) => [x.quality, x.tags])).toEqual([
      ["bad", { a: "1" }],
      ["good", {}],
    ]);
  });

  it.each([
    ["quality in capitals", '{"value":1,"quality":"GOOD"}', "quality must be one of good, uncertain, bad"],
    ["quality unknown", '{"value":1,"quality":"excellent"}', "quality must be one of good, uncertain, bad"],
    ["quality a number", '{"value":1,"quality":0}', "quality must be one of good, uncertain, bad"],
    ["quality empty", '{"value":1,"quality":""}', "quality must be one of good, uncertain, bad"],
    ["tags an array", '{"value":1,"tags":["a"]}', "tags must be a JSON object of string values"],
    ["tags a string", '{"value":1,"tags":"site=north"}', "tags must be a JSON object of string values"],
    [
      `${MAX_TAGS + 1} tags`,
      JSON.stringify({ value: 1, tags: tags(MAX_TAGS + 1) }),
      `tags has ${MAX_TAGS + 1} entries; at most ${MAX_TAGS} are allowed`,
    ],
    [
      "a tag value that is a number",
      '{"value":1,"tags":{"floor":3}}',
      `tag floor must be a string of at most ${MAX_TAG_VALUE_LENGTH} characters`,
    ],
    [
      "a tag value holding a NUL",
      '{"value":1,"tags":{"floor":"3\\u0000"}}',
      "tag floor contains a NUL character (U+0000), which the stores cannot keep",
    ],
    [
      "a tag value that is null",
      '{"value":1,"tags":{"floor":null}}',
      `tag floor must be a string of at most ${MAX_TAG_VALUE_LENGTH} characters`,
    ],
    [
      "a tag value that is an object",
      '{"value":1,"tags":{"floor":{"n":3}}}',
      `tag floor must be a string of at most ${MAX_TAG_VALUE_LENGTH} characters`,
    ],
    [
      "a tag value over 256 characters",
      JSON.stringify({ value: 1, tags: { note: "v".repeat(MAX_TAG_VALUE_LENGTH + 1) } }),
      `tag note must be a string of at most ${MAX_TAG_VALUE_LENGTH} characters`,
    ],
    [
      "an empty tag name",
      '{"value":1,"tags":{"":"x"}}',
      'tag name "" must be 1-64 of letters, digits, . _ - : starting with a letter or digit',
    ],
    [
      "a tag name with a space",
      '{"value":1,"tags":{"my site":"x"}}',
      'tag name "my site" must be 1-64 of letters, digits, . _ - : starting with a letter or digit',
    ],
    [
      "a tag name starting with an underscore (no __proto__)",
      '{"value":1,"tags":{"__proto__":"x"}}',
      'tag name "__proto__" must be 1-64 of letters, digits, . _ - : starting with a letter or digit',
    ],
    [
      "a tag name of 65 characters",
      JSON.stringify({ value: 1, tags: { ["n".repeat(65)]: "x" } }),
      `tag name "${"n".repeat(65)}" must be 1-64 of letters, digits, . _ - : starting with a letter or digit`,
    ],
    [
      "a bad tag in the second reading of a batch",
      '[{"value":1},{"value":2,"tags":{"a":1}}]',
      `reading 1: tag a must be a string of at most ${MAX_TAG_VALUE_LENGTH} characters`,
    ],
  ])("%s is refused", (_name, payload, reason) => {
    expect(parse(payload)).toEqual({ ok: false, reason });
  });

  it("shortens a very long bad tag name in the reason", () => {
    const r = parse(JSON.stringify({ value: 1, tags: { ["x y".repeat(1_000)]: "v" } }));
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.reason.length).toBeLessThan(200);
  });
});

describe("topics", () => {
  it.each([
    ["sensors/dev-1/temp", { deviceId: "dev-1", sensor: "temp" }],
    ["sensors/a.b_c:d-e/x", { deviceId: "a.b_c:d-e", sensor: "x" }],
  ])("%s is accepted", (topic, expected) => {
    expect(parseTopic(topic, "sensors")).toEqual(expected);
  });

  it.each([
    ["other/dev/temp", /not under sensors\//],
    ["sensors/dev", /<prefix>\/<deviceId>\/<sensor>/],
    ["sensors/dev/temp/extra", /<prefix>\/<deviceId>\/<sensor>/],
    ["sensors/dev ice/temp", /device id/],
    ["sensors/dev/t€mp", /sensor/],
    [`sensors/${"d".repeat(129)}/temp`, /device id/],
    ["sensors//temp", /device id/],
  ])("%s is refused", (topic, reason) => {
    const r = parseTopic(topic, "sensors");
    expect("reason" in r && r.reason).toMatch(reason);
  });

  it("a prefix with several levels works", () => {
    expect(parseTopic("site/a/sensors/dev/temp", "site/a/sensors")).toEqual({
      deviceId: "dev",
      sensor: "temp",
    });
  });
});
