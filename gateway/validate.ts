import { ID_PATTERN } from "../common/settings.js";
import type { Reading } from "../schemas/index.js";

/** Largest payload accepted, from the MQTT input contract. */
export const MAX_PAYLOAD_BYTES = 256 * 1024;
/** Earliest measurement time accepted: anything before is a device clock that was never set. */
export const MIN_TS = Date.UTC(2000, 0, 1);
/** How far in the future a measurement may lie, for devices whose clocks run ahead. */
export const MAX_FUTURE_MS = 24 * 3_600_000;
const MAX_UNIT_LENGTH = 32;

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
  if (!ID_PATTERN.test(deviceId)) return { reason: "device id must be 1-128 of letters, digits, . _ - :" };
  if (!ID_PATTERN.test(sensor)) return { reason: "sensor must be 1-128 of letters, digits, . _ - :" };
  return { deviceId, sensor };
}

const ISO_WITH_OFFSET = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(?::\d{2}(?:\.\d{1,9})?)?(?:Z|[+-]\d{2}:?\d{2})$/i;
const utf8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: false });

function parseTs(raw: unknown, receivedAt: number): number | string {
  let ts: number;
  if (typeof raw === "number") {
    if (!Number.isSafeInteger(raw))
      return "ts must be an integer of epoch milliseconds or an ISO-8601 string";
    ts = raw;
  } else if (typeof raw === "string") {
    if (!ISO_WITH_OFFSET.test(raw))
      return "ts string must be ISO-8601 with a UTC offset, e.g. 2026-01-31T12:00:00Z";
    ts = Date.parse(raw);
    if (Number.isNaN(ts)) return "ts is not a valid date";
  } else {
    return "ts must be an integer of epoch milliseconds or an ISO-8601 string";
  }
  if (ts < MIN_TS) return "ts is before 2000-01-01";
  if (ts > receivedAt + MAX_FUTURE_MS) return "ts is more than 24 h in the future";
  return ts;
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
    unit = r.unit;
  }
  let seq: number | null = null;
  if (r.seq !== undefined && r.seq !== null) {
    if (typeof r.seq !== "number" || !Number.isSafeInteger(r.seq) || r.seq < 0) {
      return "seq must be a non-negative integer";
    }
    seq = r.seq;
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
  };
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
  if (payload.length > MAX_PAYLOAD_BYTES) {
    return {
      ok: false,
      reason: `payload of ${payload.length} bytes is over the ${MAX_PAYLOAD_BYTES} byte limit`,
    };
  }
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
