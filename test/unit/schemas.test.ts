import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import {
  canonicalForm,
  DEFAULT_QUALITY,
  DecodeError,
  type DecodeFailure,
  QUALITIES,
  type Reading,
  SchemaRegistry,
} from "../../schemas/index.js";
import { JAVA, READING_A, READING_A2, READING_B } from "../helpers/schema-readings.js";

const SCHEMA_DIR = join(import.meta.dirname, "..", "..", "schemas");
const V1_FILE = join(SCHEMA_DIR, "reading.v1.avsc");

/** The repository's schemas: every released version, the highest one current. */
const registry = SchemaRegistry.load();
/** Version 1 alone, as every gateway before version 2 ran it: the codec Apache Avro Java's bytes pin down. */
const V1_ONLY_DIR = mkdtempSync(join(tmpdir(), "schemas-v1-"));
copyFileSync(V1_FILE, join(V1_ONLY_DIR, "reading.v1.avsc"));
const v1Registry = SchemaRegistry.load(V1_ONLY_DIR);
afterAll(() => rmSync(V1_ONLY_DIR, { recursive: true, force: true }));

function decodeFailure(body: Buffer): DecodeError {
  try {
    registry.decode(body);
  } catch (err) {
    expect(err).toBeInstanceOf(DecodeError);
    return err as DecodeError;
  }
  throw new Error("decode accepted the body");
}

/** A message with the v1 header followed by `datum`. */
function v1Message(datum: Buffer | number[]): Buffer {
  return Buffer.concat([Buffer.from([0xc3, 0x01]), v1Registry.current.fingerprint, Buffer.from(datum)]);
}

/** Avro's zig-zag varint of a small integer. */
function varint(n: number): number[] {
  let z = n >= 0 ? n * 2 : -n * 2 - 1;
  const out: number[] = [];
  while (z > 0x7f) {
    out.push((z % 128) | 0x80);
    z = Math.floor(z / 128);
  }
  out.push(z);
  return out;
}

function avroString(s: string): number[] {
  const bytes = [...Buffer.from(s, "utf8")];
  return [...varint(bytes.length), ...bytes];
}

describe("schema files", () => {
  it("reading.v1.avsc has the canonical form and fingerprint that Apache Avro Java computes", () => {
    const v1 = registry.versions[0]!;
    expect(v1.version).toBe(1);
    expect(v1.file).toBe("reading.v1.avsc");
    expect(v1.canonical).toBe(JAVA.v1Canonical);
    expect(v1.fingerprintHex).toBe(JAVA.v1Fingerprint);
    expect(v1.fingerprint.toString("hex")).toBe(JAVA.v1Fingerprint);
    expect(canonicalForm(JSON.parse(readFileSync(V1_FILE, "utf8")))).toBe(JAVA.v1Canonical);
  });

  it("reading.v1.avsc declares the contract's fields in order, each documented", () => {
    const schema = JSON.parse(readFileSync(V1_FILE, "utf8")) as {
      name: string;
      namespace: string;
      doc?: string;
      fields: { name: string; doc?: string }[];
    };
    expect(schema.name).toBe("Reading");
    expect(schema.namespace).toBe("telemetry");
    expect(schema.doc).toBeTruthy();
    const names = ["device_id", "sensor", "ts", "value", "unit", "seq", "gateway_id", "received_at"];
    expect(schema.fields.map((f) => f.name)).toEqual(names);
    expect(registry.versions[0]!.fields).toEqual(names);
    for (const field of schema.fields) expect(field.doc, field.name).toBeTruthy();
  });

  it("are found in the repository's schemas folder without naming it, the highest version being current", () => {
    expect(registry.versions.map((v) => v.file)).toContain("reading.v1.avsc");
    expect(registry.current).toBe(registry.versions[registry.versions.length - 1]);
    const versions = registry.versions.map((v) => v.version);
    expect(versions).toEqual([...versions].sort((a, b) => a - b));
  });

  it("finds a version by its wire fingerprint and nothing for any other", () => {
    expect(registry.byFingerprint(Buffer.from(JAVA.v1Fingerprint, "hex"))).toBe(registry.versions[0]);
    expect(registry.byFingerprint(Buffer.from("0000000000000000", "hex"))).toBeUndefined();
    expect(registry.byFingerprint(Buffer.from(JAVA.v1Fingerprint.slice(0, 14), "hex"))).toBeUndefined();
  });
});

describe("a folder of schema versions", () => {
  const dirs: string[] = [];
  afterAll(() => {
    for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
  });

  function folder(files: Record<string, unknown>): string {
    const dir = mkdtempSync(join(tmpdir(), "schemas-test-"));
    dirs.push(dir);
    for (const [name, schema] of Object.entries(files)) {
      if (name === "reading.v1.avsc") copyFileSync(V1_FILE, join(dir, name));
      else writeFileSync(join(dir, name), JSON.stringify(schema));
    }
    return dir;
  }

  const v1 = JSON.parse(readFileSync(V1_FILE, "utf8")) as { fields: unknown[] };
  const withField = (field: unknown) => ({ ...v1, fields: [...v1.fields, field] });
  const v2 = withField({ name: "rssi", type: ["null", "int"], default: null, doc: "radio signal strength" });
  const v10 = withField({ name: "battery", type: "double", default: -1, doc: "battery level" });

  it("orders versions by number, not by name, and makes the highest one current", () => {
    const loaded = SchemaRegistry.load(
      folder({ "reading.v10.avsc": v10, "reading.v1.avsc": v1, "reading.v2.avsc": v2 }),
    );
    expect(loaded.versions.map((v) => v.version)).toEqual([1, 2, 10]);
    expect(loaded.current.file).toBe("reading.v10.avsc");
    expect(loaded.current.fields).toContain("battery");
  });

  it("decodes a message written with an older version, filling the newer fields with their defaults", () => {
    const newer = SchemaRegistry.load(folder({ "reading.v1.avsc": v1, "reading.v2.avsc": v2 }));
    const body = v1Registry.encode(READING_A);
    expect(newer.decode(body)).toEqual({ ...READING_A, rssi: null });
  });

  it("writes new messages with the current version", () => {
    const newer = SchemaRegistry.load(folder({ "reading.v1.avsc": v1, "reading.v2.avsc": v2 }));
    const body = newer.encode({ ...READING_A, rssi: -70 } as Reading);
    expect(body.subarray(2, 10)).toEqual(newer.current.fingerprint);
    expect(newer.decode(body)).toEqual({ ...READING_A, rssi: -70 });
    expect(decodeFailureOf(registry, body).kind).toBe("unknown-schema");
  });

  it("refuses at load a new version that cannot read the released ones", () => {
    const incompatible = withField({ name: "rssi", type: "int", doc: "required, no default" });
    const dir = folder({ "reading.v1.avsc": v1, "reading.v2.avsc": incompatible });
    expect(() => SchemaRegistry.load(dir)).toThrow(
      "reading.v2.avsc cannot read data written with reading.v1.avsc (not backward compatible): " +
        "field `rssi` has no default and is missing in the writer",
    );
  });

  it("refuses at load a version whose canonical form repeats an earlier one", () => {
    const docOnly = { ...v1, doc: "only the doc changed" };
    const dir = folder({ "reading.v1.avsc": v1, "reading.v2.avsc": docOnly });
    expect(() => SchemaRegistry.load(dir)).toThrow(/same canonical form and fingerprint/);
  });

  it("fails with the folder in the message when it holds no reading.v*.avsc", () => {
    const dir = folder({ "other.avsc": v1 });
    expect(() => SchemaRegistry.load(dir)).toThrow(`no reading.v<N>.avsc schema file found in ${dir}`);
    expect(() => SchemaRegistry.load(join(dir, "missing"))).toThrow(/cannot read the schema folder/);
  });
});

function decodeFailureOf(reg: SchemaRegistry, body: Buffer): DecodeError {
  try {
    reg.decode(body);
  } catch (err) {
    if (err instanceof DecodeError) return err;
    throw err;
  }
  throw new Error("decode accepted the body");
}

describe("version 1 encode and decode (the released codec, checked against Apache Avro Java)", () => {
  it("round-trips a reading with every field set", () => {
    expect(v1Registry.decode(v1Registry.encode(READING_A))).toEqual(READING_A);
  });

  it("round-trips a reading whose unit and seq are null, with the most negative safe timestamp", () => {
    expect(v1Registry.decode(v1Registry.encode(READING_B))).toEqual(READING_B);
  });

  it("round-trips timestamps and sequence numbers across the whole safe integer range", () => {
    const values = [
      0,
      1,
      -1,
      63,
      -64,
      64,
      2 ** 30 - 1,
      -(2 ** 30),
      2 ** 30,
      -(2 ** 30) - 1,
      2 ** 31,
      -(2 ** 52),
      -(2 ** 52) - 1,
      2 ** 52 + 1,
      Number.MAX_SAFE_INTEGER - 1,
      Number.MAX_SAFE_INTEGER,
      Number.MIN_SAFE_INTEGER,
      Number.MIN_SAFE_INTEGER + 1,
    ];
    for (const n of values) {
      const reading = { ...READING_A, ts: n, seq: n, received_at: -n || 0 };
      expect(v1Registry.decode(v1Registry.encode(reading)), String(n)).toEqual(reading);
    }
  });

  it("writes exactly the bytes Apache Avro Java's BinaryMessageEncoder writes for the same readings", () => {
    expect(v1Registry.encode(READING_A).toString("hex")).toBe(JAVA.messageA);
    expect(v1Registry.encode(READING_B).toString("hex")).toBe(JAVA.messageB);
  });

  it("reads messages written by Apache Avro Java", () => {
    expect(v1Registry.decode(Buffer.from(JAVA.messageA, "hex"))).toEqual(READING_A);
    expect(v1Registry.decode(Buffer.from(JAVA.messageB, "hex"))).toEqual(READING_B);
  });

  it("lays out a message as C3 01, the 8-byte writer fingerprint, then the Avro datum", () => {
    const body = v1Registry.encode({
      ...READING_B,
      device_id: "d",
      sensor: "s",
      gateway_id: "g",
      ts: 1,
      received_at: 2,
    });
    expect([...body.subarray(0, 2)]).toEqual([0xc3, 0x01]);
    expect(body.subarray(2, 10)).toEqual(v1Registry.current.fingerprint);
    const datum = [
      ...avroString("d"),
      ...avroString("s"),
      ...varint(1),
      ...Buffer.from([0, 0, 0, 0, 0, 0, 0xc0, 0xbf]), // -0.125 as a little-endian double
      0, // unit: union branch 0, null
      0, // seq: union branch 0, null
      ...avroString("g"),
      ...varint(2),
    ];
    expect([...body.subarray(10)]).toEqual(datum);
  });

  it("returns timestamps as plain numbers of epoch milliseconds, not Dates", () => {
    const decoded = v1Registry.decode(v1Registry.encode(READING_A));
    expect(typeof decoded.ts).toBe("number");
    expect(typeof decoded.received_at).toBe("number");
    expect(decoded.ts).toBe(1_718_000_000_123);
  });

  it("returns a plain object with exactly the schema's fields", () => {
    const decoded = v1Registry.decode(v1Registry.encode({ ...READING_A, extra: "dropped" } as Reading));
    expect(Object.getPrototypeOf(decoded)).toBe(Object.prototype);
    expect(Object.keys(decoded)).toEqual([...v1Registry.current.fields]);
  });

  it("returns buffers of their own: a later encode does not change an earlier message", () => {
    const first = v1Registry.encode(READING_A);
    const copy = Buffer.from(first);
    v1Registry.encode(READING_B);
    expect(first).toEqual(copy);
  });

  it("encodes a reading larger than its scratch buffer, and small ones correctly after it", () => {
    const big = { ...READING_A, device_id: "x".repeat(100_000), unit: "é".repeat(20_000) };
    expect(v1Registry.decode(v1Registry.encode(big))).toEqual(big);
    expect(v1Registry.encode(READING_A).toString("hex")).toBe(JAVA.messageA);
  });

  it("refuses to encode a reading that does not fit the schema", () => {
    expect(() => v1Registry.encode({ ...READING_A, ts: 1.5 })).toThrow(/cannot encode reading/);
    expect(() => v1Registry.encode({ ...READING_A, ts: 2 ** 53 })).toThrow(/cannot encode reading/);
    expect(() => v1Registry.encode({ ...READING_A, seq: Number.NaN })).toThrow(/cannot encode reading/);
    expect(() => v1Registry.encode({ ...READING_A, device_id: undefined } as unknown as Reading)).toThrow(
      /cannot encode reading/,
    );
    expect(() => v1Registry.encode({ ...READING_A, unit: 5 } as unknown as Reading)).toThrow(
      /cannot encode reading/,
    );
  });
});

describe("version 2, the current schema", () => {
  const V2_FILE = join(SCHEMA_DIR, "reading.v2.avsc");
  const v2 = JSON.parse(readFileSync(V2_FILE, "utf8")) as {
    doc?: string;
    fields: { name: string; doc?: string; default?: unknown; type: unknown }[];
  };

  it("is current, with the canonical form and fingerprint that Apache Avro Java computes", () => {
    expect(registry.versions.map((v) => v.file)).toEqual(["reading.v1.avsc", "reading.v2.avsc"]);
    expect(registry.current.file).toBe("reading.v2.avsc");
    expect(registry.current.canonical).toBe(JAVA.v2Canonical);
    expect(registry.current.fingerprintHex).toBe(JAVA.v2Fingerprint);
  });

  it("is version 1 plus quality and tags, each with a default, every field documented", () => {
    const v1Names = registry.versions[0]!.fields;
    expect(v2.fields.map((f) => f.name)).toEqual([...v1Names, "quality", "tags"]);
    expect(v2.doc).toBeTruthy();
    for (const field of v2.fields) expect(field.doc, field.name).toBeTruthy();
    const byName = Object.fromEntries(v2.fields.map((f) => [f.name, f]));
    expect(byName.quality).toMatchObject({ default: DEFAULT_QUALITY, type: { symbols: [...QUALITIES] } });
    expect(byName.tags).toMatchObject({ default: {}, type: { type: "map", values: "string" } });
  });

  it("writes exactly the bytes Apache Avro Java's BinaryMessageEncoder writes", () => {
    expect(registry.encode(READING_A2).toString("hex")).toBe(JAVA.messageA2);
    expect(registry.decode(Buffer.from(JAVA.messageA2, "hex"))).toEqual(READING_A2);
  });

  it("writes the defaults for a reading without quality and tags", () => {
    expect(registry.decode(registry.encode(READING_A))).toEqual({ ...READING_A, quality: "good", tags: {} });
    expect(registry.decode(registry.encode(READING_B))).toEqual({ ...READING_B, quality: "good", tags: {} });
  });

  it("reads version 1 messages (Apache Avro Java's bytes) with quality good and no tags, as Java resolves them", () => {
    expect(registry.decode(Buffer.from(JAVA.messageA, "hex"))).toEqual({
      ...READING_A,
      quality: "good",
      tags: {},
    });
    expect(registry.decode(v1Registry.encode(READING_B))).toEqual({
      ...READING_B,
      quality: "good",
      tags: {},
    });
  });

  it("returns every field of version 2 for messages of either version, in schema order", () => {
    for (const body of [registry.encode(READING_A2), v1Registry.encode(READING_A)]) {
      expect(Object.keys(registry.decode(body))).toEqual([...registry.current.fields]);
    }
  });

  it("is unknown to a processor that has only version 1: its messages are refused as unknown-schema", () => {
    const err = decodeFailureOf(v1Registry, registry.encode(READING_A2));
    expect(err.kind).toBe("unknown-schema");
    expect(err.message).toBe(`unknown schema ${JAVA.v2Fingerprint}`);
  });

  it("refuses to encode a quality outside good, uncertain, bad, or a tag that is not a string", () => {
    expect(() => registry.encode({ ...READING_A, quality: "great" } as unknown as Reading)).toThrow(
      /cannot encode reading/,
    );
    expect(() => registry.encode({ ...READING_A, tags: { n: 1 } } as unknown as Reading)).toThrow(
      /cannot encode reading/,
    );
  });
});

describe("a body that cannot be decoded", () => {
  it("is refused as not-avro when it lacks the C3 01 marker", () => {
    const err = decodeFailure(Buffer.from("abc"));
    expect(err.kind).toBe("not-avro");
    expect(err.message).toBe("body of 3 bytes is not Avro single-object encoding (no C3 01 marker)");
    expect(decodeFailure(Buffer.alloc(0)).kind).toBe("not-avro");
    const json = Buffer.from(JSON.stringify({ device_id: "d", sensor: "s", ts: 1, value: 2 }));
    expect(decodeFailure(json).kind).toBe("not-avro");
  });

  it("is refused as not-avro when it is shorter than the 10-byte header", () => {
    const err = decodeFailure(Buffer.from("c301bc2b1fcf13ae91", "hex"));
    expect(err.kind).toBe("not-avro");
    expect(err.message).toBe(
      "body of 9 bytes is not Avro single-object encoding (shorter than the 10-byte header)",
    );
  });

  it("with an unknown fingerprint is refused with that fingerprint in the reason", () => {
    const body = Buffer.concat([
      Buffer.from("c3010123456789abcdef", "hex"),
      registry.encode(READING_A).subarray(10),
    ]);
    const err = decodeFailure(body);
    expect(err.kind).toBe("unknown-schema");
    expect(err.message).toBe("unknown schema 0123456789abcdef");
  });

  it("that ends inside the datum is refused as truncated, wherever it is cut", () => {
    for (const reading of [READING_A, READING_B]) {
      const body = registry.encode(reading);
      for (let length = 10; length < body.length; length++) {
        const err = decodeFailure(body.subarray(0, length));
        expect(err.kind, `cut at ${length} of ${body.length}`).toBe("truncated");
        expect(err.message).toContain(registry.current.file);
      }
    }
  });

  it("with bytes after the datum is refused as invalid, saying how many", () => {
    const err = decodeFailure(Buffer.concat([registry.encode(READING_A), Buffer.from([0, 0])]));
    expect(err.kind).toBe("invalid");
    expect(err.message).toMatch(`2 trailing bytes after the reading of ${registry.current.file}`);
  });

  it("with a union branch the schema does not have is refused as invalid", () => {
    const datum = [...avroString("d"), ...avroString("s"), ...varint(1), ...Array(8).fill(0), ...varint(7)];
    const err = decodeFailure(v1Message(datum));
    expect(err.kind).toBe("invalid");
    expect(err.message).toMatch(/union/);
  });

  it("with a negative string length is refused as invalid", () => {
    const err = decodeFailure(v1Message([...varint(-3), 0x61, 0x62, 0x63]));
    expect(err.kind).toBe("invalid");
  });

  it("with longs beyond the safe integer range is refused as invalid rather than rounded", () => {
    const err = decodeFailure(Buffer.from(JAVA.messageBeyondSafeLongs, "hex"));
    expect(err.kind).toBe("invalid");
    expect(err.message).toMatch(/precision/);
  });

  it("with a long of more than 10 bytes is refused as invalid", () => {
    const datum = [...avroString("d"), ...avroString("s"), ...Array(11).fill(0x80), 0];
    expect(decodeFailure(v1Message(datum)).kind).toBe("invalid");
  });

  it("never makes decode throw anything but a DecodeError", () => {
    let seed = 12345;
    const random = () => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      return seed / 2 ** 31;
    };
    const valid = registry.encode(READING_A);
    const kinds = new Set<DecodeFailure>();
    for (let i = 0; i < 3000; i++) {
      const body = Buffer.from(valid.subarray(0, 10 + Math.floor(random() * (valid.length - 5))));
      for (let j = 10; j < body.length; j++) if (random() < 0.15) body[j] = Math.floor(random() * 256);
      try {
        registry.decode(body);
      } catch (err) {
        expect(err).toBeInstanceOf(DecodeError);
        kinds.add((err as DecodeError).kind);
      }
    }
    expect(kinds).toContain("truncated");
    expect(kinds).toContain("invalid");
    expect(decodeFailure("not a buffer" as unknown as Buffer).kind).toBe("not-avro");
  });

  it("is reported with a DecodeError that is an Error named DecodeError", () => {
    const err = decodeFailure(Buffer.from("abc"));
    expect(err).toBeInstanceOf(Error);
    expect(err.name).toBe("DecodeError");
    expect(new DecodeError("invalid", "why", { cause: 1 }).cause).toBe(1);
  });
});
