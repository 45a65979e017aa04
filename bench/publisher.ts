import { setImmediate as yieldToEventLoop } from "node:timers/promises";
import { connect, type MqttClient } from "mqtt";
import { forkWorker, heard, tell, type Worker } from "./ipc.js";

/** Sensor names of the benchmark's devices; beyond these, `s<n>`. */
const SENSOR_NAMES = ["temperature", "humidity", "pressure", "co2"];
const PROGRESS_INTERVAL_MS = 500;
const YIELD_EVERY = 256;
const CONNECT_TIMEOUT_MS = 10_000;

/**
 * What the lean publisher sends. Reading `i` (0-based) belongs to key `j = i % keys` (device `j / sensors`, sensor
 * `j % sensors`), has `ts = baseTs + floor(i / keys)` (unique per key, so the natural key never collides) and a value
 * that is an exact multiple of 0.25, so sums compare exactly. `seq` carries the publish time (epoch ms) of the
 * reading, which the pipeline stores untouched: `stored_at - seq` is publish-to-commit latency.
 */
export interface PublisherConfig {
  readonly mqttUrl: string;
  readonly topicPrefix: string;
  readonly devicePrefix: string;
  readonly devices: number;
  readonly sensors: number;
  readonly total: number;
  readonly window: number;
  /** Readings a second; 0 publishes as fast as the window allows. */
  readonly rate: number;
  /** Stop publishing after this long even if `total` is not reached. */
  readonly durationMs?: number | undefined;
  readonly baseTs: number;
  readonly clientId: string;
}

export interface PublisherResult {
  readonly type: "done";
  readonly sent: number;
  readonly acked: number;
  readonly failed: number;
  /** Sum of the values of the acknowledged readings. */
  readonly valueSum: number;
  /** Epoch ms of the first publish, the last publish and the last PUBACK. */
  readonly firstPublishAt: number;
  readonly lastPublishAt: number;
  readonly lastAckAt: number;
}

export function sensorName(index: number): string {
  return SENSOR_NAMES[index] ?? `s${index}`;
}

export function deviceName(prefix: string, index: number): string {
  return `${prefix}-${String(index).padStart(5, "0")}`;
}

export function readingValue(i: number): number {
  return ((i * 7) % 1_000) * 0.25;
}

/** Sum of the values of readings 0 .. n-1. */
export function expectedValueSum(n: number): number {
  let sum = 0;
  for (let i = 0; i < n; i++) sum += readingValue(i);
  return sum;
}

function connectClient(url: string, clientId: string): Promise<MqttClient> {
  const client = connect(url, {
    clientId,
    clean: true,
    protocolVersion: 4,
    keepalive: 60,
    reconnectPeriod: 1_000,
    connectTimeout: CONNECT_TIMEOUT_MS,
  });
  return new Promise((resolve, reject) => {
    client.once("connect", () => resolve(client));
    client.once("error", reject);
  });
}

/** Child side: connects, says "ready", publishes on "start", reports "progress", ends with "done". */
export async function runPublisher(config: PublisherConfig): Promise<void> {
  const client = await connectClient(config.mqttUrl, config.clientId);
  client.on("error", (err) => process.stderr.write(`bench publisher: ${err.message}\n`));
  const keys = config.devices * config.sensors;
  const topics: string[] = [];
  for (let d = 0; d < config.devices; d++) {
    for (let s = 0; s < config.sensors; s++) {
      topics.push(`${config.topicPrefix}/${deviceName(config.devicePrefix, d)}/${sensorName(s)}`);
    }
  }
  await tell({ type: "ready" });
  let stopRequested = false;
  void heard("stop").then(() => {
    stopRequested = true;
  });
  await heard("start");

  let [sent, acked, failed, inFlight, valueSum, lastAckAt] = [0, 0, 0, 0, 0, 0];
  const firstPublishAt = Date.now();
  let lastPublishAt = firstPublishAt;
  let waker: (() => void) | undefined;
  const wake = () => {
    const w = waker;
    waker = undefined;
    w?.();
  };
  const ackWait = () =>
    new Promise<void>((resolve) => {
      waker = resolve;
    });
  const progress = setInterval(() => {
    void tell({ type: "progress", sent, acked, inFlight });
  }, PROGRESS_INTERVAL_MS);

  const t0 = performance.now();
  let sinceYield = 0;
  for (;;) {
    if (sent >= config.total || stopRequested) break;
    const elapsed = performance.now() - t0;
    if (config.durationMs !== undefined && elapsed >= config.durationMs) break;
    if (inFlight >= config.window) {
      await ackWait();
      continue;
    }
    if (config.rate > 0 && sent >= Math.floor((config.rate * elapsed) / 1_000) + 1) {
      await new Promise((resolve) => setTimeout(resolve, 1));
      continue;
    }
    const i = sent++;
    const value = readingValue(i);
    const now = Date.now();
    lastPublishAt = now;
    const payload = `{"ts":${config.baseTs + Math.floor(i / keys)},"value":${value},"unit":"u","seq":${now}}`;
    inFlight++;
    client.publish(topics[i % keys]!, payload, { qos: 1 }, (err) => {
      inFlight--;
      if (err) failed++;
      else {
        acked++;
        valueSum += value;
        lastAckAt = Date.now();
      }
      wake();
    });
    if (++sinceYield >= YIELD_EVERY) {
      sinceYield = 0;
      await yieldToEventLoop();
    }
  }
  while (inFlight > 0) await ackWait();
  clearInterval(progress);
  await new Promise<void>((resolve) => client.end(false, () => resolve()));
  const result: PublisherResult = {
    type: "done",
    sent,
    acked,
    failed,
    valueSum,
    firstPublishAt,
    lastPublishAt,
    lastAckAt,
  };
  await tell(result as unknown as { type: string });
}

/** Parent side: forks the publisher and resolves once it is connected (call `start` to begin). */
export async function forkPublisher(config: PublisherConfig): Promise<Worker<PublisherResult>> {
  const worker = forkWorker<PublisherResult>("publisher", config);
  await worker.ready;
  return worker;
}
