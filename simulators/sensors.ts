// The sensor models of the simulator: how each kind of sensor's values behave, the sensors simulated by default, and
// the reading a simulated sensor makes.

/** One valid reading as a simulated device sends it; (deviceId, sensor, ts) is its natural key downstream. */
export interface SimReading {
  readonly deviceId: string;
  readonly sensor: string;
  /** Scheduled time of the reading, epoch ms; strictly increasing per device and sensor. */
  readonly ts: number;
  readonly value: number;
  /** `null` for sensors without a unit; the payload then has no `unit` field. */
  readonly unit: string | null;
  /** The device's sequence number: 0 for its first reading, one more for each reading it makes. */
  readonly seq: number;
}

/** How one kind of sensor behaves: a base level with a daily cycle, device offset, drift, noise and rare spikes. */
export interface SensorModel {
  readonly unit: string | null;
  readonly base: number;
  /** Standard deviation of each device's constant offset from `base`. */
  readonly offsetSd: number;
  /** Half the daily swing, peaking at `peakHour` UTC. */
  readonly amplitude: number;
  readonly peakHour: number;
  readonly noiseSd: number;
  /** Step of the slow mean-reverting random walk of each device. */
  readonly driftSd: number;
  /** Range of ordinary values; only spikes leave it. */
  readonly normal: readonly [number, number];
  /** Range of every value, spikes included. */
  readonly limits: readonly [number, number];
  readonly spike: number;
  readonly decimals: number;
}

/** The sensors with a model of their own, by name. */
export const SENSOR_MODELS: Readonly<Record<string, SensorModel>> = Object.freeze({
  temperature: {
    unit: "°C",
    base: 18,
    offsetSd: 1.5,
    amplitude: 3,
    peakHour: 15,
    noiseSd: 0.15,
    driftSd: 0.05,
    normal: [12, 24],
    limits: [-10, 50],
    spike: 12,
    decimals: 2,
  },
  humidity: {
    unit: "%",
    base: 60,
    offsetSd: 8,
    amplitude: 10,
    peakHour: 4,
    noiseSd: 1,
    driftSd: 0.3,
    normal: [30, 90],
    limits: [0, 100],
    spike: 25,
    decimals: 1,
  },
  pressure: {
    unit: "hPa",
    base: 1013,
    offsetSd: 3,
    amplitude: 1,
    peakHour: 10,
    noiseSd: 0.2,
    driftSd: 0.1,
    normal: [998, 1028],
    limits: [950, 1060],
    spike: 30,
    decimals: 2,
  },
  co2: {
    unit: "ppm",
    base: 700,
    offsetSd: 100,
    amplitude: 300,
    peakHour: 14,
    noiseSd: 15,
    driftSd: 5,
    normal: [400, 2000],
    limits: [350, 5000],
    spike: 1500,
    decimals: 0,
  },
});

/** Any sensor name without a model of its own: unit-less values from 0 to 100. */
export const GENERIC_MODEL: SensorModel = Object.freeze<SensorModel>({
  unit: null,
  base: 50,
  offsetSd: 5,
  amplitude: 15,
  peakHour: 12,
  noiseSd: 2,
  driftSd: 0.5,
  normal: [0, 100],
  limits: [0, 100],
  spike: 40,
  decimals: 2,
});

/** The sensors each simulated device has unless configured. */
export const DEFAULT_SENSORS = Object.freeze(["temperature", "humidity", "pressure"]);

/** The model of `sensor`: its own, or GENERIC_MODEL for a name without one. */
export function sensorModel(sensor: string): SensorModel {
  return Object.hasOwn(SENSOR_MODELS, sensor) ? SENSOR_MODELS[sensor]! : GENERIC_MODEL;
}
