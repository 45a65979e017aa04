/**
 * One measured run of a pipeline (the product's gateway and processor, or the straightforward reference in
 * naive.ts): a load drives it through a private Mosquitto, resources are sampled, and afterwards the SQLite rows
 * give throughput, latency and the exactly-once check.
 */
import { join } from "node:path";
import type { QueueType } from "../amqp/topology.js";
import { startService, untilReady } from "../scripts/spawn.js";
import { inspectStore } from "../store/inspect.js";
import * as m from "./metrics.js";
import { type UsageReport, UsageSampler, type Watched } from "./proc.js";
import * as pub from "./publisher.js";
import * as u from "./util.js";

const POLL_MS = 250;
const STALL_MS = 30_000;
/** Preload that profiles a service like `node --cpu-prof` does (see cpu-profile.ts). */
const CPU_PROFILE_PRELOAD = new URL("./cpu-profile.js", import.meta.url).href;

/** Cumulative counts of each stage at one moment (the product's /metrics, or the reference's own counters). */
export interface StageCounts {
  /** MQTT messages the gateway took in; readings RabbitMQ confirmed to it; deliveries the processor got. */
  readonly gatewayReceived: number;
  readonly gatewayPublished: number;
  readonly deliveries: number;
  /** Rows committed. */
  readonly stored: number;
  /** MQTT messages in the gateway awaiting their confirm (its window in use). */
  readonly gatewayInflight: number;
}

/** The pipeline being measured, started and ready. */
export interface SystemUnderTest {
  readonly pids: Record<string, number>;
  /** Where the readings are now: counters of each stage (`stored` at least). */
  progress(): Promise<StageCounts>;
  /** Counters read just before the stop (the product's /metrics). */
  counters(): Promise<Record<string, number | undefined>>;
  /** Stops it gracefully; resolves with each process's exit code. */
  stop(): Promise<Record<string, number | null>>;
}

export interface Endpoints {
  readonly mqttUrl: string;
  readonly amqpUrl: string;
  readonly queue: string;
  readonly queueType: QueueType;
  readonly topicPrefix: string;
  readonly gatewayId: string;
  readonly dbPath: string;
}

/** The product, as deployed: `telemetry processor` and `telemetry gateway` as processes, default settings. */
export async function startProduct(
  e: Endpoints,
  profileDir?: string,
  extraEnv: Readonly<Record<string, string>> = {},
): Promise<SystemUnderTest> {
  const env = (service: string): Record<string, string> => ({
    ...{ AMQP_URL: e.amqpUrl, MQTT_URL: e.mqttUrl, QUEUE: e.queue, QUEUE_TYPE: e.queueType },
    ...{
      TOPIC_PREFIX: e.topicPrefix,
      GATEWAY_ID: e.gatewayId,
      DB_PATH: e.dbPath,
      HTTP_PORT: "0",
      LOG_LEVEL: "info",
    },
    ...extraEnv,
    ...(profileDir === undefined
      ? {}
      : {
          NODE_OPTIONS: `${process.env.NODE_OPTIONS ?? ""} --import=${CPU_PROFILE_PRELOAD}`.trim(),
          BENCH_CPU_PROFILE_DIR: join(profileDir, service),
        }),
  });
  const processor = await startService("processor", env("processor"));
  const gateway = await startService("gateway", env("gateway")).catch(async (err: unknown) => {
    await processor.stop("SIGKILL");
    throw err;
  });
  // "started" comes before the gateway's MQTT session exists; readings published before it would go nowhere.
  await untilReady(processor, gateway).catch(async (err: unknown) => {
    await Promise.all([processor.stop("SIGKILL"), gateway.stop("SIGKILL")]);
    throw err;
  });
  const scrapeBoth = () => Promise.all([m.scrape(gateway.httpPort), m.scrape(processor.httpPort)]);
  const stageCounts = (gw: m.Samples, pr: m.Samples): StageCounts => ({
    gatewayReceived: m.total(gw, "telemetry_gateway_messages_received_total"),
    gatewayPublished: m.total(gw, "telemetry_gateway_readings_published_total"),
    deliveries: m.total(pr, "telemetry_processor_deliveries_total"),
    stored: m.total(pr, "telemetry_processor_readings_stored_total"),
    gatewayInflight: m.total(gw, "telemetry_gateway_inflight_messages"),
  });
  const ms = (seconds: number | undefined, digits = 9) => u.round((seconds ?? 0) * 1_000, digits);
  return {
    pids: { gateway: gateway.proc.pid ?? 0, processor: processor.proc.pid ?? 0 },
    progress: async () => stageCounts(...(await scrapeBoth())),
    async counters() {
      const [gw, pr] = await scrapeBoth();
      const { gatewayInflight: _, ...counts } = stageCounts(gw, pr);
      return {
        ...counts,
        gatewayRejected: m.total(gw, "telemetry_gateway_rejected_total"),
        duplicates: m.total(pr, "telemetry_processor_duplicates_total"),
        deadLettered: m.total(pr, "telemetry_processor_dead_lettered_total"),
        storeErrors: m.total(pr, "telemetry_processor_store_errors_total"),
        commitMeanMs: ms(m.histogramMean(pr, "telemetry_processor_commit_seconds"), 2),
        batchMean: u.round(m.histogramMean(pr, "telemetry_processor_batch_size") ?? 0, 1),
        receiveToCommitP99BoundMs: ms(m.histogramBound(pr, "telemetry_processor_latency_seconds", 0.99)),
        confirmP99BoundMs: ms(m.histogramBound(gw, "telemetry_gateway_confirm_latency_seconds", 0.99)),
        confirmMeanMs: ms(m.histogramMean(gw, "telemetry_gateway_confirm_latency_seconds"), 1),
      };
    },
    async stop() {
      const codes = { gateway: await gateway.stop(), processor: await processor.stop() };
      const warnings = [...gateway.logs, ...processor.logs].filter((l) => Number(l.level) >= 40);
      for (const w of warnings.slice(0, 5)) u.say(`service said: ${JSON.stringify(w)}`);
      return codes;
    },
  };
}

/** What the readings sent must be found as in the database (the lean publisher's layout, publisher.ts). */
type Expected = Pick<pub.PublisherConfig, "devices" | "sensors" | "devicePrefix" | "baseTs"> & {
  sent: number;
};

/**
 * Reads the database after a run: the commits' timeline and, for readings published from `latencyFrom` (epoch ms)
 * on, publish -> commit, publish -> gateway and gateway -> commit in ms. With `expect`, checks every key holds
 * exactly the readings sent for it (count, first and last ts: the key is unique, so count plus range proves each ts
 * is there once) and the value sum; the problems found are listed (none: every reading is stored exactly once).
 */
export function analyzeRows(dbPath: string, latencyFrom: number, expect?: Expected) {
  using store = inspectStore(dbPath);
  const byTime = new Map<number, number>();
  const [lat, toRecv, toCommit]: [number[], number[], number[]] = [[], [], []];
  for (const [seq, receivedAt, storedAt] of store.times()) {
    byTime.set(storedAt, (byTime.get(storedAt) ?? 0) + 1);
    if (seq !== null && seq >= latencyFrom) {
      lat.push(storedAt - seq);
      toRecv.push(receivedAt - seq);
      toCommit.push(storedAt - receivedAt);
    }
  }
  const { rows, valueSum } = store.totals();
  const problems: string[] = [];
  if (expect) {
    if (rows !== expect.sent) problems.push(`${rows} rows for ${expect.sent} readings sent`);
    const want = pub.expectedValueSum(expect.sent);
    if (valueSum !== want) problems.push(`sum of values ${valueSum}, expected ${want}`);
    const found = new Map(store.series().map((k) => [`${k.device_id}/${k.sensor}`, k]));
    const keys = expect.devices * expect.sensors;
    let bad = 0;
    for (let j = 0; j < keys; j++) {
      const name = `${pub.deviceName(expect.devicePrefix, Math.floor(j / expect.sensors))}/${pub.sensorName(j % expect.sensors)}`;
      const n = u.readingsOfKey(expect.sent, keys, j);
      const k = found.get(name);
      found.delete(name);
      const ok =
        n === 0 ? !k : k?.rows === n && k.firstTs === expect.baseTs && k.lastTs === expect.baseTs + n - 1;
      const what = k ? `${k.rows} (ts ${k.firstTs}..${k.lastTs})` : "none";
      if (!ok && bad++ < 3) problems.push(`key ${name}: expected ${n} readings, found ${what}`);
    }
    if (bad > 3) problems.push(`... ${bad} keys wrong in all`);
    if (found.size > 0) problems.push(`${found.size} keys that were never sent`);
  }
  const commits = [...byTime].map(([t, n]) => ({ t, n }));
  const ms = (xs: number[]) => u.percentiles(Float64Array.from(xs));
  return {
    rows,
    valueSum,
    timeline: u.timeline(commits),
    publishToCommitMs: ms(lat),
    publishToReceiveMs: ms(toRecv),
    receiveToCommitMs: ms(toCommit),
    problems,
    commits,
  };
}

/** What drives a phase: the lean MQTT.js publisher (the default) or the C clients (c-clients.ts). */
export interface Load {
  /** Its processes, sampled with the pipeline's. */
  readonly watch: Record<string, Watched>;
  /** True when each reading's `seq` is its publish time (epoch ms), so publish-to-commit latency can be read. */
  readonly seqIsPublishTime: boolean;
  start(): void;
  /** Readings PUBACKed so far, or undefined when the load cannot tell while it runs. */
  acked(): number | undefined;
  /** Resolves once everything was published (or the load gave up). */
  readonly done: Promise<pub.PublisherResult>;
  /** Asks it to stop publishing. */
  stop(): void;
  /** Ends its processes, by pid; call after the last usage sample. */
  kill(): Promise<void>;
}

/** Starts a load against the phase's broker and topic prefix. */
export type MakeLoad = (mqttUrl: string, topicPrefix: string) => Load | Promise<Load>;

/** The lean MQTT.js publisher (publisher.ts) in its own process, as a {@link Load}. */
async function mqttJsLoad(config: pub.PublisherConfig): Promise<Load> {
  const worker = await pub.forkPublisher(config);
  return {
    watch: { publisher: worker.pid },
    seqIsPublishTime: true,
    start: () => worker.send({ type: "start" }),
    acked: () => Number(worker.latest()?.acked ?? 0),
    done: worker.done,
    stop: () => worker.send({ type: "stop" }),
    kill: () => worker.kill(),
  };
}

export interface PhaseOptions {
  readonly label: string;
  readonly endpoints: Endpoints;
  readonly start: () => Promise<SystemUnderTest>;
  /** The readings sent (for the exactly-once check) and, without `load`, the lean publisher's settings. */
  readonly publisher: Omit<pub.PublisherConfig, "mqttUrl" | "topicPrefix">;
  /** Another load than the lean publisher, sending the readings `publisher` describes. */
  readonly load?: MakeLoad;
  /** Other processes whose CPU and memory are sampled (the brokers). */
  readonly watch: Record<string, number | undefined>;
  /** Stop measuring this long after the first reading is stored, even if not all are (the reference). */
  readonly limitMs?: number;
  /** Share of the publish span whose readings are left out of the latency figures (warm-up). */
  readonly latencyWarmup: number;
  readonly cpus: number;
}

/** Mean and maximum of a quantity over the samples of the steady window. */
export interface Spread {
  readonly mean: number;
  readonly max: number;
}

/**
 * Where the readings published and not yet stored were, on average and at most, in the steady window. The stage
 * in front of which the backlog piles up is the one that limits the pipeline.
 */
export interface Backlog {
  /** PUBACKed by Mosquitto, not yet confirmed by RabbitMQ: queued in Mosquitto or in the gateway. */
  readonly beforeConfirm: Spread;
  /**
   * Confirmed, not yet committed: in the RabbitMQ queue or the processor. (The processor's own delivery counter
   * cannot split the two: while a commit blocks its event loop, its prefetched deliveries wait unread in the socket
   * and its metrics are not served.)
   */
  readonly afterConfirm: Spread;
  /** MQTT messages awaiting their confirm in the gateway (bounded by GATEWAY_INFLIGHT). */
  readonly gatewayInflight: Spread;
}

/** One sample of the stages, with the readings the load got its PUBACK for (from Mosquitto). */
type Sample = StageCounts & { readonly t: number; readonly acked: number };

function backlog(samples: readonly Sample[], from: number, to: number): Backlog {
  const inWindow = samples.filter((s) => s.t >= from && s.t <= to);
  const spread = (f: (s: Sample) => number): Spread => {
    const values = inWindow.map(f);
    const mean = values.length === 0 ? 0 : Math.round(values.reduce((a, b) => a + b, 0) / values.length);
    return { mean, max: Math.max(0, ...values) };
  };
  return {
    beforeConfirm: spread((s) => Math.max(0, s.acked - s.gatewayPublished)),
    afterConfirm: spread((s) => Math.max(0, s.gatewayPublished - s.stored)),
    gatewayInflight: spread((s) => s.gatewayInflight),
  };
}

/** Cumulative stage counts about once a second; `t` in s from `t0`. */
function stageSeries(samples: readonly Sample[], t0: number): Record<string, number[]> {
  const names = ["acked", "gatewayReceived", "gatewayPublished", "deliveries", "stored"] as const;
  const out: Record<string, number[]> = Object.fromEntries(["t", ...names].map((k) => [k, []]));
  let next = 0;
  for (const s of samples) {
    const t = (s.t - t0) / 1_000;
    if (t < next) continue;
    next = Math.floor(t) + 1;
    out.t?.push(u.round(t, 1));
    for (const k of names) out[k]?.push(s[k]);
  }
  return out;
}

/** Runs one phase end to end and deletes its queues afterwards. */
export async function runPhase(o: PhaseOptions) {
  const e = o.endpoints;
  const sut = await o.start();
  let load: Load | undefined;
  try {
    const config = { ...o.publisher, mqttUrl: e.mqttUrl, topicPrefix: e.topicPrefix };
    load = await (o.load ? o.load(e.mqttUrl, e.topicPrefix) : mqttJsLoad(config));
    const sampler = new UsageSampler({ ...sut.pids, ...o.watch, ...load.watch });
    let published: pub.PublisherResult | undefined;
    void load.done.then((r) => {
      published = r;
    });
    load.start();
    let [firstStoredAt, lastLog, ackCounted, cutShort] = [0, Date.now(), true, false];
    const samples: Sample[] = [];
    const progress = () => (samples.at(-1)?.stored ?? 0) + (samples.at(-1)?.acked ?? 0);
    await u.until(
      o.label,
      async () => {
        const counts = await sut.progress();
        // The final count once the load is done: its last progress report may predate its last PUBACKs.
        const ackedNow = published?.acked ?? load?.acked();
        if (ackedNow === undefined) ackCounted = false;
        const acked = ackedNow ?? 0;
        samples.push({ t: Date.now(), acked, ...counts });
        if (counts.stored > 0 && firstStoredAt === 0) firstStoredAt = Date.now();
        if (published && counts.stored >= published.acked) return true;
        if (o.limitMs !== undefined && firstStoredAt > 0 && Date.now() - firstStoredAt >= o.limitMs) {
          cutShort = !published || counts.stored < published.acked;
          return true;
        }
        if (Date.now() - lastLog >= 5_000) {
          lastLog = Date.now();
          const what = ackedNow === undefined ? "publishing" : `${u.fmt(acked)} published`;
          u.say(
            `  ${o.label}: ${what}, ${u.fmt(counts.gatewayPublished)} confirmed to the gateway, ${u.fmt(counts.stored)} stored`,
          );
        }
        return false;
      },
      { pollMs: POLL_MS, stallMs: STALL_MS, progress },
    );
    load.stop();
    const usage: UsageReport = sampler.stop(o.cpus);
    const counters = await sut.counters();
    const exitCodes = await sut.stop();
    const result = published ?? (await load.done);

    const span = result.lastPublishAt - result.firstPublishAt;
    const latencyFrom = load.seqIsPublishTime
      ? result.firstPublishAt + span * o.latencyWarmup
      : Number.POSITIVE_INFINITY;
    const checked = !cutShort && result.failed === 0;
    const rows = analyzeRows(
      e.dbPath,
      latencyFrom,
      checked ? { ...o.publisher, sent: result.sent } : undefined,
    );
    const { first, last } = rows.timeline;
    const steady = u.steadyRate(rows.commits, first, last);
    const split = (from: number, to: number) =>
      to - from > 2_000 ? u.steadyRate(rows.commits, from, to, 0, 0) : undefined;
    return {
      label: o.label,
      publisher: result,
      /** Acknowledged readings a second from the load's first publish to its last PUBACK. */
      offeredPerSecond: Math.round(
        result.acked / (Math.max(1, result.lastAckAt - result.firstPublishAt) / 1_000),
      ),
      /** Rows a second committed in the steady window (first 10% and last 5% of the commit span left out). */
      steady,
      /** The same while the publisher was still publishing, and after it (draining what the MQTT broker queued). */
      whilePublishing: split(steady.from, Math.min(steady.to, result.lastAckAt)),
      afterPublishing: split(Math.max(steady.from, result.lastAckAt), steady.to),
      /** All rows over first publish to last commit, and over first to last commit (like the broker alone's). */
      overallPerSecond: Math.round(rows.rows / (Math.max(1, last - result.firstPublishAt) / 1_000)),
      firstToLastPerSecond: Math.round(rows.rows / (Math.max(1, last - first) / 1_000)),
      cutShort,
      rows: rows.rows,
      perSecond: rows.timeline.perSecond,
      backlog: ackCounted ? backlog(samples, steady.from, steady.to) : undefined,
      stages: stageSeries(samples, result.firstPublishAt),
      publishToCommitMs: rows.publishToCommitMs,
      publishToReceiveMs: rows.publishToReceiveMs,
      receiveToCommitMs: rows.receiveToCommitMs,
      counters,
      exitCodes,
      usage,
      exactlyOnce: { checked, ok: checked && rows.problems.length === 0, problems: rows.problems },
    };
  } catch (err) {
    await sut.stop().catch(() => undefined);
    throw err;
  } finally {
    await load?.kill();
    await u.deleteQueues(e.amqpUrl, e.queue);
  }
}

/** What one phase measured. */
export type PhaseResult = Awaited<ReturnType<typeof runPhase>>;
