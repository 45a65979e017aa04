import { randomInt } from "node:crypto";
import { defineCommand } from "../common/command.js";
import { type ConfigOf, parsers, setting } from "../common/config.js";
import { createLogger } from "../common/log.js";
import { common, mqttSecurity, securityProblem } from "../common/settings.js";
import { ID_PATTERN, MIN_TS, parseTimestamp } from "../schemas/index.js";
import { BrokerUnreachableError } from "./connect.js";
import { SIM_FORMATS, type SimFormat } from "./formats.js";
import { NO_FAULTS, parseFaults, parseSensors } from "./model.js";
import {
  DEFAULT_WINDOW,
  DRAIN_TIMEOUT_MS,
  type SimulateProgress,
  type SimulateSummary,
  simulate,
} from "./publish.js";
import { DEFAULT_SENSORS } from "./sensors.js";

const MAX_DEVICES = 100_000;
const MAX_WINDOW = 65_000;
const MAX_BATCH = 1_000;
const MAX_DURATION_MS = 7 * 86_400_000;
const MAX_START_TS = Date.UTC(2100, 0, 1);
const yearOf = (ts: number) => new Date(ts).getUTCFullYear();

/** `--start-ts`: a time as a reading's `ts` may give it (digits are epoch ms here), between 2000 and 2100. */
function parseStartTs(raw: string): number {
  const ts = parseTimestamp(/^\d+$/.test(raw) ? Number(raw) : raw);
  if (typeof ts === "string" || ts < MIN_TS || ts > MAX_START_TS) {
    throw new Error(
      `must be epoch milliseconds or ISO-8601 with an offset, between ${yearOf(MIN_TS)} and ${yearOf(MAX_START_TS)}`,
    );
  }
  return ts;
}

const optionalPath = (flag: string, env: string, description: string) =>
  setting<string | undefined>({
    flag,
    env,
    default: undefined,
    defaultLabel: "none",
    description,
    parse: parsers.string(),
  });

const spec = {
  mqttUrl: common.mqttUrl,
  ...mqttSecurity,
  topicPrefix: common.topicPrefix,
  logLevel: common.logLevel,
  devices: setting({
    flag: "devices",
    env: "SIM_DEVICES",
    default: 10,
    description: `Simulated devices (1 to ${MAX_DEVICES.toLocaleString("en-US")}).`,
    parse: parsers.int(1, MAX_DEVICES),
  }),
  sensors: setting<readonly string[]>({
    flag: "sensors",
    env: "SIM_SENSORS",
    default: DEFAULT_SENSORS,
    defaultLabel: DEFAULT_SENSORS.join(","),
    description:
      "Comma list of sensors on every device. temperature, humidity, pressure and co2 have realistic models; other names get unit-less values from 0 to 100.",
    parse: parseSensors,
  }),
  rate: setting({
    flag: "rate",
    env: "SIM_RATE",
    default: 100,
    description:
      "Readings a second for all devices together; 0 publishes as fast as the in-flight window allows.",
    parse: parsers.number(0, 10_000_000),
  }),
  count: setting<number | undefined>({
    flag: "count",
    env: "SIM_COUNT",
    default: undefined,
    defaultLabel: "unlimited",
    description:
      "Stop after this many readings (malformed ones included, duplicates not). With neither --count nor --duration, run until SIGINT/SIGTERM.",
    parse: parsers.int(1, Number.MAX_SAFE_INTEGER),
  }),
  durationMs: setting<number | undefined>({
    flag: "duration",
    env: "SIM_DURATION",
    default: undefined,
    defaultLabel: "unlimited",
    description: "Stop after this long, e.g. 30s, 5m, 2h (at most 7 days).",
    parse: parsers.duration(1, MAX_DURATION_MS),
  }),
  window: setting({
    flag: "window",
    env: "SIM_WINDOW",
    default: DEFAULT_WINDOW,
    description: "Most QoS 1 publishes awaiting their PUBACK at once.",
    parse: parsers.int(1, MAX_WINDOW),
  }),
  faults: setting({
    flag: "faults",
    env: "SIM_FAULTS",
    default: NO_FAULTS,
    defaultLabel: "none",
    description:
      "Fault mix as rates from 0 to 1, e.g. malformed=0.01,duplicate=0.01,reorder=0.01: payloads that break the input contract, valid messages published twice, readings sent after a later one.",
    parse: parseFaults,
  }),
  batchSize: setting({
    flag: "batch-size",
    env: "SIM_BATCH_SIZE",
    default: 1,
    description: `Readings of one device and sensor per message (1 to ${MAX_BATCH}); above 1 the payload is a JSON array.`,
    parse: parsers.int(1, MAX_BATCH),
  }),
  format: setting<SimFormat>({
    flag: "format",
    env: "SIM_FORMAT",
    default: "json",
    description:
      "How devices publish: json (ours, on <TOPIC_PREFIX>/<deviceId>/<sensor>), senml (RFC 8428 packs on <TOPIC_PREFIX>/<deviceId>/senml) or sparkplug (each device a Sparkplug B edge node of --sparkplug-group: NBIRTH, then NDATA by alias; it answers rebirth requests).",
    parse: parsers.oneOf(...SIM_FORMATS),
  }),
  sparkplugGroup: setting({
    flag: "sparkplug-group",
    env: "SIM_SPARKPLUG_GROUP",
    default: "telemetry-sim",
    description:
      "Sparkplug B group id of the simulated edge nodes (--format sparkplug); the gateway needs it in SPARKPLUG_GROUPS.",
    parse: parsers.string({ max: 128, pattern: /^[^/+#]+$/, what: "a group id without / + or #" }),
  }),
  seed: setting({
    flag: "seed",
    env: "SIM_SEED",
    default: () => randomInt(2 ** 32 - 1),
    defaultLabel: "random (printed in the summary)",
    description: "Seed of the simulation: the same seed and settings publish the same messages.",
    parse: parsers.int(0, 2 ** 32 - 1),
  }),
  devicePrefix: setting({
    flag: "device-prefix",
    env: "SIM_DEVICE_PREFIX",
    default: "sim",
    description:
      "Device ids are <prefix>-0001, <prefix>-0002, ... (at most 100 characters, so ids stay within 128).",
    parse: parsers.string({ max: 100, pattern: ID_PATTERN, what: "letters, digits, . _ - :" }),
  }),
  startTs: setting<number | undefined>({
    flag: "start-ts",
    env: "SIM_START_TS",
    default: undefined,
    defaultLabel: "now",
    description: "Time of every device's first reading: epoch ms or ISO-8601 with offset.",
    parse: parseStartTs,
  }),
  intervalMs: setting<number | undefined>({
    flag: "interval",
    env: "SIM_INTERVAL",
    default: undefined,
    defaultLabel: "devices x sensors / rate, 1ms at rate 0",
    description:
      "Time between two readings of one sensor of one device (timestamps advance by it, whatever the real pace), e.g. 1s or 500ms.",
    parse: parsers.duration(1, 86_400_000),
  }),
  recordPath: optionalPath(
    "record",
    "SIM_RECORD",
    "Write every acknowledged valid reading to this file as NDJSON {deviceId,sensor,ts,value,unit,seq}.",
  ),
  summaryJsonPath: optionalPath(
    "summary-json",
    "SIM_SUMMARY_JSON",
    "Write the final summary to this file as JSON.",
  ),
} as const;

export type SimulateCommandConfig = ConfigOf<typeof spec>;

const n = (x: number) => x.toLocaleString("en-US");

function clock(ms: number): string {
  const s = Math.floor(ms / 1_000);
  const h = Math.floor(s / 3_600);
  const mmss = `${Math.floor((s % 3_600) / 60)}:${String(s % 60).padStart(2, "0")}`;
  return h > 0 ? `${h}:${mmss.padStart(5, "0")}` : mmss;
}

/** `simulate: 12,000 sent, 11,500 acked, 4,000/s, 0:03 elapsed`, the rate being publishes since `previous`. */
export function formatProgress(p: SimulateProgress, previous?: SimulateProgress): string {
  const dt = (p.elapsedMs - (previous?.elapsedMs ?? 0)) / 1_000;
  const rate = dt > 0 ? Math.round((p.sent - (previous?.sent ?? 0)) / dt) : 0;
  const faults = p.malformed + p.duplicates + p.reordered > 0;
  return [
    `simulate: ${n(p.sent)} sent, ${n(p.acked)} acked, ${n(rate)}/s, ${clock(p.elapsedMs)} elapsed`,
    faults ? `, ${n(p.malformed)} malformed, ${n(p.duplicates)} duplicates, ${n(p.reordered)} reordered` : "",
    p.connected ? "" : ", broker unreachable, reconnecting",
  ].join("");
}

export function formatSummary(s: SimulateSummary): string {
  return [
    `simulate: stopped by ${s.stoppedBy} after ${clock(s.elapsedMs)} (${n(s.elapsedMs)} ms)`,
    `  ${n(s.generated)} readings, ${n(s.sent)} messages sent, ${n(s.acked)} acked, ${n(s.unacked)} unacked`,
    `  ${n(s.malformed)} malformed, ${n(s.duplicates)} duplicates, ${n(s.reordered)} reordered`,
    `  ${n(s.validAcked)} valid readings acknowledged`,
    `  ${n(s.messagesPerSecond)} messages/s, ${n(s.readingsPerSecond)} readings/s`,
    `  seed ${s.seed}, first reading at ${new Date(s.startTs).toISOString()}, ${n(s.intervalMs)} ms apart`,
  ].join("\n");
}

/** `telemetry simulate`: simulated devices publishing readings over MQTT at QoS 1. */
export const simulateCommand = defineCommand({
  name: "simulate",
  usage: "telemetry simulate [options]",
  summary:
    "Simulated sensors publish readings over MQTT (QoS 1) on <TOPIC_PREFIX>/<deviceId>/<sensor>, with an optional fault mix. Prints progress every second and a summary on stderr.",
  spec,
  check: securityProblem,
  extraHelp: `SIGINT/SIGTERM stops publishing, waits up to ${DRAIN_TIMEOUT_MS / 1_000} s for outstanding PUBACKs, prints the summary and exits 0. Exit 1: the broker could not be reached at start.`,
  run: async (c) => {
    const log = createLogger("simulator", c.logLevel);
    const controller = new AbortController();
    const onSignal = (sig: NodeJS.Signals) => {
      log.info({ signal: sig }, "stopping");
      controller.abort();
    };
    process.on("SIGINT", onSignal);
    process.on("SIGTERM", onSignal);
    let previous: SimulateProgress | undefined;
    try {
      const summary = await simulate(c, {
        log,
        signal: controller.signal,
        onProgress: (p) => {
          process.stderr.write(`${formatProgress(p, previous)}\n`);
          previous = p;
        },
      });
      process.stderr.write(`${formatSummary(summary)}\n`);
      return 0;
    } catch (err) {
      if (controller.signal.aborted && err instanceof BrokerUnreachableError) {
        process.stderr.write("simulate: stopped by signal before the broker answered; nothing published\n");
        return 0;
      }
      process.stderr.write(`simulate: ${err instanceof Error ? err.message : String(err)}\n`);
      return 1;
    } finally {
      process.off("SIGINT", onSignal);
      process.off("SIGTERM", onSignal);
    }
  },
});
