import { describe, expect, it } from "vitest";
import { canonicalForm, crc64Avro } from "../../schemas/index.js";

// Reference values computed independently with Apache Avro Java 1.8.2 (Debian 12 package libavro-java 1.8.2-1,
// OpenJDK 17): SchemaNormalization.toParsingForm / parsingFingerprint64(new Schema.Parser().parse(...)), the
// long written as 8 bytes little-endian.
const JAVA_PRIMITIVE_FINGERPRINTS: Record<string, string> = {
  null: "8a8f25cce724dd63",
  boolean: "64f7d4a478fc429f",
  int: "8f5c393f1ad57572",
  long: "b71df49344e154d0",
  float: "90d7a83ecb027c4d",
  double: "7e95ab32c035758e",
  bytes: "651920c3da16c04f",
  string: "c70345637248018f",
};

/** A schema that uses every named type, namespaces, references, logical types and attributes to strip. */
const COMPLEX_SCHEMA_TEXT = String.raw`{
  "type": "record", "name": "Outer", "namespace": "a.b", "doc": "d", "aliases": ["Old"],
  "fields": [
    {"name": "e", "type": {"type": "enum", "name": "Color", "symbols": ["RED", "GREEN"], "doc": "x", "default": "RED"}, "order": "descending"},
    {"name": "f", "type": {"type": "fixed", "name": "x.y.Hash", "size": 16}},
    {"name": "g", "type": {"type": "fixed", "name": "Dec", "namespace": "", "size": 4, "logicalType": "decimal", "precision": 8}},
    {"name": "arr", "type": {"type": "array", "items": "Color"}, "default": []},
    {"name": "m", "type": {"type": "map", "values": {"type": "int"}}},
    {"name": "inner", "type": {"type": "record", "name": "Inner", "namespace": "c", "fields": [
       {"name": "h", "type": "x.y.Hash", "doc": "ref"}, {"name": "k", "type": {"type": "enum", "name": "K", "symbols": ["Z"]}}, {"name": "k2", "type": "K"}
    ]}},
    {"name": "again", "type": ["null", "a.b.Outer", "Color", "x.y.Hash", "Dec"]},
    {"name": "u", "type": {"type": "string", "logicalType": "uuid"}},
    {"name": "err", "type": {"type": "error", "name": "Oops", "fields": [{"name": "msg", "type": "string"}]}}, {"name": "esc", "type": {"type": "enum", "name": "E\u0032", "symbols": ["A"]}}
  ]
}`;
const JAVA_COMPLEX_CANONICAL =
  '{"name":"a.b.Outer","type":"record","fields":[{"name":"e","type":{"name":"a.b.Color","type":"enum",' +
  '"symbols":["RED","GREEN"]}},{"name":"f","type":{"name":"x.y.Hash","type":"fixed","size":16}},{"name":"g",' +
  '"type":{"name":"Dec","type":"fixed","size":4}},{"name":"arr","type":{"type":"array","items":"a.b.Color"}},' +
  '{"name":"m","type":{"type":"map","values":"int"}},{"name":"inner","type":{"name":"c.Inner","type":"record",' +
  '"fields":[{"name":"h","type":"x.y.Hash"},{"name":"k","type":{"name":"c.K","type":"enum","symbols":["Z"]}},' +
  '{"name":"k2","type":"c.K"}]}},{"name":"again","type":["null","a.b.Outer","a.b.Color","x.y.Hash","Dec"]},' +
  '{"name":"u","type":"string"},{"name":"err","type":{"name":"a.b.Oops","type":"record","fields":[{"name":"msg",' +
  '"type":"string"}]}},{"name":"esc","type":{"name":"a.b.E2","type":"enum","symbols":["A"]}}]}';
const JAVA_COMPLEX_FINGERPRINT = "8a8a2e9743f9f4bf";

describe("CRC-64-AVRO", () => {
  it("of no bytes is the specification's EMPTY constant 0xc15d213aa4d7a795", () => {
    expect(crc64Avro("").readBigUInt64LE(0)).toBe(0xc15d213aa4d7a795n);
    expect(crc64Avro(Buffer.alloc(0)).toString("hex")).toBe("95a7d7a43a215dc1");
  });

  it("of each primitive's canonical form is what Apache Avro Java computes, as 8 little-endian bytes", () => {
    for (const [name, hex] of Object.entries(JAVA_PRIMITIVE_FINGERPRINTS)) {
      const canonical = canonicalForm(name);
      expect(canonical).toBe(`"${name}"`);
      expect(crc64Avro(canonical).toString("hex"), name).toBe(hex);
    }
  });

  it("gives the same fingerprint for a string and for its UTF-8 bytes", () => {
    const text = '{"name":"é","type":"fixed","size":1}';
    expect(crc64Avro(text)).toEqual(crc64Avro(Buffer.from(text, "utf8")));
    expect(crc64Avro(text)).toHaveLength(8);
  });
});

describe("Parsing Canonical Form", () => {
  it("reduces a logical type to its underlying type", () => {
    expect(canonicalForm({ type: "long", logicalType: "timestamp-millis" })).toBe('"long"');
    expect(canonicalForm({ type: "int", logicalType: "date" })).toBe('"int"');
    expect(canonicalForm({ type: "bytes", logicalType: "decimal", precision: 4, scale: 2 })).toBe('"bytes"');
  });

  it("writes a primitive in object form as its bare name", () => {
    expect(canonicalForm({ type: "string" })).toBe('"string"');
    expect(canonicalForm(["null", { type: "double" }])).toBe('["null","double"]');
  });

  it("strips docs, defaults, aliases, order and logical types, uses full names and orders name before type", () => {
    const schema = {
      doc: "a reading",
      aliases: ["Old"],
      fields: [
        { type: { logicalType: "timestamp-millis", type: "long" }, name: "ts", doc: "time", default: 0 },
        { name: "unit", type: ["null", "string"], default: null, aliases: ["u"], order: "ignore" },
      ],
      type: "record",
      namespace: "telemetry",
      name: "Reading",
    };
    expect(canonicalForm(schema)).toBe(
      '{"name":"telemetry.Reading","type":"record","fields":[{"name":"ts","type":"long"},' +
        '{"name":"unit","type":["null","string"]}]}',
    );
  });

  it("matches Apache Avro Java on a schema with every named type, nested namespaces and references", () => {
    const canonical = canonicalForm(JSON.parse(COMPLEX_SCHEMA_TEXT));
    expect(canonical).toBe(JAVA_COMPLEX_CANONICAL);
    expect(crc64Avro(canonical).toString("hex")).toBe(JAVA_COMPLEX_FINGERPRINT);
  });

  it("is not changed by whitespace or escapes in the schema text", () => {
    const spaced = '{ "type" : "enum",\n  "name" : "\\u0043olor", "symbols" : [ "R\\u0045D" ] }';
    expect(canonicalForm(JSON.parse(spaced))).toBe('{"name":"Color","type":"enum","symbols":["RED"]}');
  });

  it("refuses a reference to a type that is not defined", () => {
    expect(() => canonicalForm({ type: "array", items: "Nowhere" })).toThrow(/undefined type "Nowhere"/);
    expect(() => canonicalForm(42)).toThrow(/not a schema/);
  });
});
