import { ID_PATTERN } from "../common/ids.js";
import { MALFORMED_KINDS, type MalformedKind, malformedPayload, payloadOf } from "./malformed.js";
import { type SensorModel, type SimReading, sensorModel } from "./sensors.js";

/**
 * - `reading`: a valid message, in order.
 * - `reordered`: a valid message held back and published right after a later valid message of the same device and
 *   sensor.
 * - `duplicate`: the exact topic and bytes of an earlier valid message, published again.
 * - `malformed`: breaks the MQTT input contract; its readings never reach a valid message.
 */
export type MessageKind = "reading" | "duplicate" | "reordered" | "malformed";

/** One MQTT publish the simulation asks for. */
export interface SimMessage {
  readonly topic: string;
  readonly payload: Buffer;
  readonly kind: MessageKind;
  /** The valid readings the payload holds (several with a batch size above 1); empty when malformed. */
  readonly readings: readonly SimReading[];
  /** How the payload breaks the contract, for malformed messages. */
  readonly malformed?: MalformedKind;
}

/** Probabilities in [0, 1]. `malformed` and `reorder` apply to each message the model makes, `duplicate` to each
 * valid message published. */
export interface FaultRates {
  readonly malformed: number;
  readonly duplicate: number;
  readonly reorder: number;
}

export const NO_FAULTS: FaultRates = Object.freeze({ malformed: 0, duplicate: 0, reorder: 0 });

export interface ModelOptions {
  /** Same seed and options, same messages byte for byte. */
  readonly seed: number;
  readonly devices: number;
  readonly sensors: readonly string[];
  readonly devicePrefix: string;
  readonly topicPrefix: string;
  /** Epoch ms of every device's first reading of each sensor. */
  readonly startTs: number;
  /** Ms between two readings of one sensor of one device; a positive integer. */
  readonly intervalMs: number;
  /** Readings per message, all of one device and sensor; 1 publishes single objects, more publishes arrays. */
  readonly batchSize: number;
  readonly faults: FaultRates;
  /** Readings to make in all (malformed ones included); unlimited when absent. */
  readonly limit?: number;
}

/** Chance that one reading is a spike. */
export const SPIKE_RATE = 0.000_5;
/** Readings after which a device's drift has mostly returned to zero. */
const DRIFT_REVERSION = 1_000;
/** A duplicate goes out after 0 to this many further messages, as a device resending after a timeout would. */
const MAX_DUPLICATE_DELAY = 3;
const DAY_MS = 86_400_000;

/** `sim-0001` for index 0: ids sort in device order up to 9,999 devices. */
export function deviceId(prefix: string, index: number): string {
  return `${prefix}-${String(index + 1).padStart(4, "0")}`;
}

/**
 * Interval between two readings of one sensor of one device so that all devices together make `rate` readings a
 * second, in whole ms (at least 1). Unlimited rate (0): 1 ms, which keeps timestamps close to the wall clock.
 */
export function defaultIntervalMs(rate: number, devices: number, sensors: number): number {
  if (rate <= 0) return 1;
  return Math.max(1, Math.round((devices * sensors * 1_000) / rate));
}

/** mulberry32: a small, fast 32-bit PRNG, returning floats in [0, 1). */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296;
  };
}

function hash32(...parts: (string | number)[]): number {
  let h = 0x811c9dc5;
  for (const ch of parts.join("\u0000")) {
    h ^= ch.codePointAt(0)!;
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}

function gaussian(rand: () => number): number {
  const u = 1 - rand();
  return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * rand());
}

const clamp = (v: number, [lo, hi]: readonly [number, number]) => Math.min(hi, Math.max(lo, v));

/**
 * Parses `malformed=0.01,duplicate=0.01,reorder=0.01` (any subset; `none` or empty for no faults).
 * Throws an Error saying what is allowed.
 */
export function parseFaults(raw: string): FaultRates {
  const rates = { ...NO_FAULTS };
  const text = raw.trim();
  if (text === "" || text === "none") return Object.freeze(rates);
  for (const part of text.split(",")) {
    const m = /^\s*(malformed|duplicate|reorder)\s*=\s*([0-9.]+)\s*$/.exec(part);
    const n = Number(m?.[2]);
    if (!m || !Number.isFinite(n) || n < 0 || n > 1) {
      throw new Error("must be like malformed=0.01,duplicate=0.01,reorder=0.01 with rates from 0 to 1");
    }
    rates[m[1] as keyof FaultRates] = n;
  }
  if (rates.malformed + rates.reorder > 1) throw new Error("malformed + reorder must not exceed 1");
  return Object.freeze(rates);
}

/** Parses a comma list of sensor names: ids of the MQTT contract, no repeats. */
export function parseSensors(raw: string): readonly string[] {
  const names = raw.split(",").map((s) => s.trim());
  if (names.length > 64) throw new Error("must name at most 64 sensors");
  for (const n of names) {
    if (!ID_PATTERN.test(n))
      throw new Error("must be a comma list of names of 1-128 letters, digits, . _ - :");
  }
  if (new Set(names).size !== names.length) throw new Error("must not name a sensor twice");
  return Object.freeze(names);
}

interface KeyState {
  readonly device: number;
  readonly sensor: number;
  readonly deviceId: string;
  readonly topic: string;
  readonly model: SensorModel;
  readonly offset: number;
  tick: number;
  drift: number;
}

/**
 * The simulated fleet as a deterministic stream of MQTT messages. Devices take turns: each round, every device
 * makes `batchSize` readings of each of its sensors, one message per device and sensor. Faults are drawn from the
 * same seeded stream, so a seed reproduces the exact sequence, faults included.
 *
 * Iterating ends after `limit` readings once held-back and duplicate messages have gone out; without a limit it
 * never ends, and `finish()` hands over what is still held back.
 */
export class Simulation implements IterableIterator<SimMessage> {
  readonly options: ModelOptions;
  private readonly rand: () => number;
  private readonly keys: KeyState[];
  private readonly seqs: number[];
  private readonly held = new Map<number, SimMessage>();
  private readonly duplicates: { due: number; message: SimMessage }[] = [];
  private readonly out: SimMessage[] = [];
  private nextKey = 0;
  private made = 0;
  private steps = 0;
  private finished = false;

  constructor(options: ModelOptions) {
    if (!Number.isSafeInteger(options.intervalMs) || options.intervalMs < 1) {
      throw new RangeError("intervalMs must be a positive integer");
    }
    if (!Number.isSafeInteger(options.batchSize) || options.batchSize < 1) {
      throw new RangeError("batchSize must be a positive integer");
    }
    if (options.devices < 1 || options.sensors.length < 1) throw new RangeError("need a device and a sensor");
    this.options = options;
    this.rand = mulberry32(options.seed);
    this.seqs = new Array<number>(options.devices).fill(0);
    this.keys = [];
    for (let d = 0; d < options.devices; d++) {
      const id = deviceId(options.devicePrefix, d);
      options.sensors.forEach((sensor, s) => {
        const model = sensorModel(sensor);
        const own = mulberry32(hash32(options.seed, id, sensor));
        this.keys.push({
          device: d,
          sensor: s,
          deviceId: id,
          topic: `${options.topicPrefix}/${id}/${sensor}`,
          model,
          offset: gaussian(own) * model.offsetSd,
          tick: 0,
          drift: 0,
        });
      });
    }
  }

  /** Readings the model has made so far, malformed ones included, duplicates not. */
  get generated(): number {
    return this.made;
  }

  [Symbol.iterator](): this {
    return this;
  }

  next(): IteratorResult<SimMessage, undefined> {
    while (this.out.length === 0) {
      const left =
        this.options.limit === undefined ? Number.POSITIVE_INFINITY : this.options.limit - this.made;
      if (left <= 0 || this.finished) {
        if (!this.finished) this.out.push(...this.finish());
        if (this.out.length === 0) return { done: true, value: undefined };
        break;
      }
      this.step(Math.min(left, this.options.batchSize));
    }
    return { done: false, value: this.out.shift()! };
  }

  /**
   * Stops the model and returns what it still owes: messages made but not yet taken, held-back readings (as plain
   * `reading`s, since no later reading came to pass them) and pending duplicates. Later calls return nothing.
   */
  finish(): SimMessage[] {
    if (this.finished) return this.out.splice(0);
    this.finished = true;
    const rest = this.out.splice(0);
    for (const message of this.held.values()) rest.push(message);
    this.held.clear();
    for (const { message } of this.duplicates) rest.push(message);
    this.duplicates.length = 0;
    return rest;
  }

  private step(n: number): void {
    const key = this.keys[this.nextKey]!;
    this.nextKey = (this.nextKey + 1) % this.keys.length;
    const readings: SimReading[] = [];
    for (let i = 0; i < n; i++) readings.push(this.reading(key));
    this.made += n;
    this.steps++;

    const { malformed, reorder } = this.options.faults;
    const u = this.rand();
    const keyIndex = key.device * this.options.sensors.length + key.sensor;
    if (u < malformed) {
      const kind = MALFORMED_KINDS[Math.floor(this.rand() * MALFORMED_KINDS.length)]!;
      const payload = malformedPayload(kind, readings, this.rand);
      this.out.push({ topic: key.topic, payload, kind: "malformed", readings: [], malformed: kind });
    } else {
      const message: SimMessage = {
        topic: key.topic,
        payload: payloadOf(readings),
        kind: "reading",
        readings,
      };
      const held = this.held.get(keyIndex);
      if (held) {
        this.held.delete(keyIndex);
        this.emitValid(message);
        this.emitValid({ ...held, kind: "reordered" });
      } else if (u < malformed + reorder) {
        this.held.set(keyIndex, message);
      } else {
        this.emitValid(message);
      }
    }
    while (this.duplicates.length > 0 && this.duplicates[0]!.due <= this.steps) {
      this.out.push(this.duplicates.shift()!.message);
    }
  }

  private emitValid(message: SimMessage): void {
    this.out.push(message);
    if (this.rand() < this.options.faults.duplicate) {
      const due = this.steps + Math.floor(this.rand() * (MAX_DUPLICATE_DELAY + 1));
      const at = this.duplicates.findIndex((d) => d.due > due);
      const entry = { due, message: { ...message, kind: "duplicate" as const } };
      if (at === -1) this.duplicates.push(entry);
      else this.duplicates.splice(at, 0, entry);
    }
  }

  private reading(key: KeyState): SimReading {
    const m = key.model;
    const ts = this.options.startTs + key.tick * this.options.intervalMs;
    key.tick++;
    key.drift = key.drift * (1 - 1 / DRIFT_REVERSION) + gaussian(this.rand) * m.driftSd;
    const hour = (((ts % DAY_MS) + DAY_MS) % DAY_MS) / 3_600_000;
    const cycle = Math.cos((2 * Math.PI * (hour - m.peakHour)) / 24);
    let value = clamp(
      m.base + key.offset + m.amplitude * cycle + key.drift + gaussian(this.rand) * m.noiseSd,
      m.normal,
    );
    if (this.rand() < SPIKE_RATE) {
      value = clamp(value + (this.rand() < 0.5 ? -1 : 1) * m.spike * (0.5 + this.rand() / 2), m.limits);
    }
    const scale = 10 ** m.decimals;
    const seq = this.seqs[key.device]!;
    this.seqs[key.device] = seq + 1;
    return {
      deviceId: key.deviceId,
      sensor: this.options.sensors[key.sensor]!,
      ts,
      value: Math.round(value * scale) / scale,
      unit: m.unit,
      seq,
    };
  }
}
