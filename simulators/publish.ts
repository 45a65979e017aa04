import { randomBytes } from "node:crypto";
import { type FileHandle, open, writeFile } from "node:fs/promises";
import { performance } from "node:perf_hooks";
import { setImmediate as yieldToEventLoop } from "node:timers/promises";
import type { MqttClient } from "mqtt";
import { redactUrl } from "../common/config.js";
import { type Logger, silentLogger } from "../common/log.js";
import type { MqttSecurityConfig } from "../common/settings.js";
import { connectOnce, endClient, securityOptions } from "./connect.js";
import { FormatShaper, type SimFormat } from "./formats.js";
import { defaultIntervalMs, type FaultRates, type SimMessage, Simulation } from "./model.js";

/** Unacknowledged QoS 1 publishes allowed at once unless configured. */
export const DEFAULT_WINDOW = 500;
/** How long a stop by signal waits for outstanding PUBACKs. */
export const DRAIN_TIMEOUT_MS = 10_000;
const PROGRESS_INTERVAL_MS = 1_000;
/** Publishes between two turns of the event loop, so acks, timers and signals are seen at unlimited rate. */
const YIELD_EVERY = 256;
/** After a stall (broker away, window full) the rate catches up on at most this much lost time, not the whole
 * stall, so a long outage is not followed by a long burst. */
const MAX_CATCH_UP_MS = 1_000;

export interface SimulateConfig extends MqttSecurityConfig {
  /** With TLS files (read once when `simulate` connects) and credentials, which override the URL's. */
  readonly mqttUrl: string;
  readonly topicPrefix: string;
  readonly devices: number;
  readonly sensors: readonly string[];
  readonly devicePrefix: string;
  /** Readings a second for all devices together; 0 publishes as fast as the window allows. */
  readonly rate: number;
  /** Stop after this many readings (malformed ones included, duplicates not). */
  readonly count?: number | undefined;
  /** Stop after this long; with neither `count` nor `durationMs`, run until `signal` aborts. */
  readonly durationMs?: number | undefined;
  /** Most QoS 1 publishes awaiting their PUBACK at once. */
  readonly window: number;
  readonly faults: FaultRates;
  readonly batchSize: number;
  /** How devices publish: our JSON (default), SenML, or Sparkplug B as edge nodes of `sparkplugGroup`. */
  readonly format?: SimFormat | undefined;
  readonly sparkplugGroup?: string | undefined;
  readonly seed: number;
  /** Epoch ms of the first reading; the time `simulate` connects when absent. */
  readonly startTs?: number | undefined;
  /** Ms between two readings of one sensor of one device; derived from `rate` when absent. */
  readonly intervalMs?: number | undefined;
  /** NDJSON file receiving every valid reading whose message was acknowledged, one per line. */
  readonly recordPath?: string | undefined;
  /** JSON file receiving the summary at the end. */
  readonly summaryJsonPath?: string | undefined;
  /** Bound on the wait for outstanding PUBACKs after a stop by signal; DRAIN_TIMEOUT_MS when absent. */
  readonly drainTimeoutMs?: number | undefined;
}

export interface SimulateProgress {
  /** Publishes handed to MQTT.js. */
  readonly sent: number;
  /** Publishes whose PUBACK came back. */
  readonly acked: number;
  readonly inFlight: number;
  readonly malformed: number;
  readonly duplicates: number;
  readonly reordered: number;
  /** Readings the model has made (malformed included, duplicates not). */
  readonly generated: number;
  /** Valid readings in acknowledged, non-duplicate messages: the rows a lossless pipeline stores. */
  readonly validAcked: number;
  readonly connected: boolean;
  readonly elapsedMs: number;
}

export interface SimulateSummary extends SimulateProgress {
  readonly seed: number;
  readonly startTs: number;
  readonly intervalMs: number;
  readonly clientId: string;
  /** Publishes that never got their PUBACK (the drain timed out or the client failed them). */
  readonly unacked: number;
  readonly stoppedBy: "count" | "duration" | "signal";
  /** Publishes a second over the whole run. */
  readonly messagesPerSecond: number;
  readonly readingsPerSecond: number;
  readonly startedAt: string;
  readonly finishedAt: string;
}

export interface SimulateOptions {
  readonly log?: Logger;
  /** Abort to stop publishing; outstanding PUBACKs are then awaited for at most `drainTimeoutMs`. */
  readonly signal?: AbortSignal;
  /** Called every second while publishing. */
  readonly onProgress?: (progress: SimulateProgress) => void;
  /** Called for each acknowledged message, in the order the PUBACKs arrive. */
  readonly onAck?: (message: SimMessage) => void;
}

/**
 * Publishes simulated readings at QoS 1 until `count` readings, `durationMs` or `signal`, whichever comes first,
 * then waits for the outstanding PUBACKs (unbounded after a count or duration stop, so a broker restart near the end
 * loses nothing; at most `drainTimeoutMs` after a signal) and disconnects.
 *
 * At most `window` publishes await their PUBACK at once. If the broker goes away, MQTT.js keeps the unacknowledged
 * publishes in its outgoing store and sends them again after it reconnects (it does so whatever the clean flag),
 * so a broker restart mid-run costs no reading; one that reached the broker before its PUBACK was lost arrives
 * twice, which the natural key downstream absorbs.
 *
 * Throws BrokerUnreachableError when the first connection fails or `signal` aborts before it succeeds (nothing
 * published), or an error of opening or writing the record file (after the run has settled).
 */
export async function simulate(config: SimulateConfig, opts: SimulateOptions = {}): Promise<SimulateSummary> {
  const log = opts.log ?? silentLogger();
  const { signal } = opts;
  const drainTimeoutMs = config.drainTimeoutMs ?? DRAIN_TIMEOUT_MS;
  const intervalMs =
    config.intervalMs ?? defaultIntervalMs(config.rate, config.devices, config.sensors.length);
  const clientId = `telemetry-sim-${randomBytes(6).toString("hex")}`;
  const startedAt = new Date();

  let record: FileHandle | undefined;
  if (config.recordPath) record = await open(config.recordPath, "w");
  let recordBuffer = "";
  let recordWrite: Promise<unknown> = Promise.resolve();
  let recordError: unknown;
  const flushRecord = () => {
    if (!record || recordBuffer === "") return;
    const chunk = recordBuffer;
    const handle = record;
    recordBuffer = "";
    recordWrite = recordWrite
      .then(() => (recordError === undefined ? handle.write(chunk) : undefined))
      .catch((err: unknown) => {
        recordError ??= err;
      });
  };

  let client: MqttClient;
  try {
    log.info({ url: redactUrl(config.mqttUrl), clientId }, "connecting to the MQTT broker");
    client = await connectOnce(config.mqttUrl, securityOptions(config), clientId, signal);
  } catch (err) {
    await record?.close();
    throw err;
  }

  const startTs = config.startTs ?? Date.now();
  const sim = new Simulation({
    seed: config.seed,
    devices: config.devices,
    sensors: config.sensors,
    devicePrefix: config.devicePrefix,
    topicPrefix: config.topicPrefix,
    startTs,
    intervalMs,
    batchSize: config.batchSize,
    faults: config.faults,
    limit: config.count,
  });
  log.info({ clientId, seed: config.seed, startTs, intervalMs }, "connected; publishing");
  const shaper = FormatShaper.attach(client, config, log);

  let connected = true;
  client.on("connect", () => {
    connected = true;
    log.info("reconnected to the MQTT broker; unacknowledged publishes are sent again");
  });
  client.on("offline", () => {
    connected = false;
    log.warn({ inFlight }, "lost the MQTT broker; reconnecting");
  });
  client.on("error", (err) => log[connected ? "warn" : "debug"]({ err: err.message }, "MQTT client error"));

  let sent = 0;
  let acked = 0;
  let failed = 0;
  let inFlight = 0;
  let malformed = 0;
  let duplicates = 0;
  let reordered = 0;
  let validAcked = 0;
  const t0 = performance.now();

  let waker: (() => void) | undefined;
  const wake = () => {
    const w = waker;
    waker = undefined;
    w?.();
  };
  const pause = (ms?: number) =>
    new Promise<void>((resolve) => {
      const timer = ms === undefined ? undefined : setTimeout(wake, ms);
      waker = () => {
        clearTimeout(timer);
        resolve();
      };
    });

  let abortedAt: number | undefined;
  const onAbort = () => {
    abortedAt = performance.now();
    wake();
  };
  if (signal?.aborted) abortedAt = t0;
  else signal?.addEventListener("abort", onAbort, { once: true });
  let durationReached = false;
  const durationTimer =
    config.durationMs === undefined
      ? undefined
      : setTimeout(() => {
          durationReached = true;
          wake();
        }, config.durationMs);

  const progress = (): SimulateProgress => ({
    sent,
    acked,
    inFlight,
    malformed,
    duplicates,
    reordered,
    generated: sim.generated,
    validAcked,
    connected,
    elapsedMs: Math.round(performance.now() - t0),
  });
  const progressTimer = setInterval(() => {
    flushRecord();
    opts.onProgress?.(progress());
  }, PROGRESS_INTERVAL_MS);

  const publish = (message: SimMessage) => {
    inFlight++;
    sent++;
    if (message.kind === "malformed") malformed++;
    else if (message.kind === "duplicate") duplicates++;
    else if (message.kind === "reordered") reordered++;
    client.publish(message.topic, message.payload, { qos: 1 }, (err) => {
      inFlight--;
      if (err) {
        failed++;
      } else {
        acked++;
        if (message.kind === "reading" || message.kind === "reordered") {
          validAcked += message.readings.length;
          if (record) for (const r of message.readings) recordBuffer += `${JSON.stringify(r)}\n`;
        }
        opts.onAck?.(message);
      }
      wake();
    });
  };

  let stoppedBy: SimulateSummary["stoppedBy"] = "count";
  let sinceYield = 0;
  let paceFrom = t0;
  const pump = async (source: Iterator<SimMessage>, paced: boolean): Promise<void> => {
    for (;;) {
      if (abortedAt !== undefined || (paced && durationReached)) return;
      if (inFlight >= config.window) {
        await pause();
        continue;
      }
      if (paced && config.rate > 0) {
        const ahead = paceFrom + (sim.generated * 1_000) / config.rate - performance.now();
        if (ahead >= 1) {
          await pause(ahead);
          continue;
        }
        if (ahead < -MAX_CATCH_UP_MS) paceFrom += -ahead - MAX_CATCH_UP_MS;
      }
      const next = source.next();
      if (next.done) return;
      for (const message of shaper.shape(next.value)) publish(message);
      if (++sinceYield >= YIELD_EVERY) {
        sinceYield = 0;
        await yieldToEventLoop();
      }
    }
  };

  try {
    await pump(sim, true);
    if (durationReached && abortedAt === undefined) {
      stoppedBy = "duration";
      await pump(sim.finish()[Symbol.iterator](), false);
    }
    if (abortedAt !== undefined) stoppedBy = "signal";
    log.info({ stoppedBy, inFlight }, "stopped publishing; waiting for outstanding PUBACKs");
    while (inFlight > 0) {
      if (abortedAt === undefined) {
        await pause();
        continue;
      }
      const left = abortedAt + drainTimeoutMs - performance.now();
      if (left <= 0) {
        log.warn({ inFlight }, "gave up waiting for PUBACKs");
        break;
      }
      await pause(left);
    }
  } finally {
    clearInterval(progressTimer);
    clearTimeout(durationTimer);
    signal?.removeEventListener("abort", onAbort);
    await endClient(client, inFlight === 0);
    flushRecord();
    await recordWrite;
    await record?.close();
  }
  if (recordError !== undefined) {
    throw new Error(
      `writing ${config.recordPath}: ${recordError instanceof Error ? recordError.message : recordError}`,
      {
        cause: recordError,
      },
    );
  }

  const elapsedMs = Math.round(performance.now() - t0);
  const seconds = Math.max(elapsedMs, 1) / 1_000;
  const summary: SimulateSummary = {
    ...progress(),
    elapsedMs,
    seed: config.seed,
    startTs,
    intervalMs,
    clientId,
    unacked: sent - acked,
    stoppedBy,
    messagesPerSecond: Math.round(sent / seconds),
    readingsPerSecond: Math.round(sim.generated / seconds),
    startedAt: startedAt.toISOString(),
    finishedAt: new Date().toISOString(),
  };
  if (failed > 0) log.warn({ failed }, "some publishes failed");
  if (config.summaryJsonPath)
    await writeFile(config.summaryJsonPath, `${JSON.stringify(summary, null, 2)}\n`);
  log.info(summary, "simulation finished");
  return summary;
}
