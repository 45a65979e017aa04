import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { checkVersions, incompatibilities } from "../../schemas/compat.js";
import { readSchemaFiles } from "../../schemas/index.js";

const SCHEMA_DIR = join(import.meta.dirname, "..", "..", "schemas");
const FIXTURE_DIR = join(import.meta.dirname, "..", "fixtures", "schemas-incompatible");

type Field = { name: string; type: unknown; default?: unknown; aliases?: string[] };
const record = (fields: Field[], extra: object = {}) => ({
  type: "record",
  name: "Reading",
  namespace: "telemetry",
  fields,
  ...extra,
});
const base: Field[] = [
  { name: "device_id", type: "string" },
  { name: "ts", type: { type: "long", logicalType: "timestamp-millis" } },
  { name: "value", type: "double" },
];
const withField = (field: Field) => record([...base, field]);
const quality = (symbols: string[], enumDefault?: string) => ({
  type: "enum",
  name: "Quality",
  symbols,
  ...(enumDefault === undefined ? {} : { default: enumDefault }),
});

describe("the compatibility check of two schema versions", () => {
  it("accepts the repository's version 2 as a reader of version 1", () => {
    const { files } = readSchemaFiles(SCHEMA_DIR);
    const [v1, v2] = files;
    expect(incompatibilities(v2!.schema, v1!.schema)).toEqual([]);
  });

  it.each([
    ["an identical schema", record(base), record(base)],
    [
      "a new field with a default",
      withField({ name: "rssi", type: ["null", "int"], default: null }),
      record(base),
    ],
    ["a field the reader drops", record(base.slice(0, 2)), record(base)],
    ["int promoted to long", withField({ name: "n", type: "long" }), withField({ name: "n", type: "int" })],
    [
      "int promoted to double",
      withField({ name: "n", type: "double" }),
      withField({ name: "n", type: "int" }),
    ],
    [
      "long promoted to float",
      withField({ name: "n", type: "float" }),
      withField({ name: "n", type: "long" }),
    ],
    [
      "bytes read as string",
      withField({ name: "b", type: "string" }),
      withField({ name: "b", type: "bytes" }),
    ],
    [
      "a field made optional (a union holding the old type)",
      withField({ name: "unit", type: ["null", "string"], default: null }),
      withField({ name: "unit", type: "string" }),
    ],
    [
      "an enum symbol added",
      withField({ name: "q", type: quality(["good", "uncertain", "bad", "stale"]) }),
      withField({ name: "q", type: quality(["good", "uncertain", "bad"]) }),
    ],
    [
      "an enum symbol removed where the reader's enum has a default symbol",
      withField({ name: "q", type: quality(["good", "bad"], "bad") }),
      withField({ name: "q", type: quality(["good", "uncertain", "bad"]) }),
    ],
    [
      "a renamed field the reader lists the old name of as an alias",
      withField({ name: "reading", type: "double", aliases: ["old_value"] }),
      withField({ name: "old_value", type: "double" }),
    ],
    [
      "a renamed record the reader lists the old name of as an alias",
      record(base, { name: "Measurement", aliases: ["telemetry.Reading"] }),
      record(base),
    ],
    [
      "a map whose values are promoted",
      withField({ name: "m", type: { type: "map", values: "double" } }),
      withField({ name: "m", type: { type: "map", values: "int" } }),
    ],
  ])("accepts %s", (_name, reader, writer) => {
    expect(incompatibilities(reader, writer)).toEqual([]);
  });

  it.each([
    [
      "a new field without a default",
      withField({ name: "battery", type: "double" }),
      record(base),
      ["field `battery` has no default and is missing in the writer"],
    ],
    [
      "a type changed to one Avro cannot promote to",
      record([base[0]!, { name: "ts", type: "string" }, base[2]!]),
      record(base),
      ["field `ts`: type changed from long to string, which Avro cannot promote"],
    ],
    [
      "a narrowing (double read as float)",
      withField({ name: "n", type: "float" }),
      withField({ name: "n", type: "double" }),
      ["field `n`: type changed from double to float, which Avro cannot promote"],
    ],
    [
      "an enum symbol removed with no default symbol",
      withField({ name: "quality", type: quality(["good", "bad"]) }),
      withField({ name: "quality", type: quality(["good", "uncertain", "bad"]) }),
      [
        "field `quality`: enum telemetry.Quality lacks the writer's symbol uncertain and has no default symbol to read it as",
      ],
    ],
    [
      "an optional field made required (null has nowhere to go)",
      withField({ name: "unit", type: "string" }),
      withField({ name: "unit", type: ["null", "string"], default: null }),
      ["field `unit`: type changed from null to string, which Avro cannot promote"],
    ],
    [
      "a union that loses a branch the writer may write",
      withField({ name: "v", type: ["null", "string"], default: null }),
      withField({ name: "v", type: ["null", "string", "boolean"], default: null }),
      ["field `v`: the writer's boolean matches no branch of the reader's union [null, string]"],
    ],
    [
      "a renamed record without an alias",
      record(base, { name: "Measurement" }),
      record(base),
      [
        "the record: record telemetry.Reading of the writer is named telemetry.Measurement in the reader, with no alias telemetry.Reading",
      ],
    ],
    [
      "a change deep inside a nested record",
      withField({
        name: "location",
        type: {
          type: "record",
          name: "Location",
          fields: [
            { name: "lat", type: "double" },
            { name: "alt", type: "double" },
          ],
        },
      }),
      withField({
        name: "location",
        type: { type: "record", name: "Location", fields: [{ name: "lat", type: "double" }] },
      }),
      ["field `location.alt` has no default and is missing in the writer"],
    ],
    [
      "map values changed",
      withField({ name: "tags", type: { type: "map", values: "int" }, default: {} }),
      withField({ name: "tags", type: { type: "map", values: "string" }, default: {} }),
      ["field `tags{}`: type changed from string to int, which Avro cannot promote"],
    ],
    [
      "array items changed",
      withField({ name: "xs", type: { type: "array", items: "int" } }),
      withField({ name: "xs", type: { type: "array", items: "long" } }),
      ["field `xs[]`: type changed from long to int, which Avro cannot promote"],
    ],
    [
      "a fixed of another size",
      withField({ name: "h", type: { type: "fixed", name: "Hash", size: 32 } }),
      withField({ name: "h", type: { type: "fixed", name: "Hash", size: 16 } }),
      ["field `h`: fixed telemetry.Hash has size 16 in the writer but 32 in the reader"],
    ],
    [
      "two broken fields at once, each named",
      record([...base.slice(0, 2), { name: "value", type: "string" }, { name: "battery", type: "double" }]),
      record(base),
      [
        "field `value`: type changed from double to string, which Avro cannot promote",
        "field `battery` has no default and is missing in the writer",
      ],
    ],
  ])("refuses %s, naming the field", (_name, reader, writer, expected) => {
    expect(incompatibilities(reader, writer)).toEqual(expected);
  });

  it("compares a recursive record once, without looping", () => {
    const node = (extra: Field[] = []) => ({
      type: "record",
      name: "Node",
      fields: [{ name: "next", type: ["null", "Node"], default: null }, ...extra],
    });
    expect(incompatibilities(node(), node())).toEqual([]);
    expect(incompatibilities(node([{ name: "w", type: "int" }]), node())).toEqual([
      "field `w` has no default and is missing in the writer",
    ]);
  });

  it("throws for a schema that is not valid Avro", () => {
    expect(() => incompatibilities({ type: "record", name: "R" }, record(base))).toThrow();
  });
});

describe("the compatibility check of a folder of versions", () => {
  it("passes for the repository's schemas/ folder, comparing every pair", () => {
    const { files } = readSchemaFiles(SCHEMA_DIR);
    const report = checkVersions(files);
    expect(report.failures).toEqual([]);
    expect(report.pairs).toBe((files.length * (files.length - 1)) / 2);
  });

  it("refuses the deliberately incompatible fixture, naming the field and both files of each pair", () => {
    const report = checkVersions(readSchemaFiles(FIXTURE_DIR).files);
    expect(report.pairs).toBe(3);
    expect(report.failures.flatMap((f) => f.lines)).toEqual([
      "reading.v3.avsc cannot read data written with reading.v1.avsc: field `battery` has no default and is missing in the writer",
      "reading.v3.avsc cannot read data written with reading.v2.avsc: field `battery` has no default and is missing in the writer",
    ]);
  });

  it("checks every earlier version, not only the previous one", () => {
    const v1 = record(base);
    const v2 = withField({ name: "extra", type: "int", default: 0 });
    const v3 = withField({ name: "extra", type: "int" }); // reads v2 (has extra), not v1 (lacks it)
    const report = checkVersions([
      { file: "reading.v1.avsc", schema: v1 },
      { file: "reading.v2.avsc", schema: v2 },
      { file: "reading.v3.avsc", schema: v3 },
    ]);
    expect(report.failures.map((f) => [f.reader, f.writer])).toEqual([
      ["reading.v3.avsc", "reading.v1.avsc"],
    ]);
  });

  it("reports a file that is not a valid Avro schema and checks the others", () => {
    const report = checkVersions([
      { file: "reading.v1.avsc", schema: record(base) },
      {
        file: "reading.v2.avsc",
        schema: { type: "record", name: "R", fields: [{ name: "x", type: "nope" }] },
      },
    ]);
    expect(report.pairs).toBe(0);
    expect(report.failures[0]!.lines[0]).toMatch(/^reading\.v2\.avsc is not a valid Avro schema: /);
  });

  it("the fixture's versions 1 and 2 are byte-identical copies of the released files", () => {
    for (const file of ["reading.v1.avsc", "reading.v2.avsc"]) {
      expect(readFileSync(join(FIXTURE_DIR, file), "utf8"), file).toBe(
        readFileSync(join(SCHEMA_DIR, file), "utf8"),
      );
    }
  });
});
