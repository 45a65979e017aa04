import {
  DEFAULT_QUALITY,
  ID_PATTERN,
  ID_RULE,
  MAX_ID_LENGTH,
  MIN_TS,
  nulProblem,
  parseTimestamp,
  QUALITIES,
  type Quality,
  type Reading,
} from "../schemas/index.js";

/** Largest payload accepted, from the MQTT input contract. */
export const MAX_PAYLOAD_BYTES = 256 * 1024;
/** How far in the future a measurement may lie, for devices whose clocks run ahead. */
export const MAX_FUTURE_MS = 24 * 3_600_000;
const MAX_UNIT_LENGTH = 32;
/** Most tags one reading may carry. */
export const MAX_TAGS = 16;
/** A tag name: 1 to 64 letters, digits, `.`, `_`, `-`, `:`, the first a letter or digit. */
export const TAG_NAME_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$/;
/** Longest tag value, in characters (UTF-16 code units, as for `unit`). */
export const MAX_TAG_VALUE_LENGTH = 256;

const NOT_ID_CHARACTER = /[^A-Za-z0-9._:-]/g;

/**
 * The sensor id of a name a device gives a value (a Sparkplug metric, a SenML record): each character the id rule
 * does not allow becomes `_` (`Inputs/Temperature` -> `Inputs_Temperature`), cut to the longest id.
 */
export function sensorFromName(name: string): string {
  return name.replace(NOT_ID_CHARACTER, "_").slice(0, MAX_ID_LENGTH);
}

export type ParseResult =
  | { readonly ok: true; readonly readings: Reading[] }
  | { readonly ok: false; readonly reason: string };

/** Splits `<prefix>/<deviceId>/<sensor>`; returns a reason when the topic breaks the contract. */
export function parseTopic(
  topic: string,
  prefix: string,
): { deviceId: string; sensor: string } | { reason: string } {
  if (!topic.startsWith(`${prefix}/`))
    return { reason: `topic ${JSON.stringify(topic)} is not under ${prefix}/` };
  const rest = topic.slice(prefix.length + 1).split("/");
  if (rest.length !== 2) return { reason: "topic must be <prefix>/<deviceId>/<sensor>" };
  const [deviceId = "", sensor = ""] = rest;
  if (!ID_PATTERN.test(deviceId)) return { reason: `device id must be ${ID_RULE}` };
  if (!ID_PATTERN.test(sensor)) return { reason: `sensor must be ${ID_RULE}` };
  return { deviceId, sensor };
}

const utf8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: false });

/** The measurement time in epoch ms, or why it breaks the contract (not a time, before 2000, too far ahead). */
function parseTs(raw: unknown, receivedAt: number): number | string {
  const ts = parseTimestamp(raw);
  if (typeof ts === "string") return `ts ${ts}`;
  if (ts < MIN_TS) return `ts is before ${new Date(MIN_TS).toISOString().slice(0, 10)}`;
  if (ts > receivedAt + MAX_FUTURE_MS) return "ts is more than 24 h in the future";
  return ts;
}

type Field<T> = { readonly ok: true; readonly value: T } | { readonly ok: false; readonly reason: string };

function parseQuality(raw: unknown): Field<Quality> {
  if (typeof raw === "string" && (QUALITIES as readonly string[]).includes(raw)) {
    return { ok: true, value: raw as Quality };
  }
  return { ok: false, reason: `quality must be one of ${QUALITIES.join(", ")}` };
}

/** The tags, ordered by name so that the same labels always encode and store alike; or why they break the rules. */
function parseTags(raw: unknown): Field<Record<string, string>> {
  if (typeof raw !== "object" || raw === null || Array.isArray(raw)) {
    return { ok: false, reason: "tags must be a JSON object of string values" };
  }
  const entries = Object.entries(raw);
  if (entries.length > MAX_TAGS) {
    return { ok: false, reason: `tags has ${entries.length} entries; at most ${MAX_TAGS} are allowed` };
  }
  for (const [name, value] of entries) {
    if (!TAG_NAME_PATTERN.test(name)) {
      const shown = JSON.stringify(name.length > 70 ? `${name.slice(0, 70)}...` : name);
      return {
        ok: false,
        reason: `tag name ${shown} must be 1-64 of letters, digits, . _ - : starting with a letter or digit`,
      };
    }
    if (typeof value !== "string" || value.length > MAX_TAG_VALUE_LENGTH) {
      return {
        ok: false,
        reason: `tag ${name} must be a string of at most ${MAX_TAG_VALUE_LENGTH} characters`,
      };
    }
    const nul = nulProblem(`tag ${name}`, value);
    if (nul) return { ok: false, reason: nul };
  }
  // fromEntries defines own properties, so even a name like "constructor" stays an ordinary tag.
  return { ok: true, value: Object.fromEntries(entries.sort(([x], [y]) => (x < y ? -1 : x > y ? 1 : 0))) };
}

function parseReading(
  item: unknown,
  deviceId: string,
  sensor: string,
  gatewayId: string,
  receivedAt: number,
): Reading | string {
  if (typeof item !== "object" || item === null || Array.isArray(item))
    return "a reading must be a JSON object";
  const r = item as Record<string, unknown>;
  if (!("value" in r)) return "value is missing";
  const value = r.value;
  if (typeof value !== "number" || !Number.isFinite(value)) return "value must be a finite number";
  let ts = receivedAt;
  if (r.ts !== undefined && r.ts !== null) {
    const parsed = parseTs(r.ts, receivedAt);
    if (typeof parsed === "string") return parsed;
    ts = parsed;
  }
  let unit: string | null = null;
  if (r.unit !== undefined && r.unit !== null) {
    if (typeof r.unit !== "string" || r.unit.length > MAX_UNIT_LENGTH) {
      return `unit must be a string of at most ${MAX_UNIT_LENGTH} characters`;
    }
    const nul = nulProblem("unit", r.unit);
    if (nul) return nul;
    unit = r.unit;
  }
  let seq: number | null = null;
  if (r.seq !== undefined && r.seq !== null) {
    if (typeof r.seq !== "number" || !Number.isSafeInteger(r.seq) || r.seq < 0) {
      return "seq must be a non-negative integer";
    }
    seq = r.seq;
  }
  let quality: Quality = DEFAULT_QUALITY;
  if (r.quality !== undefined && r.quality !== null) {
    const parsed = parseQuality(r.quality);
    if (!parsed.ok) return parsed.reason;
    quality = parsed.value;
  }
  let tags: Record<string, string> = {};
  if (r.tags !== undefined && r.tags !== null) {
    const parsed = parseTags(r.tags);
    if (!parsed.ok) return parsed.reason;
    tags = parsed.value;
  }
  return {
    device_id: deviceId,
    sensor,
    ts,
    value,
    unit,
    seq,
    gateway_id: gatewayId,
    received_at: receivedAt,
    quality,
    tags,
  };
}

/** The contract's size limit for a payload in any format: the reason it is refused, or undefined. */
export function payloadSizeProblem(payload: Buffer): string | undefined {
  return payload.length > MAX_PAYLOAD_BYTES
    ? `payload of ${payload.length} bytes is over the ${MAX_PAYLOAD_BYTES} byte limit`
    : undefined;
}

/**
 * Parses and validates one MQTT message by the input contract: UTF-8 JSON of one reading or a non-empty array of
 * them, at most 256 KiB. All or nothing: if any reading breaks a rule the whole payload is refused with a reason
 * naming the reading, so a device's batch is never stored in part.
 */
export function parsePayload(
  topic: string,
  payload: Buffer,
  opts: { topicPrefix: string; gatewayId: string; receivedAt: number },
): ParseResult {
  const where = parseTopic(topic, opts.topicPrefix);
  if ("reason" in where) return { ok: false, reason: where.reason };
  const tooLarge = payloadSizeProblem(payload);
  if (tooLarge) return { ok: false, reason: tooLarge };
  let text: string;
  try {
    text = utf8.decode(payload);
  } catch {
    return { ok: false, reason: "payload is not valid UTF-8" };
  }
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (err) {
    const detail = err instanceof Error ? err.message.split("\n")[0] : "";
    return { ok: false, reason: `payload is not valid JSON${detail ? `: ${detail}` : ""}` };
  }
  const items = Array.isArray(doc) ? doc : [doc];
  if (items.length === 0) return { ok: false, reason: "payload is an empty array" };
  const readings: Reading[] = [];
  for (let i = 0; i < items.length; i++) {
    const r = parseReading(items[i], where.deviceId, where.sensor, opts.gatewayId, opts.receivedAt);
    if (typeof r === "string") {
      return { ok: false, reason: Array.isArray(doc) ? `reading ${i}: ${r}` : r };
    }
    readings.push(r);
  }
  return { ok: true, readings };
}
