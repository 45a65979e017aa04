/**
 * Figures for the gateway's spool (issue 16). Part of `npm run bench`, or alone:
 * `npm run build && node dist/bench/spool.js [READINGS]` (SPOOL_BENCH_SHORT=1 for the small sizes).
 *
 * Steps 1-3 run three times, alternating, in a full run (once in a short one); their medians are reported.
 *
 * 1. Ingest: READINGS readings are queued in the gateway's MQTT session (a private Mosquitto keeping everything),
 *    then a gateway is started and timed until it has taken them all: without a spool against RabbitMQ (PUBACK after
 *    the confirm), and with a spool while the uplink refuses connections (PUBACK once durable on disk).
 * 2. Drain after the outage: a gateway started on that spool with RabbitMQ back, timed from its first confirmed
 *    reading until the spool is empty (no live load; its start-up left out).
 * 3. Bytes on disk per reading, from the spool's size when it held the whole stream.
 * 4. Drain while live readings arrive, and their delay: a spool holding a backlog drains through the real AMQP sink
 *    into RabbitMQ (in-process, no MQTT) while live readings are appended at a quarter of the gateway's no-spool
 *    rate of step 1; each live reading's delay is from its append being durable to RabbitMQ's confirm.
 * 5. Opening a large spool: time and RSS of a fresh process opening it (warm page cache).
 */
import { execFileSync } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { AmqpSink } from "../amqp/sink.js";
import { silentLogger } from "../common/log.js";
import type { OutgoingBatch } from "../common/outgoing.js";
import type { Sink } from "../common/pipeline.js";
import { SchemaRegistry } from "../schemas/index.js";
import { freePort, startPrivateMosquitto } from "../scripts/private-brokers.js";
import { type Service, startService, untilReady } from "../scripts/spawn.js";
import { NO_FAULTS } from "../simulators/model.js";
import { simulate } from "../simulators/publish.js";
import { DEFAULT_SENSORS } from "../simulators/sensors.js";
import { DRAIN_WINDOW, startSpoolInput } from "../spool/input.js";
import { SpoolStore } from "../spool/store.js";
import { metric, scrape, total } from "./metrics.js";
import { readProc } from "./proc.js";
import { deleteQueues, markdownTable, median, fmt as n, percentiles, round, until } from "./util.js";

/** Sizes of a full run and of a short one (`--short`, CI: under a minute). */
const SIZES = {
  full: { readings: 100_000, backlog: 200_000, openMiB: 1_024 },
  short: { readings: 5_000, backlog: 20_000, openMiB: 64 },
} as const;
const POLL = { pollMs: 20 } as const;
/** Ingest and drain are measured this many times each, alternating, in a full run. */
const REPEATS = 3;
/** Live readings arrive at this share of the gateway's no-spool rate (at least `rateMin`) while the backlog drains. */
const LIVE = { share: 0.25, rateMin: 500, tickMs: 10 } as const;
/** A 100-byte datum: the gateway's Avro readings are about that size. */
const DATUM_BYTES = 100;
/** Appends in flight at once while writing a spool (the gateway has at most GATEWAY_INFLIGHT). */
const APPEND_CHUNK = 5_000;
const MIB = 1_048_576;
const DAY_MS = 86_400_000;

/**
 * Issue 16's targets. A live reading must never wait behind hours of backlog (no number given: one second);
 * opening takes at most `openRssOverMiB` over a bare node whatever the size (a segment is at most 64 MiB).
 */
const TARGET = { ingestRatio: 0.9, drainRatio: 3, liveP99Ms: 1_000, openRssOverMiB: 64 } as const;

export interface SpoolBenchOptions {
  readonly amqpUrl: string;
  /** Scratch directory; the bench writes under `<workDir>/spool-bench` and deletes it. */
  readonly workDir: string;
  /** Unique per run: names the queues, topics and gateway ids (deleted afterwards). */
  readonly runId: string;
  readonly short: boolean;
  readonly say: (line: string) => void;
  /** Readings queued for the ingest and drain phases (default 100,000, so start-up weighs little; short 5,000). */
  readonly readings?: number | undefined;
}

/** Appends `count` records of `datum` with ids `<prefix>-<i>`, APPEND_CHUNK at a time; each resolves once durable. */
async function appendMany(store: SpoolStore, count: number, datum: Buffer, prefix?: string): Promise<void> {
  for (let i = 0; i < count; i += APPEND_CHUNK) {
    const ids = Array.from(
      { length: Math.min(APPEND_CHUNK, count - i) },
      (_, j) => prefix && `${prefix}-${i + j}`,
    );
    await Promise.all(ids.map((messageId) => appendOne(store, datum, messageId)));
  }
}

/** Resolves with the time the record is durable. */
const appendOne = (store: SpoolStore, datum: Buffer, messageId: string | undefined) =>
  new Promise<number>((resolve) =>
    store.append([{ route: "readings", datum, messageId, receivedAt: Date.now() }], () =>
      resolve(performance.now()),
    ),
  );

/**
 * Runs the spool's figures on this machine: a private Mosquitto, the RabbitMQ at `amqpUrl`, real gateway processes
 * (`npm run build` first). Every queue it declares is named after `runId` and deleted; its files go under `workDir`
 * and are deleted. Short: about 40 s (a 64 MiB spool opened); full: a few minutes (1 GiB).
 */
export async function runSpoolBench(opts: SpoolBenchOptions) {
  const size = opts.short ? SIZES.short : SIZES.full;
  const readings = opts.readings ?? size.readings;
  const { amqpUrl, say } = opts;
  const dir = join(opts.workDir, "spool-bench");
  mkdirSync(dir, { recursive: true });
  const mosquitto = await startPrivateMosquitto({ maxQueued: 0 });
  const dead = `amqp://guest:guest@127.0.0.1:${await freePort()}`;
  const services: Service[] = [];
  const queues: string[] = [];
  /** Each repetition's figure (three alternating runs in a full bench, one in a short one); medians are reported. */
  const list = (): number[] => [];
  const runs = {
    noSpool: list(),
    spool: list(),
    drain: list(),
    bytes: list(),
    cpuUsNoSpool: list(),
    cpuUsSpool: list(),
  };
  const gateway = async (env: Record<string, string>) => {
    const s = await startService("gateway", env);
    services.push(s);
    return s;
  };

  /** One timed intake of `readings` queued in the gateway's session; with a spool, then its drain. */
  const ingest = async (spooled: boolean, rep: number): Promise<void> => {
    const mode = spooled ? "spool-uplink-down" : "no-spool";
    const id = `bench-${opts.runId}-spool-${mode}-${rep}`;
    queues.push(id);
    const env = {
      ...{
        MQTT_URL: mosquitto.url,
        AMQP_URL: spooled ? dead : amqpUrl,
        QUEUE: id,
        TOPIC_PREFIX: id,
        GATEWAY_ID: id,
      },
      ...{ HTTP_PORT: "0", LOG_LEVEL: "info", ...(spooled ? { SPOOL_PATH: join(dir, `spool-${rep}`) } : {}) },
    };
    // The session first (a gateway subscribes once), then the stream queued in it while no gateway runs.
    const first = await gateway(env);
    await untilReady(first);
    await first.stop("SIGTERM");
    const stream = {
      mqttUrl: mosquitto.url,
      topicPrefix: id,
      devices: 50,
      sensors: DEFAULT_SENSORS,
      devicePrefix: "dev",
    };
    const pace = { rate: 0, count: readings, window: 1_000, faults: NO_FAULTS, batchSize: 1, seed: 16 };
    await simulate({ ...stream, ...pace }, { log: silentLogger() });
    const started = performance.now();
    const g = await gateway(env);
    const done = spooled
      ? "telemetry_gateway_spool_depth_readings"
      : "telemetry_gateway_readings_published_total";
    await until(`${mode}: all taken`, async () => (await metric(g.httpPort, done)) >= readings, POLL);
    const rate = Math.round(readings / ((performance.now() - started) / 1_000));
    // The gateway's own CPU (start-up included, alike in both modes): less sensitive to a loaded machine than time.
    const cpuUs = Math.round(((readProc(g.proc.pid ?? 0)?.cpuMs ?? Number.NaN) * 1_000) / readings);
    say(`  ${mode} (${rep + 1}): ${n(rate)} readings/s taken, ${cpuUs} µs CPU each`);
    (spooled ? runs.spool : runs.noSpool).push(rate);
    (spooled ? runs.cpuUsSpool : runs.cpuUsNoSpool).push(cpuUs);
    if (spooled)
      runs.bytes.push(Math.round((await metric(g.httpPort, "telemetry_gateway_spool_bytes")) / readings));
    await g.stop("SIGTERM");
    if (!spooled) return;
    const d = await gateway({ ...env, AMQP_URL: amqpUrl });
    // From the first confirmed reading to the empty spool: start-up and RabbitMQ's connect left out.
    let from: { at: number; drained: number } | undefined;
    const empty = async () => {
      const samples = await scrape(d.httpPort);
      const drained = total(samples, "telemetry_gateway_spool_drained_total");
      if (from === undefined && drained > 0) from = { at: performance.now(), drained };
      return total(samples, "telemetry_gateway_spool_depth_readings") === 0;
    };
    await until("drained", empty, POLL);
    const start = from ?? { at: performance.now(), drained: readings };
    const drain = Math.round(
      (readings - start.drained) / (Math.max(1, performance.now() - start.at) / 1_000),
    );
    runs.drain.push(drain);
    say(`  drain after the outage (${rep + 1}, no live load): ${n(drain)} readings/s`);
    await d.stop("SIGTERM");
  };

  try {
    // Alternating, so a burst of load from elsewhere on the machine hits both alike; the medians are reported.
    for (let rep = 0; rep < (opts.short ? 1 : REPEATS); rep++) {
      await ingest(false, rep);
      await ingest(true, rep);
    }
    const noSpool = median(runs.noSpool);
    const liveRate = Math.max(LIVE.rateMin, Math.round(noSpool * LIVE.share));
    say(`  drain of a ${n(size.backlog)} backlog while ${liveRate}/s live readings arrive`);
    const liveQueue = `bench-${opts.runId}-spool-live`;
    queues.push(liveQueue);
    const live = await drainWhileLive(join(dir, "live"), amqpUrl, liveQueue, size.backlog, liveRate);
    say(`  ${n(live.perSecond)} readings/s, live p99 ${live.liveDelayMs.p99} ms`);
    say(`  opening a ${size.openMiB} MiB spool`);
    const opened = await openLarge(join(dir, "big"), size.openMiB);
    say(`  ${opened.open.ms} ms, RSS ${opened.open.rssMiB} MiB`);
    return {
      short: opts.short,
      readings,
      runs,
      ingest: {
        /** The gateway without spool, RabbitMQ up (PUBACK after the confirm), start-up included. */
        noSpoolPerSecond: noSpool,
        /** The gateway with a spool, uplink refusing connections (PUBACK after the fsync), start-up included. */
        spoolUplinkDownPerSecond: median(runs.spool),
        ratio: round(median(runs.spool) / noSpool, 2),
      },
      bytesPerReading: median(runs.bytes),
      /** A restarted gateway draining the spool of step 1, RabbitMQ back, no live load, start-up left out. */
      drainAfterOutage: { readings, perSecond: median(runs.drain) },
      drainWhileLive: live,
      ...opened,
    };
  } finally {
    await Promise.all(services.map((s) => s.stop("SIGKILL")));
    await mosquitto.stop();
    for (const q of queues) await deleteQueues(amqpUrl, q);
    rmSync(dir, { recursive: true, force: true });
  }
}

export type SpoolBenchResult = Awaited<ReturnType<typeof runSpoolBench>>;

/** Step 4: the drain rate of a backlog and the delay of live readings appended while it drains into RabbitMQ. */
async function drainWhileLive(
  dir: string,
  amqpUrl: string,
  queue: string,
  backlog: number,
  liveRate: number,
) {
  const schemas = SchemaRegistry.load();
  const store = SpoolStore.open({
    dir,
    maxBytes: 4_294_967_296,
    maxAgeMs: DAY_MS,
    full: "block",
    log: silentLogger(),
  });
  const datum = Buffer.alloc(DATUM_BYTES, 1);
  await appendMany(store, backlog, datum, "backlog");
  const amqpSink = new AmqpSink({
    ...{
      url: amqpUrl,
      queue,
      queueType: "quorum",
      name: "spool bench",
      log: silentLogger(),
      stallTimeoutMs: 60_000,
    },
    framing: { single: (d) => schemas.frameSingle(d), batch: (d, bytes) => schemas.frameBatch(d, bytes) },
    batching: { maxReadings: 500, maxBytes: 262_144, window: 8 },
    messageIdPrefix: queue,
  });
  await amqpSink.start();
  const durableAt = new Map<string, number>();
  const delays: number[] = [];
  let backlogDone = 0;
  const timing: Sink<OutgoingBatch> = {
    write: (d) =>
      amqpSink.write({
        item: d.item,
        ack: () => {
          const m = d.item[0];
          const at = durableAt.get(m?.route === "readings" ? (m.messageId ?? "") : "");
          if (at !== undefined) delays.push(performance.now() - at);
          else backlogDone++;
          d.ack();
        },
      }),
    get inFlight() {
      return amqpSink.inFlight;
    },
    health: () => amqpSink.health(),
    stop: () => amqpSink.stop(),
    [Symbol.asyncDispose]: () => amqpSink.stop(),
  };
  const started = performance.now();
  const input = startSpoolInput(store, timing, { log: silentLogger(), drainTimeoutMs: 5_000 });
  let [live, owed, last] = [0, 0, performance.now()];
  const ticker = setInterval(() => {
    // Paced by the clock, not by the ticks: a late tick sends what the rate owes.
    const now = performance.now();
    owed += (liveRate * (now - last)) / 1_000;
    last = now;
    for (; owed >= 1; owed--) {
      const id = `live-${live++}`;
      void appendOne(store, datum, id).then((t) => durableAt.set(id, t));
    }
  }, LIVE.tickMs);
  try {
    await until("backlog drained", () => backlogDone >= backlog, POLL);
    const drainMs = performance.now() - started;
    clearInterval(ticker);
    await until("live readings confirmed", () => delays.length >= live, { ...POLL, stallMs: 60_000 });
    const p = percentiles(Float64Array.from(delays));
    const perSecond = Math.round(backlog / (drainMs / 1_000));
    const liveDelayMs = { p50: Math.round(p.p50), p99: Math.round(p.p99), max: Math.round(p.max) };
    return {
      backlog,
      liveRate,
      liveReadings: live,
      perSecond,
      ratioToLive: round(perSecond / liveRate, 1),
      liveDelayMs,
    };
  } finally {
    clearInterval(ticker);
    await input.stop();
    await amqpSink.stop();
    store.close();
  }
}

/** Step 5: writes a spool of `mib` MiB directly (timing the appends alone), then times a fresh process opening it. */
async function openLarge(dir: string, mib: number) {
  const maxBytes = (mib + 64) * MIB;
  const store = SpoolStore.open({ dir, maxBytes, maxAgeMs: DAY_MS, full: "block", log: silentLogger() });
  // Record header 32, batch framing 4 + 9 + 6, the datum.
  const records = Math.floor((mib * MIB) / (32 + 4 + 9 + 6 + DATUM_BYTES));
  const writeStart = performance.now();
  await appendMany(store, records, Buffer.alloc(DATUM_BYTES, 7));
  const directAppendPerSecond = Math.round(records / ((performance.now() - writeStart) / 1_000));
  store.close();
  const script = `
    const { SpoolStore } = await import(${JSON.stringify(new URL("../spool/store.js", import.meta.url).href)});
    const log = { info() {}, warn() {}, error() {}, debug() {} };
    const t = performance.now();
    const s = SpoolStore.open({ dir: ${JSON.stringify(dir)}, maxBytes: ${maxBytes}, maxAgeMs: ${DAY_MS}, full: "block", log });
    const ms = performance.now() - t;
    const d = s.depth();
    s.close();
    console.log(JSON.stringify({ ms, rssMiB: process.memoryUsage().rss / 1048576, records: d.records, bytes: d.bytes }));
  `;
  const node = (code: string) =>
    JSON.parse(execFileSync(process.execPath, ["--input-type=module", "-e", code]).toString());
  const bare = node("console.log(JSON.stringify({rssMiB: process.memoryUsage().rss/1048576}))") as {
    rssMiB: number;
  };
  // Warm page cache: dropping it needs root. Opening reads each sealed segment's trailer and scans the newest.
  const opened = node(script) as { ms: number; rssMiB: number; records: number; bytes: number };
  return {
    /** Spool appends alone (100-byte datums, group commit), while the large spool is written. */
    directAppendPerSecond,
    open: {
      mib: Math.round(opened.bytes / MIB),
      records: opened.records,
      ms: Math.round(opened.ms),
      rssMiB: Math.round(opened.rssMiB),
      bareRssMiB: Math.round(bare.rssMiB),
    },
  };
}

/**
 * The spool's figures as markdown: each figure with its target, the ratio and a one-line verdict. A short run
 * judges nothing (its sizes are too small to hold a target to).
 */
export function spoolReport(r: SpoolBenchResult): string {
  const verdict = (ok: boolean, yes: string, no: string) =>
    r.short ? "not judged (--short)" : ok ? `met: ${yes}` : `MISSED: ${no}`;
  const w = r.drainWhileLive;
  const openOver = Math.max(0, r.open.rssMiB - r.open.bareRssMiB);
  const of = (xs: readonly number[]) => (xs.length > 1 ? `, median of ${xs.map(n).join(" / ")}` : "");
  const [cpuSpool, cpuNoSpool] = [median(r.runs.cpuUsSpool), median(r.runs.cpuUsNoSpool)];
  const drainRatio = r.drainAfterOutage.perSecond / w.liveRate;
  const rows: string[][] = [
    [
      `readings/s into the spool, uplink down (${n(r.readings)} queued, start-up included${of(r.runs.spool)})`,
      n(r.ingest.spoolUplinkDownPerSecond),
      `>= ${TARGET.ingestRatio} x the gateway without spool (${n(r.ingest.noSpoolPerSecond)}/s${of(r.runs.noSpool)})`,
      r.ingest.ratio.toFixed(2),
      verdict(
        r.ingest.ratio >= TARGET.ingestRatio,
        "the spool takes readings as fast as RabbitMQ would",
        "the spool slows intake",
      ),
    ],
    [
      `gateway CPU µs per reading taken, with spool (uplink down) / without (start-up included${of(r.runs.cpuUsSpool)})`,
      n(cpuSpool),
      `none (without spool: ${n(cpuNoSpool)} µs${of(r.runs.cpuUsNoSpool)})`,
      (cpuSpool / Math.max(1, cpuNoSpool)).toFixed(2),
      "figure: what the spool costs the gateway, whatever the machine's load",
    ],
    [
      `drain readings/s of a ${n(w.backlog)} backlog WHILE ${n(w.liveRate)} live readings/s arrive (in-process AMQP sink)`,
      n(w.perSecond),
      `>= ${TARGET.drainRatio} x the live rate`,
      w.ratioToLive.toFixed(1),
      verdict(
        w.ratioToLive >= TARGET.drainRatio,
        "a backlog shrinks while live readings keep arriving",
        "a backlog shrinks too slowly under live load",
      ),
    ],
    [
      `drain readings/s after the outage, restarted gateway, no live load (${n(r.drainAfterOutage.readings)}, first confirm to empty${of(r.runs.drain)})`,
      n(r.drainAfterOutage.perSecond),
      `>= ${TARGET.drainRatio} x the live rate above`,
      drainRatio.toFixed(1),
      verdict(
        drainRatio >= TARGET.drainRatio,
        "the gateway process drains fast enough",
        "the gateway process drains too slowly",
      ),
    ],
    [
      `p99 delay of live readings while the backlog drains, ms (durable in the spool -> RabbitMQ confirm; p50 ${w.liveDelayMs.p50}, max ${w.liveDelayMs.max}, ${n(w.liveReadings)} readings)`,
      String(w.liveDelayMs.p99),
      `<= ${n(TARGET.liveP99Ms)} ms (at most ${n(DRAIN_WINDOW)} records ahead of a live one)`,
      (w.liveDelayMs.p99 / TARGET.liveP99Ms).toFixed(2),
      verdict(
        w.liveDelayMs.p99 <= TARGET.liveP99Ms,
        "live readings are not stuck behind the backlog",
        "live readings wait too long behind the backlog",
      ),
    ],
    [
      "bytes on disk per reading (segment files / readings spooled)",
      String(r.bytesPerReading),
      "none (sizing: hours x readings/s x this)",
      "-",
      "figure for sizing SPOOL_MAX_BYTES",
    ],
    [
      `ms to open a ${n(r.open.mib)} MiB spool (${n(r.open.records)} records), fresh process, warm cache`,
      n(r.open.ms),
      "none (bounded: trailers of sealed segments, one segment scanned)",
      "-",
      "figure",
    ],
    [
      `RSS MiB after opening it (a bare node: ${r.open.bareRssMiB})`,
      String(r.open.rssMiB),
      `bounded: <= ${TARGET.openRssOverMiB} MiB over a bare node, whatever the spool's size`,
      (openOver / TARGET.openRssOverMiB).toFixed(2),
      verdict(
        openOver <= TARGET.openRssOverMiB,
        "memory does not grow with the spool",
        "opening takes memory in proportion to the spool",
      ),
    ],
    [
      `spool appends alone, readings/s (${DATUM_BYTES}-byte datums, group commit)`,
      n(r.directAppendPerSecond),
      "none",
      "-",
      "figure",
    ],
  ];
  const head = ["figure", ">measured", "target", ">ratio", "verdict"];
  return ["## Spool (issue 16)", "", ...markdownTable(head, rows)].join("\n");
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const readings = process.argv[2] === undefined ? undefined : Number(process.argv[2]);
  if (readings !== undefined && !(Number.isSafeInteger(readings) && readings > 0)) {
    process.stderr.write("usage: node dist/bench/spool.js [READINGS]\n");
    process.exit(2);
  }
  const workDir = mkdtempSync(join(tmpdir(), "telemetry-spool-bench-"));
  try {
    const r = await runSpoolBench({
      ...{ amqpUrl: process.env.AMQP_URL ?? "amqp://guest:guest@127.0.0.1:5672", workDir, readings },
      ...{ runId: `${Date.now().toString(36)}-${process.pid}`, short: process.env.SPOOL_BENCH_SHORT === "1" },
      say: (line) => process.stderr.write(`spool bench: ${line}\n`),
    });
    process.stdout.write(`${spoolReport(r)}\n\n${JSON.stringify(r, null, 2)}\n`);
  } finally {
    rmSync(workDir, { recursive: true, force: true });
  }
}
