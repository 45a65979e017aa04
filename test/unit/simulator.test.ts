import { describe, expect, it } from "vitest";
import { ConfigError, parseConfig } from "../../common/config.js";
import { ISO_WITH_OFFSET } from "../../schemas/index.js";
import { formatProgress, simulateCommand } from "../../simulators/index.js";
import { MALFORMED_KINDS } from "../../simulators/malformed.js";
import {
  defaultIntervalMs,
  type ModelOptions,
  NO_FAULTS,
  parseFaults,
  parseSensors,
  type SimMessage,
  Simulation,
} from "../../simulators/model.js";
import { GENERIC_MODEL, SENSOR_MODELS, type SimReading, sensorModel } from "../../simulators/sensors.js";

const START = Date.UTC(2026, 0, 15, 0, 0, 0);

function options(overrides: Partial<ModelOptions> = {}): ModelOptions {
  return {
    seed: 42,
    devices: 5,
    sensors: ["temperature", "humidity", "pressure"],
    devicePrefix: "sim",
    topicPrefix: "sensors",
    startTs: START,
    intervalMs: 1_000,
    batchSize: 1,
    faults: NO_FAULTS,
    ...overrides,
  };
}

function take(sim: Iterator<SimMessage>, n: number): SimMessage[] {
  const out: SimMessage[] = [];
  for (let i = 0; i < n; i++) {
    const next = sim.next();
    if (next.done) break;
    out.push(next.value);
  }
  return out;
}

/**
 * The MQTT input contract (docs/contract.md, "MQTT input"), written out independently of the gateway (only the
 * ISO-8601 pattern is the contract's own, from schemas/): why a payload is refused.
 */
function contractViolation(payload: Buffer): string | undefined {
  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true }).decode(payload);
  } catch {
    return "not UTF-8";
  }
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch {
    return "invalid JSON";
  }
  const items: unknown[] = Array.isArray(doc) ? doc : [doc];
  if (items.length === 0) return "empty array";
  for (const item of items) {
    if (typeof item !== "object" || item === null || Array.isArray(item)) return "not an object";
    const r = item as Record<string, unknown>;
    if (typeof r.value !== "number" || !Number.isFinite(r.value)) return "value not a finite number";
    if (r.ts !== undefined) {
      const okNumber = typeof r.ts === "number" && Number.isSafeInteger(r.ts);
      const okString =
        typeof r.ts === "string" && ISO_WITH_OFFSET.test(r.ts) && !Number.isNaN(Date.parse(r.ts));
      if (!okNumber && !okString) return "bad ts";
    }
    if (r.unit !== undefined && (typeof r.unit !== "string" || r.unit.length > 32)) return "bad unit";
    if (r.seq !== undefined && (typeof r.seq !== "number" || !Number.isSafeInteger(r.seq) || r.seq < 0)) {
      return "bad seq";
    }
  }
  return undefined;
}

const key = (r: SimReading) => `${r.deviceId}/${r.sensor}/${r.ts}`;
const isValid = (m: SimMessage) => m.kind === "reading" || m.kind === "reordered";

describe("simulation model", () => {
  it("publishes the same messages, byte for byte, for the same seed", () => {
    const faults = parseFaults("malformed=0.05,duplicate=0.05,reorder=0.05");
    const a = take(new Simulation(options({ faults })), 5_000);
    const b = take(new Simulation(options({ faults })), 5_000);
    expect(b.map((m) => [m.topic, m.kind, m.payload.toString("hex")])).toEqual(
      a.map((m) => [m.topic, m.kind, m.payload.toString("hex")]),
    );
    const c = take(new Simulation(options({ faults, seed: 43 })), 5_000);
    expect(c.map((m) => m.payload.toString("hex"))).not.toEqual(a.map((m) => m.payload.toString("hex")));
  });

  it("publishes valid readings as the contract's JSON on <prefix>/<deviceId>/<sensor>", () => {
    const [first, second] = take(new Simulation(options()), 2);
    expect(first?.topic).toBe("sensors/sim-0001/temperature");
    expect(second?.topic).toBe("sensors/sim-0001/humidity");
    const body = JSON.parse(first!.payload.toString());
    expect(Object.keys(body)).toEqual(["value", "ts", "unit", "seq"]);
    expect(body).toEqual({ value: first!.readings[0]!.value, ts: START, unit: "°C", seq: 0 });
  });

  it("numbers each device's readings 0, 1, 2, ... in the order they are published", () => {
    for (const batchSize of [1, 4]) {
      const seqs = new Map<string, number[]>();
      for (const m of take(new Simulation(options({ batchSize })), 3_000)) {
        for (const r of m.readings) {
          const list = seqs.get(r.deviceId) ?? [];
          list.push(r.seq);
          seqs.set(r.deviceId, list);
        }
      }
      expect(seqs.size).toBe(5);
      for (const list of seqs.values()) expect(list).toEqual(list.map((_, i) => i));
    }
  });

  it("never gives two readings of one device and sensor the same ts, even at 1 ms intervals and with faults", () => {
    const faults = parseFaults("malformed=0.02,duplicate=0.05,reorder=0.05");
    for (const batchSize of [1, 7]) {
      const sim = new Simulation(
        options({ devices: 2, sensors: ["temperature"], intervalMs: 1, faults, batchSize }),
      );
      const seen = new Set<string>();
      let readings = 0;
      for (const m of take(sim, 20_000)) {
        if (!isValid(m)) continue;
        for (const r of m.readings) {
          expect(seen.has(key(r))).toBe(false);
          seen.add(key(r));
          readings++;
        }
      }
      expect(seen.size).toBe(readings);
    }
    expect(defaultIntervalMs(1_000_000, 10, 3)).toBe(1);
    expect(defaultIntervalMs(100, 10, 3)).toBe(300);
  });

  it("keeps values within plausible ranges, with rare spikes only", () => {
    const sensors = ["temperature", "humidity", "pressure", "co2", "vibration"];
    const sim = new Simulation(options({ devices: 20, sensors, intervalMs: 60_000, seed: 7 }));
    const values = new Map<string, number[]>();
    for (const m of take(sim, 100_000)) {
      const r = m.readings[0]!;
      expect(r.unit).toBe(sensorModel(r.sensor).unit);
      const list = values.get(r.sensor) ?? [];
      list.push(r.value);
      values.set(r.sensor, list);
    }
    for (const [sensor, list] of values) {
      const model = sensorModel(sensor);
      const [min, max] = model.limits;
      const [lo, hi] = model.normal;
      expect(list.every((v) => Number.isFinite(v) && v >= min && v <= max)).toBe(true);
      expect(list.filter((v) => v >= lo && v <= hi).length / list.length).toBeGreaterThan(0.99);
      const mean = list.reduce((a, b) => a + b, 0) / list.length;
      expect(Math.abs(mean - model.base)).toBeLessThan((hi - lo) / 4);
    }
    expect(sensorModel("vibration")).toBe(GENERIC_MODEL);
    expect(SENSOR_MODELS.temperature?.unit).toBe("°C");
  });

  it("follows a daily cycle: afternoons are warmer than nights", () => {
    const sim = new Simulation(options({ devices: 3, sensors: ["temperature"], intervalMs: 600_000 }));
    const byHour = { afternoon: [] as number[], night: [] as number[] };
    for (const m of take(sim, 3 * 144 * 7)) {
      const r = m.readings[0]!;
      const hour = new Date(r.ts).getUTCHours();
      if (hour >= 13 && hour <= 17) byHour.afternoon.push(r.value);
      if (hour >= 1 && hour <= 5) byHour.night.push(r.value);
    }
    const mean = (l: number[]) => l.reduce((a, b) => a + b, 0) / l.length;
    expect(mean(byHour.afternoon) - mean(byHour.night)).toBeGreaterThan(3);
  });

  it("honours the fault rates over 10,000 messages", () => {
    const faults = parseFaults("malformed=0.05,duplicate=0.03,reorder=0.04");
    const sim = new Simulation(options({ devices: 50, faults, limit: 10_000 }));
    const counts = { reading: 0, malformed: 0, duplicate: 0, reordered: 0 };
    for (const m of sim) counts[m.kind]++;
    const primaries = counts.reading + counts.malformed + counts.reordered;
    expect(primaries).toBe(10_000);
    expect(counts.malformed / primaries).toBeGreaterThan(0.04);
    expect(counts.malformed / primaries).toBeLessThan(0.06);
    expect(counts.reordered / primaries).toBeGreaterThan(0.03);
    expect(counts.reordered / primaries).toBeLessThan(0.05);
    const valid = counts.reading + counts.reordered;
    expect(counts.duplicate / valid).toBeGreaterThan(0.022);
    expect(counts.duplicate / valid).toBeLessThan(0.038);
  });

  it("makes malformed payloads that break the contract, in every variety, and valid ones that keep it", () => {
    const faults = parseFaults("malformed=0.3");
    for (const batchSize of [1, 3]) {
      const seen = new Set<string>();
      for (const m of new Simulation(options({ faults, batchSize, limit: 6_000 }))) {
        if (m.kind === "malformed") {
          expect(contractViolation(m.payload), `${m.malformed}: ${m.payload.toString()}`).toBeDefined();
          expect(m.readings).toEqual([]);
          seen.add(m.malformed!);
        } else {
          expect(contractViolation(m.payload), m.payload.toString()).toBeUndefined();
          const body = JSON.parse(m.payload.toString());
          const items = Array.isArray(body) ? body : [body];
          expect(items).toEqual(m.readings.map(({ value, ts, unit, seq }) => ({ value, ts, unit, seq })));
          expect(items.length).toBe(batchSize);
          expect(Array.isArray(body)).toBe(batchSize > 1);
        }
      }
      expect([...seen].sort()).toEqual([...MALFORMED_KINDS].sort());
    }
  });

  it("delivers a reordered reading right after a later reading of the same device and sensor", () => {
    const faults = parseFaults("reorder=0.1,malformed=0.05");
    const messages = take(new Simulation(options({ faults })), 5_000);
    let reordered = 0;
    messages.forEach((m, i) => {
      if (m.kind !== "reordered") return;
      reordered++;
      const before = messages[i - 1]!;
      expect(before.kind).toBe("reading");
      expect(before.topic).toBe(m.topic);
      expect(before.readings[0]!.ts).toBeGreaterThan(m.readings[0]!.ts);
    });
    expect(reordered).toBeGreaterThan(200);
    const lastTs = new Map<string, number>();
    let inversions = 0;
    for (const m of messages.filter(isValid)) {
      const ts = m.readings[0]!.ts;
      if (ts < (lastTs.get(m.topic) ?? 0)) inversions++;
      lastTs.set(m.topic, Math.max(ts, lastTs.get(m.topic) ?? 0));
    }
    expect(inversions).toBe(reordered);
  });

  it("publishes a duplicate as the exact bytes of an earlier valid message", () => {
    const faults = parseFaults("duplicate=0.1,reorder=0.05");
    const messages = take(new Simulation(options({ faults })), 5_000);
    const earlier = new Set<string>();
    let duplicates = 0;
    for (const m of messages) {
      const id = `${m.topic} ${m.payload.toString("hex")}`;
      if (m.kind === "duplicate") {
        duplicates++;
        expect(earlier.has(id)).toBe(true);
      } else {
        expect(earlier.has(id)).toBe(false);
        earlier.add(id);
      }
    }
    expect(duplicates).toBeGreaterThan(300);
  });

  it("stops after exactly `limit` readings, sending what it held back, with a short last batch", () => {
    const faults = parseFaults("malformed=0.05,duplicate=0.05,reorder=0.2");
    const sim = new Simulation(options({ batchSize: 4, faults, limit: 1_001 }));
    const messages = [...sim];
    expect(sim.generated).toBe(1_001);
    expect(sim.next().done).toBe(true);
    const valid = messages.filter(isValid).flatMap((m) => m.readings);
    const malformedSlots = messages.filter((m) => m.kind === "malformed").length;
    expect(valid.length).toBeGreaterThan(900);
    const allSeqs = new Set(valid.map((r) => `${r.deviceId}/${r.seq}`));
    expect(allSeqs.size).toBe(valid.length);
    expect(messages.filter(isValid).some((m) => m.readings.length === 1)).toBe(true);
    expect(messages.filter((m) => m.kind !== "duplicate").length).toBe(251);
    expect(valid.length + malformedSlots * 4).toBeGreaterThanOrEqual(1_001);
    expect(valid.length + malformedSlots * 4).toBeLessThanOrEqual(1_004);
  });

  it("hands over held-back and duplicate messages when finished early", () => {
    const faults = parseFaults("duplicate=0.5,reorder=0.5");
    const sim = new Simulation(options({ faults }));
    const sent = take(sim, 100);
    const rest = sim.finish();
    expect(rest.length).toBeGreaterThan(0);
    const readings = [...sent, ...rest].filter(isValid).flatMap((m) => m.readings);
    expect(new Set(readings.map(key)).size).toBe(sim.generated);
    expect(sim.next().done).toBe(true);
  });
});

describe("simulator settings", () => {
  it("parses a fault mix and refuses rates outside 0..1", () => {
    expect(parseFaults("malformed=0.01,duplicate=0.02,reorder=0.03")).toEqual({
      malformed: 0.01,
      duplicate: 0.02,
      reorder: 0.03,
    });
    expect(parseFaults("none")).toEqual(NO_FAULTS);
    expect(() => parseFaults("malformed=2")).toThrow(/from 0 to 1/);
    expect(() => parseFaults("bogus=0.1")).toThrow(/malformed=/);
    expect(() => parseFaults("malformed=0.6,reorder=0.6")).toThrow(/exceed 1/);
  });

  it("parses a sensor list of contract ids without repeats", () => {
    expect(parseSensors("temperature,co2")).toEqual(["temperature", "co2"]);
    expect(() => parseSensors("temp/room")).toThrow(/comma list/);
    expect(() => parseSensors("co2,co2")).toThrow(/twice/);
    expect(() => parseSensors("")).toThrow();
  });
});

describe("telemetry simulate command line", () => {
  const parse = (argv: string[], env: Record<string, string> = {}) =>
    parseConfig(simulateCommand.spec, argv, env);

  it("takes flags over SIM_* variables over defaults", () => {
    const c = parse(["--devices", "3", "--faults", "duplicate=0.1", "--duration", "5m"], {
      SIM_DEVICES: "7",
      SIM_RATE: "250",
    });
    expect(c.devices).toBe(3);
    expect(c.rate).toBe(250);
    expect(c.durationMs).toBe(300_000);
    expect(c.faults).toEqual({ malformed: 0, duplicate: 0.1, reorder: 0 });
    expect(c.sensors).toEqual(["temperature", "humidity", "pressure"]);
    expect(c.count).toBeUndefined();
    expect(c.window).toBe(500);
    expect(c.startTs).toBeUndefined();
    expect(parse(["--start-ts", "2026-01-15T00:00:00Z"]).startTs).toBe(START);
    expect(parse(["--start-ts", String(START)]).startTs).toBe(START);
  });

  it("refuses a bad value with one line naming the flag", () => {
    for (const argv of [
      ["--devices", "0"],
      ["--rate", "-1"],
      ["--faults", "malformed=1.5"],
      ["--sensors", "a/b"],
      ["--start-ts", "2026-01-15T00:00:00"],
      ["--window", "0"],
    ]) {
      expect(() => parse(argv)).toThrow(ConfigError);
      expect(() => parse(argv)).toThrow(argv[0]);
    }
    expect(() => parse(["--device-prefix", "d".repeat(101)])).toThrow(/--device-prefix/);
  });

  it("prints progress as sent, acked, rate and elapsed time", () => {
    const p = {
      sent: 12_000,
      acked: 11_500,
      inFlight: 500,
      malformed: 0,
      duplicates: 0,
      reordered: 0,
      generated: 12_000,
      validAcked: 11_500,
      connected: true,
      elapsedMs: 3_000,
    };
    expect(formatProgress(p)).toBe("simulate: 12,000 sent, 11,500 acked, 4,000/s, 0:03 elapsed");
    expect(
      formatProgress({ ...p, connected: false, malformed: 3 }, { ...p, sent: 11_000, elapsedMs: 2_000 }),
    ).toBe(
      "simulate: 12,000 sent, 11,500 acked, 1,000/s, 0:03 elapsed, 3 malformed, 0 duplicates, 0 reordered, broker unreachable, reconnecting",
    );
  });
});
