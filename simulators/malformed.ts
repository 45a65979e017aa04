// The payloads of simulated messages: valid ones, and the malformed kinds that break the MQTT input contract.
import type { SimReading } from "./sensors.js";

/** Every way a malformed message breaks the contract; each malformed message is one of them, drawn uniformly. */
export const MALFORMED_KINDS = [
  "truncated-json",
  "not-utf8",
  "value-nan-literal",
  "value-overflow",
  "value-string",
  "value-null",
  "value-missing",
  "ts-garbage",
  "ts-no-offset",
  "ts-impossible-date",
  "ts-fraction",
  "seq-negative",
  "unit-too-long",
  "not-an-object",
  "empty-array",
] as const;
export type MalformedKind = (typeof MALFORMED_KINDS)[number];

const UNIT_TOO_LONG = "degrees Celsius, measured carefully indoors";

/** The valid payload of `readings`: a single object for one reading, an array for several. */
export function payloadOf(readings: readonly SimReading[]): Buffer {
  const objects = readings.map(({ value, ts, unit, seq }) =>
    unit === null ? { value, ts, seq } : { value, ts, unit, seq },
  );
  return Buffer.from(JSON.stringify(objects.length === 1 ? objects[0] : objects));
}

/** A payload of `kind` in place of the valid payload of `readings`; `rand` draws where the kind needs chance. */
export function malformedPayload(
  kind: MalformedKind,
  readings: readonly SimReading[],
  rand: () => number,
): Buffer {
  const valid = payloadOf(readings).toString();
  const each = (f: (r: SimReading) => string) => {
    const items = readings.map(f);
    return Buffer.from(items.length === 1 ? items[0]! : `[${items.join(",")}]`);
  };
  const unit = (r: SimReading) => (r.unit === null ? "" : `,"unit":${JSON.stringify(r.unit)}`);
  switch (kind) {
    case "truncated-json":
      return Buffer.from(valid.slice(0, Math.floor(rand() * (valid.length - 1))));
    case "not-utf8":
      return Buffer.concat([Buffer.from([0xff, 0xfe]), Buffer.from(valid)]);
    case "value-nan-literal":
      return each((r) => `{"value":NaN,"ts":${r.ts}${unit(r)},"seq":${r.seq}}`);
    case "value-overflow":
      return each((r) => `{"value":1e999,"ts":${r.ts}${unit(r)},"seq":${r.seq}}`);
    case "value-string":
      return each((r) => `{"value":"${r.value}","ts":${r.ts}${unit(r)},"seq":${r.seq}}`);
    case "value-null":
      return each((r) => `{"value":null,"ts":${r.ts}${unit(r)},"seq":${r.seq}}`);
    case "value-missing":
      return each((r) => `{"ts":${r.ts}${unit(r)},"seq":${r.seq}}`);
    case "ts-garbage":
      return each((r) => `{"value":${r.value},"ts":"yesterday-ish"${unit(r)},"seq":${r.seq}}`);
    case "ts-no-offset":
      return each(
        (r) => `{"value":${r.value},"ts":"${new Date(r.ts).toISOString().slice(0, 19)}","seq":${r.seq}}`,
      );
    case "ts-impossible-date":
      return each((r) => `{"value":${r.value},"ts":"2025-13-45T25:61:00Z"${unit(r)},"seq":${r.seq}}`);
    case "ts-fraction":
      return each((r) => `{"value":${r.value},"ts":${r.ts}.5${unit(r)},"seq":${r.seq}}`);
    case "seq-negative":
      return each((r) => `{"value":${r.value},"ts":${r.ts}${unit(r)},"seq":-${r.seq + 1}}`);
    case "unit-too-long":
      return each((r) => `{"value":${r.value},"ts":${r.ts},"unit":"${UNIT_TOO_LONG}","seq":${r.seq}}`);
    case "not-an-object":
      return Buffer.from(rand() < 0.5 ? String(readings[0]?.value ?? 0) : `"${readings[0]?.value ?? 0}"`);
    case "empty-array":
      return Buffer.from("[]");
  }
}
