import { parseArgs } from "node:util";
import type { QueueType } from "../amqp/topology.js";

/** One mosquitto_pub process per device and sensor: beyond this many, the load generator itself is the test. */
const MAX_C_PUBLISHERS = 200;

export const USAGE = `Usage: npm run bench -- [options]     (or: node dist/bench/run.js [options])

End-to-end benchmark of the pipeline (gateway and processor as processes, full delivery guarantee), with the raw
ceilings of each stage and a straightforward reference implementation measured in the same run.

  --devices N          simulated devices, 10 to 10000 (default 100)
  --sensors N          sensors per device, 1 to 16 (default 3)
  --total N            readings in the MQTT.js-driven throughput run (default: 30 s at 60% of the slowest
                       raw ceiling, 1000000 to 2000000, so RSS is judged over 1000000; --short: 20000)
  --window N           QoS 1 publishes in flight at the publisher (default 500)
  --queue-type T       quorum or classic (default quorum, the product default)
  --amqp-url URL       RabbitMQ (default $AMQP_URL or amqp://guest:guest@127.0.0.1:5672)
  --raw-count N        messages/rows per raw ceiling (default 100000; --short: 10000)
  --naive-count N      readings offered to the straightforward reference (default 30000; --short: 2000)
  --naive-seconds S    longest the reference is measured (default 15; --short: 3)
  --latency-sustained R  the sustained readings/s the two latency runs offer 10% and 50% of (default: the
                       steady rate of the pipeline driven by the C publishers, or of the MQTT.js-driven one without
                       them, measured in the same run)
  --latency-seconds S  length of each latency run (default 20; --short: 3)
  --c-readings N       readings of each C-client phase: broker alone, pipeline, pipeline with PUBLISH_BATCH=1
                       (default 400000, at least 10 s of the broker alone here; --short: 10000)
  --c-inflight N       QoS 1 messages in flight per mosquitto_pub (-M) in the C-client phases (default 1000);
                       the broker alone also runs with libmosquitto's default of 20, and the faster is the baseline
  --c-devices N        devices of the C-client phases (default 20), one mosquitto_pub per device and sensor
  --c-sensors N        sensors per device of the C-client phases (default 2)
  --skip-c-clients     skip the C-client phases (mosquitto_pub and mosquitto_sub, from mosquitto-clients)
  --skip-baselines     skip the raw ceilings and the reference (ratios are then not computed)
  --skip-naive         skip the straightforward reference
  --skip-latency       skip the fixed-load latency run
  --skip-spool         skip the spool figures (into the spool with the uplink down, drain, live delay, open)
  --skip-stores        skip the processor's store figures (SQLite: rollups and tiers on, off, tiers off; PostgreSQL x1, x2, x1 without tiers)
  --skip-fleet         skip the processor's RSS and start time at 1,000, 10,000 and 300,000 series
                       (--short: 1,000 and 10,000)
  --skip-payload-rss   skip the gateway's peak RSS against payload size while a private RabbitMQ node blocks
                       publishers (GATEWAY_INFLIGHT_BYTES passed on when set)
  --database-url URL   PostgreSQL for the store figures (default DATABASE_URL when it is postgres://, else
                       postgres://postgres@127.0.0.1:5432/postgres); a database per phase is created and dropped
  --profile DIR        run gateway and processor with node --cpu-prof, profiles in DIR, top functions printed
  --set KEY=VALUE      environment for gateway and processor, e.g. --set GATEWAY_INFLIGHT=4000 (repeatable)
  --out FILE           JSON results (default bench-results/<timestamp>.json)
  --short              a few seconds, for CI smoke tests: small counts, no targets judged
  --keep               keep the work directory (databases, broker config) for inspection
  --help               this text
`;

/** Integer flags: [default, default with --short, min, max]. */
const INTS = {
  devices: [100, 100, 10, 10_000],
  sensors: [3, 3, 1, 16],
  total: [20_000, 20_000, 1_000, 100_000_000],
  window: [500, 500, 1, 65_000],
  "raw-count": [100_000, 10_000, 1_000, 10_000_000],
  "naive-count": [30_000, 2_000, 100, 10_000_000],
  "naive-seconds": [15, 3, 1, 600],
  "latency-sustained": [0, 0, 1, 10_000_000],
  "latency-seconds": [20, 3, 1, 600],
  "c-readings": [400_000, 10_000, 1_000, 100_000_000],
  "c-inflight": [1_000, 1_000, 1, 65_535],
  "c-devices": [20, 20, 1, 500],
  "c-sensors": [2, 2, 1, 16],
} as const;
const FLAGS = [
  "c-clients",
  "baselines",
  "naive",
  "latency",
  "spool",
  "stores",
  "payload-rss",
  "fleet",
] as const;

/**
 * Parses the flags once into everything one `npm run bench` invocation does (USAGE says what each means); throws
 * an Error naming the bad flag. Returns undefined for `--help`.
 */
export function parseOptions(argv: string[], env: NodeJS.ProcessEnv) {
  const strings = ["queue-type", "amqp-url", "database-url", "profile", "out", ...Object.keys(INTS)];
  const { values } = parseArgs({
    args: argv,
    strict: true,
    options: {
      ...Object.fromEntries(strings.map((name) => [name, { type: "string" as const }])),
      ...Object.fromEntries(FLAGS.map((name) => [`skip-${name}`, { type: "boolean" as const }])),
      set: { type: "string", multiple: true },
      short: { type: "boolean" },
      keep: { type: "boolean" },
      help: { type: "boolean" },
    },
  });
  if (values.help) return undefined;
  const short = values.short === true;
  const all = values as Record<string, string | boolean | string[] | undefined>;
  const text = (name: string) => all[name] as string | undefined;
  const skip = (name: (typeof FLAGS)[number]) => all[`skip-${name}`] === true;
  const int = (name: keyof typeof INTS): number => {
    const [full, small, min, max] = INTS[name];
    const raw = text(name);
    const n = raw === undefined ? (short ? small : full) : Number(raw);
    if (!Number.isInteger(n) || n < min || n > max) {
      throw new Error(`--${name}: must be an integer from ${min} to ${max}, got ${JSON.stringify(raw)}`);
    }
    return n;
  };
  const queueType = text("queue-type") ?? "quorum";
  if (queueType !== "quorum" && queueType !== "classic") {
    throw new Error(`--queue-type: must be quorum or classic, got ${JSON.stringify(queueType)}`);
  }
  const serviceEnv: Record<string, string> = {};
  for (const pair of (values.set as string[] | undefined) ?? []) {
    const eq = pair.indexOf("=");
    if (eq <= 0 || !/^[A-Z_][A-Z0-9_]*$/.test(pair.slice(0, eq))) {
      throw new Error(
        `--set: expected KEY=VALUE with an upper-case variable name, got ${JSON.stringify(pair)}`,
      );
    }
    serviceEnv[pair.slice(0, eq)] = pair.slice(eq + 1);
  }
  const [cDevices, cSensors] = [int("c-devices"), int("c-sensors")];
  if (cDevices * cSensors > MAX_C_PUBLISHERS) {
    throw new Error(
      `--c-devices x --c-sensors: at most ${MAX_C_PUBLISHERS} mosquitto_pub processes, got ${cDevices * cSensors}`,
    );
  }
  return {
    short,
    devices: int("devices"),
    sensors: int("sensors"),
    total: text("total") === undefined && !short ? undefined : int("total"),
    window: int("window"),
    queueType: queueType as QueueType,
    amqpUrl: text("amqp-url") ?? env.AMQP_URL ?? "amqp://guest:guest@127.0.0.1:5672",
    rawCount: int("raw-count"),
    naiveCount: int("naive-count"),
    naiveSeconds: int("naive-seconds"),
    latencySustained: text("latency-sustained") === undefined ? undefined : int("latency-sustained"),
    latencySeconds: int("latency-seconds"),
    cReadings: int("c-readings"),
    cInflight: int("c-inflight"),
    cDevices,
    cSensors,
    skipCClients: skip("c-clients"),
    skipBaselines: skip("baselines"),
    skipNaive: skip("naive") || skip("baselines"),
    skipLatency: skip("latency"),
    skipSpool: skip("spool"),
    skipStores: skip("stores"),
    skipPayloadRss: skip("payload-rss"),
    skipFleet: skip("fleet"),
    databaseUrl:
      text("database-url") ??
      (env.DATABASE_URL?.startsWith("postgres") ? env.DATABASE_URL : undefined) ??
      "postgres://postgres@127.0.0.1:5432/postgres",
    profileDir: text("profile"),
    out: text("out"),
    serviceEnv,
    keep: values.keep === true,
  };
}

export type BenchOptions = NonNullable<ReturnType<typeof parseOptions>>;
