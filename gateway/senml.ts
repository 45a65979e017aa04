import { MIN_TS, type Reading } from "../schemas/index.js";
import { MAX_FUTURE_MS, payloadSizeProblem, sensorFromName } from "./validate.js";

/** The sensor segment of the topic that carries SenML: `<TOPIC_PREFIX>/<deviceId>/senml`. */
export const SENML_SENSOR = "senml";
/** RFC 8428 section 4.5.3: a time below 2^28 seconds is relative to now. */
const RELATIVE_TIME_LIMIT = 2 ** 28;
const MAX_UNIT_LENGTH = 32;

/** What a SenML pack becomes: its readings (and the records that are not readings), or why it is refused. */
export type SenmlResult =
  | { readonly ok: true; readonly readings: Reading[]; readonly notStored: number }
  | { readonly ok: false; readonly reason: string };

const utf8 = new TextDecoder("utf-8", { fatal: true });

/** The base fields in force, carried from record to record (RFC 8428 section 4.1). */
interface Base {
  bn: string;
  bt: number;
  bu: string | undefined;
  bv: number;
}

const FIELD_TYPES = {
  bn: "string",
  bt: "number",
  bu: "string",
  bv: "number",
  n: "string",
  t: "number",
  u: "string",
  v: "number",
  vb: "boolean",
} as const;

/** The first field of the record whose JSON type is wrong (numbers must also be finite), if any. */
function wrongType(r: Record<string, unknown>): string | undefined {
  for (const [name, type] of Object.entries(FIELD_TYPES)) {
    const v = r[name];
    if (v !== undefined && (typeof v !== type || (type === "number" && !Number.isFinite(v))))
      return `${name} must be a ${type}`;
  }
  return undefined;
}

/**
 * Parses a SenML JSON pack (RFC 8428) for `deviceId`: each record's base name, base time, base unit and base value
 * resolved as the RFC says, the resolved name made a sensor id (with `_<unit>` added where the pack gives one name
 * several units), `t` in seconds (below 2^28: relative to
 * `receivedAt`), `v` plus the base value, `vb` as 0 or 1, `u` or the base unit. Records with `vs`, `vd` or only a
 * sum are counted as not stored. All or nothing, as for our JSON: a record that breaks a rule, or two records for
 * the same sensor and time, refuse the whole pack.
 */
export function parseSenml(
  deviceId: string,
  payload: Buffer,
  opts: { gatewayId: string; receivedAt: number },
): SenmlResult {
  const tooLarge = payloadSizeProblem(payload);
  if (tooLarge) return { ok: false, reason: tooLarge };
  let doc: unknown;
  try {
    doc = JSON.parse(utf8.decode(payload));
  } catch (err) {
    return { ok: false, reason: `payload is not SenML JSON: ${(err as Error).message.split("\n")[0]}` };
  }
  if (!Array.isArray(doc) || doc.length === 0)
    return { ok: false, reason: "a SenML pack is a non-empty JSON array" };
  const base: Base = { bn: "", bt: 0, bu: undefined, bv: 0 };
  const resolved: { readonly reading: Reading; readonly record: number }[] = [];
  let notStored = 0;
  for (let i = 0; i < doc.length; i++) {
    const r = record(doc[i], base, deviceId, opts);
    if (typeof r === "object" && "problem" in r) return { ok: false, reason: `record ${i}: ${r.problem}` };
    if (r === "none") continue;
    if (r === "not stored") {
      notStored++;
      continue;
    }
    resolved.push({ reading: r, record: i });
  }
  // RFC 8428's own examples give one name several units (a humidity sensor's %RH beside its position's lat and
  // lon): those are different series, so such a name's records are kept apart by their unit.
  const units = new Map<string, Set<string | null>>();
  for (const { reading } of resolved) {
    const seen = units.get(reading.sensor) ?? new Set();
    units.set(reading.sensor, seen.add(reading.unit));
  }
  const readings: Reading[] = [];
  const seen = new Map<string, number>();
  for (const { reading, record: i } of resolved) {
    const r =
      (units.get(reading.sensor)?.size ?? 0) > 1
        ? { ...reading, sensor: sensorFromName(`${reading.sensor}_${reading.unit ?? ""}`) }
        : reading;
    const key = `${r.sensor}\0${r.ts}`;
    const earlier = seen.get(key);
    if (earlier !== undefined)
      return { ok: false, reason: `records ${earlier} and ${i} are both ${r.sensor} at ${r.ts}` };
    seen.set(key, i);
    readings.push(r);
  }
  return { ok: true, readings, notStored };
}

/** One record resolved against the base fields (which it may update): a reading, "not stored", "none", or why not. */
function record(
  item: unknown,
  base: Base,
  deviceId: string,
  opts: { gatewayId: string; receivedAt: number },
): Reading | "not stored" | "none" | { problem: string } {
  if (typeof item !== "object" || item === null || Array.isArray(item))
    return { problem: "a record must be a JSON object" };
  const r = item as Record<string, unknown>;
  const wrong = wrongType(r);
  if (wrong) return { problem: wrong };
  const { bn, bt, bu, bv, n, t, u, v, vb } = r as {
    bn?: string;
    bt?: number;
    bu?: string;
    bv?: number;
    n?: string;
    t?: number;
    u?: string;
    v?: number;
    vb?: boolean;
  };
  if (bn !== undefined) base.bn = bn;
  if (bt !== undefined) base.bt = bt;
  if (bu !== undefined) base.bu = bu;
  if (bv !== undefined) base.bv = bv;

  const hasOther = r.vs !== undefined || r.vd !== undefined || r.s !== undefined;
  if (v === undefined && vb === undefined) {
    if (hasOther) return "not stored";
    // A record of base fields only sets them for the records that follow.
    if (n === undefined && t === undefined && u === undefined) return "none";
    return { problem: "no value (v, vs, vb, vd or s)" };
  }
  const name = base.bn + (n ?? "");
  if (name === "") return { problem: "no name: neither bn nor n" };
  let seconds = base.bt + (t ?? 0);
  if (seconds < RELATIVE_TIME_LIMIT) seconds += opts.receivedAt / 1000;
  const ts = Math.round(seconds * 1000);
  if (ts < MIN_TS) return { problem: "time is before 2000" };
  if (ts > opts.receivedAt + MAX_FUTURE_MS) return { problem: "time is more than 24 h in the future" };
  const unit = u ?? base.bu ?? null;
  if (unit !== null && unit.length > MAX_UNIT_LENGTH)
    return { problem: `unit is longer than ${MAX_UNIT_LENGTH} characters` };
  return {
    device_id: deviceId,
    sensor: sensorFromName(name),
    ts,
    value: v !== undefined ? base.bv + v : vb ? 1 : 0,
    unit,
    seq: null,
    gateway_id: opts.gatewayId,
    received_at: opts.receivedAt,
    quality: "good",
    tags: {},
  };
}
