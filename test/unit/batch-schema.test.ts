import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import avro from "avsc";
import { afterEach, describe, expect, it } from "vitest";
import { DecodeError, type Reading, SchemaRegistry } from "../../schemas/index.js";

const SCHEMAS = new URL("../../schemas/", import.meta.url);
const TS0 = Date.UTC(2026, 0, 1);
const reading = (i: number): Reading => ({
  device_id: `dev-${i % 3}`,
  sensor: "temperature",
  ts: TS0 + i,
  value: i / 8,
  unit: i % 2 ? "C" : null,
  seq: i % 5 ? i : null,
  gateway_id: "gw",
  received_at: TS0 + i + 7,
  quality: i % 3 === 0 ? "uncertain" : "good",
  tags: i % 4 ? { site: `s${i}` } : {},
});

describe("batch messages: the reading-batch schema", () => {
  const registry = SchemaRegistry.load();
  const dirs: string[] = [];
  afterEach(() => {
    for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
  });

  it("readings framed into a batch from their datums come back whole, in order", () => {
    for (const n of [1, 2, 63, 64, 65, 1_000]) {
      const readings = Array.from({ length: n }, (_, i) => reading(i));
      const datums = readings.map((r) => registry.encodeDatum(r));
      const body = registry.frameBatch(
        datums,
        datums.reduce((s, d) => s + d.length, 0),
      );
      const decoded = registry.decodeMessage(body);
      expect(decoded.batch).toBe(true);
      expect(decoded.readings.map((r) => ({ ...r }))).toEqual(readings);
    }
  });

  it("a batch message is what plain avsc writes with reading-batch.v1.avsc, byte for byte", () => {
    const schema = JSON.parse(readFileSync(new URL("reading-batch.v1.avsc", SCHEMAS), "utf8"));
    const readings = Array.from({ length: 10 }, (_, i) => reading(i));
    const datums = readings.map((r) => registry.encodeDatum(r));
    const body = registry.frameBatch(
      datums,
      datums.reduce((s, d) => s + d.length, 0),
    );
    expect(body.subarray(0, 2)).toEqual(Buffer.from([0xc3, 0x01]));
    expect(body.subarray(2, 10).toString("hex")).toBe(registry.currentBatch?.fingerprintHex);
    expect(body.subarray(10)).toEqual(avro.Type.forSchema(schema).toBuffer({ readings }));
  });

  it("single-reading messages still decode as one reading, not a batch", () => {
    const r = reading(3);
    expect(registry.decodeMessage(registry.encode(r))).toEqual({ readings: [r], batch: false });
    expect(registry.decodeMessage(registry.frameSingle(registry.encodeDatum(r))).readings).toEqual([r]);
  });

  it("an empty batch, a truncated batch and trailing bytes are refused with the failure kind", () => {
    const empty = registry.frameBatch([], 0);
    expect(() => registry.decodeMessage(empty)).toThrow(DecodeError);
    expect(() => registry.decodeMessage(empty)).toThrow(/empty batch/);
    const datums = [reading(1), reading(2)].map((r) => registry.encodeDatum(r));
    const body = registry.frameBatch(datums, datums[0]!.length + datums[1]!.length);
    const kind = (b: Buffer) => {
      try {
        registry.decodeMessage(b);
      } catch (err) {
        return (err as DecodeError).kind;
      }
      return "decoded";
    };
    expect(kind(body.subarray(0, body.length - 5))).toBe("truncated");
    expect(kind(Buffer.concat([body, Buffer.from([1, 2])]))).toBe("invalid");
  });

  it("a folder whose newest batch schema does not hold the newest reading record is refused, naming the fix", () => {
    const dir = mkdtempSync(join(tmpdir(), "batch-schema-"));
    dirs.push(dir);
    for (const f of ["reading.v1.avsc", "reading.v2.avsc", "reading-batch.v1.avsc"]) {
      copyFileSync(new URL(f, SCHEMAS), join(dir, f));
    }
    const v3 = JSON.parse(readFileSync(new URL("reading.v2.avsc", SCHEMAS), "utf8"));
    v3.fields.push({ name: "battery", type: ["null", "double"], default: null });
    writeFileSync(join(dir, "reading.v3.avsc"), JSON.stringify(v3));
    expect(() => SchemaRegistry.load(dir)).toThrow(
      "reading-batch.v1.avsc does not hold the current reading record of reading.v3.avsc: a gateway would write " +
        "batches of an older reading; add reading-batch.v2.avsc with the record of reading.v3.avsc",
    );
  });

  it("a schema folder without batch files still loads: single-reading messages only", () => {
    const dir = mkdtempSync(join(tmpdir(), "batch-schema-"));
    dirs.push(dir);
    copyFileSync(new URL("reading.v1.avsc", SCHEMAS), join(dir, "reading.v1.avsc"));
    const old = SchemaRegistry.load(dir);
    expect(old.currentBatch).toBeUndefined();
    expect(() => old.frameBatch([], 0)).toThrow(/no reading-batch/);
  });
});
