/**
 * One measured run of a pipeline (the product's gateway and processor, or the straightforward reference): a lean
 * publisher drives it through a private Mosquitto, resources are sampled, and afterwards the SQLite rows give
 * throughput, latency and the exactly-once check.
 */
import { join } from "node:path";
import type { QueueType } from "../amqp/topology.js";
import { startService, untilReady } from "../scripts/spawn.js";
import { inspectStore } from "../store/inspect.js";
import { forkWorker, type Worker } from "./ipc.js";
import type { NaiveGatewayConfig, NaiveProcessorConfig } from "./naive.js";
import { type ProcessUsage, type UsageReport, UsageSampler, type Watched } from "./proc.js";
import {
  deviceName,
  expectedValueSum,
  forkPublisher,
  type PublisherConfig,
  type PublisherResult,
  sensorName,
} from "./publisher.js";
import {
  type Commit,
  deleteQueues,
  histogramBound,
  histogramMean,
  type Percentiles,
  percentiles,
  readingsOfKey,
  round,
  type Samples,
  type SteadyRate,
  say,
  scrape,
  steadyRate,
  type Timeline,
  timeline,
  total,
} from "./util.js";

const POLL_MS = 250;
/** Preload that profiles a service like `node --cpu-prof` does (see cpu-profile.ts). */
const CPU_PROFILE_PRELOAD = new URL("./cpu-profile.js", import.meta.url).href;
const STALL_MS = 30_000;

/** Cumulative counts of each stage at one moment (the product's /metrics, or the reference's own counters). */
export interface StageCounts {
  /** MQTT messages the gateway took in. */
  readonly gatewayReceived: number;
  /** Readings RabbitMQ confirmed to the gateway. */
  readonly gatewayPublished: number;
  /** Deliveries the processor got from the queue. */
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
  const env: Record<string, string> = {
    AMQP_URL: e.amqpUrl,
    MQTT_URL: e.mqttUrl,
    QUEUE: e.queue,
    QUEUE_TYPE: e.queueType,
    TOPIC_PREFIX: e.topicPrefix,
    GATEWAY_ID: e.gatewayId,
    DB_PATH: e.dbPath,
    HTTP_PORT: "0",
    LOG_LEVEL: "info",
    ...extraEnv,
  };
  const profiled = (service: string): Record<string, string> => {
    if (profileDir === undefined) return env;
    const inherited = process.env.NODE_OPTIONS ?? "";
    return {
      ...env,
      NODE_OPTIONS: `${inherited} --import=${CPU_PROFILE_PRELOAD}`.trim(),
      BENCH_CPU_PROFILE_DIR: join(profileDir, service),
    };
  };
  const processor = await startService("processor", profiled("processor"));
  const gateway = await startService("gateway", profiled("gateway")).catch(async (err: unknown) => {
    await processor.stop("SIGKILL");
    throw err;
  });
  // "started" comes before the gateway's MQTT session exists; readings published before it would go nowhere.
  await untilReady(processor, gateway).catch(async (err: unknown) => {
    await Promise.all([processor.stop("SIGKILL"), gateway.stop("SIGKILL")]);
    throw err;
  });
  const pid = (p: number | undefined) => {
    if (p === undefined) throw new Error("service without a pid");
    return p;
  };
  const scrapeBoth = () => Promise.all([scrape(gateway.httpPort), scrape(processor.httpPort)]);
  const stageCounts = (gw: Samples, pr: Samples): StageCounts => ({
    gatewayReceived: total(gw, "telemetry_gateway_messages_received_total"),
    gatewayPublished: total(gw, "telemetry_gateway_readings_published_total"),
    deliveries: total(pr, "telemetry_processor_deliveries_total"),
    stored: total(pr, "telemetry_processor_readings_stored_total"),
    gatewayInflight: total(gw, "telemetry_gateway_inflight_messages"),
  });
  const ms = (seconds: number | undefined, digits: number) => round((seconds ?? 0) * 1_000, digits);
  return {
    pids: { gateway: pid(gateway.proc.pid), processor: pid(processor.proc.pid) },
    progress: async () => stageCounts(...(await scrapeBoth())),
    async counters() {
      const [gw, pr] = await scrapeBoth();
      const { gatewayInflight: _, ...counts } = stageCounts(gw, pr);
      return {
        ...counts,
        gatewayRejected: total(gw, "telemetry_gateway_rejected_total"),
        duplicates: total(pr, "telemetry_processor_duplicates_total"),
        deadLettered: total(pr, "telemetry_processor_dead_lettered_total"),
        storeErrors: total(pr, "telemetry_processor_store_errors_total"),
        commitMeanMs: ms(histogramMean(pr, "telemetry_processor_commit_seconds"), 2),
        batchMean: round(histogramMean(pr, "telemetry_processor_batch_size") ?? 0, 1),
        receiveToCommitP99BoundMs: ms(histogramBound(pr, "telemetry_processor_latency_seconds", 0.99), 9),
        confirmP99BoundMs: ms(histogramBound(gw, "telemetry_gateway_confirm_latency_seconds", 0.99), 9),
        confirmMeanMs: ms(histogramMean(gw, "telemetry_gateway_confirm_latency_seconds"), 1),
      };
    },
    async stop() {
      const [g, p] = [await gateway.stop(), await processor.stop()];
      const warnings = [...gateway.logs, ...processor.logs].filter((l) => Number(l.level) >= 40);
      for (const w of warnings.slice(0, 5))
        process.stderr.write(`bench: service said: ${JSON.stringify(w)}\n`);
      return { gateway: g, processor: p };
    },
  };
}

/** The straightforward reference: naive gateway and naive processor, each its own process. */
export async function startNaive(e: Endpoints): Promise<SystemUnderTest> {
  const processor = forkWorker<{ type: "done"; stored: number }>("naive-processor", {
    amqpUrl: e.amqpUrl,
    queue: e.queue,
    queueType: e.queueType,
    dbPath: e.dbPath,
  } satisfies NaiveProcessorConfig);
  await processor.ready;
  const gateway = forkWorker<{ type: "done"; received: number; published: number }>("naive-gateway", {
    mqttUrl: e.mqttUrl,
    amqpUrl: e.amqpUrl,
    queue: e.queue,
    queueType: e.queueType,
    topicPrefix: e.topicPrefix,
    gatewayId: e.gatewayId,
  } satisfies NaiveGatewayConfig);
  await gateway.ready.catch(async (err: unknown) => {
    await processor.kill();
    throw err;
  });
  const stopOne = async (w: Worker<unknown>) => {
    w.send({ type: "stop" });
    const ok = await Promise.race([
      w.done.then(() => 0),
      new Promise<number>((resolve) => setTimeout(() => resolve(1), 10_000)),
    ]).catch(() => 1);
    await w.kill();
    return ok;
  };
  return {
    pids: { gateway: gateway.pid, processor: processor.pid },
    progress: async () => {
      const stored = Number(processor.latest()?.stored ?? 0);
      const published = Number(gateway.latest()?.published ?? 0);
      return {
        gatewayReceived: Number(gateway.latest()?.received ?? 0),
        gatewayPublished: published,
        deliveries: stored,
        stored,
        gatewayInflight: 1,
      };
    },
    counters: async () => ({
      gatewayReceived: Number(gateway.latest()?.received ?? 0),
      gatewayPublished: Number(gateway.latest()?.published ?? 0),
      stored: Number(processor.latest()?.stored ?? 0),
    }),
    async stop() {
      return { gateway: await stopOne(gateway), processor: await stopOne(processor) };
    },
  };
}

export interface RowAnalysis {
  readonly rows: number;
  readonly valueSum: number;
  readonly timeline: Timeline;
  /** Publish (seq) to stored_at, publish to gateway receive, gateway receive to stored_at; ms. */
  readonly publishToCommitMs: Percentiles;
  readonly publishToReceiveMs: Percentiles;
  readonly receiveToCommitMs: Percentiles;
  /** Problems found by the exactly-once check (empty: every reading sent is stored exactly once). */
  readonly problems: string[];
  /** (epoch ms, rows) of every commit, for the steady-state windows. */
  readonly commits: Commit[];
}

/**
 * Reads the database after a run. Latency counts readings published from `latencyFrom` (epoch ms) on. With
 * `expect`, checks every key holds exactly the readings the publisher sent for it (count, first and last ts;
 * the key is unique, so count plus range proves each ts is there once) and the value sum.
 */
export function analyzeRows(
  dbPath: string,
  latencyFrom: number,
  expect?: { sent: number; devices: number; sensors: number; devicePrefix: string; baseTs: number },
): RowAnalysis {
  const store = inspectStore(dbPath);
  try {
    const commitsByTime = new Map<number, number>();
    const lat: number[] = [];
    const toRecv: number[] = [];
    const toCommit: number[] = [];
    for (const [seq, receivedAt, storedAt] of store.times()) {
      commitsByTime.set(storedAt, (commitsByTime.get(storedAt) ?? 0) + 1);
      if (seq !== null && seq >= latencyFrom) {
        lat.push(storedAt - seq);
        toRecv.push(receivedAt - seq);
        toCommit.push(storedAt - receivedAt);
      }
    }
    const commits = [...commitsByTime].map(([t, n]) => ({ t, n }));
    const totals = store.totals();
    const sums = { n: totals.rows, v: totals.valueSum };
    const problems: string[] = [];
    if (expect) {
      const keys = expect.devices * expect.sensors;
      if (sums.n !== expect.sent) problems.push(`${sums.n} rows for ${expect.sent} readings sent`);
      const want = expectedValueSum(expect.sent);
      if (sums.v !== want) problems.push(`sum of values ${sums.v}, expected ${want}`);
      const perKey = store
        .series()
        .map((k) => ({ d: k.device_id, s: k.sensor, n: k.rows, lo: k.firstTs, hi: k.lastTs }));
      const found = new Map(perKey.map((k) => [`${k.d}/${k.s}`, k]));
      let bad = 0;
      for (let j = 0; j < keys; j++) {
        const name = `${deviceName(expect.devicePrefix, Math.floor(j / expect.sensors))}/${sensorName(j % expect.sensors)}`;
        const n = readingsOfKey(expect.sent, keys, j);
        const k = found.get(name);
        found.delete(name);
        const ok =
          n === 0
            ? k === undefined
            : k !== undefined && k.n === n && k.lo === expect.baseTs && k.hi === expect.baseTs + n - 1;
        if (!ok && bad++ < 3)
          problems.push(
            `key ${name}: expected ${n} readings, found ${k ? `${k.n} (ts ${k.lo}..${k.hi})` : "none"}`,
          );
      }
      if (bad > 3) problems.push(`... ${bad} keys wrong in all`);
      if (found.size > 0) problems.push(`${found.size} keys that were never sent`);
    }
    return {
      rows: sums.n,
      valueSum: sums.v,
      timeline: timeline(commits),
      publishToCommitMs: percentiles(Float64Array.from(lat)),
      publishToReceiveMs: percentiles(Float64Array.from(toRecv)),
      receiveToCommitMs: percentiles(Float64Array.from(toCommit)),
      problems,
      commits,
    };
  } finally {
    store.close();
  }
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
  readonly done: Promise<PublisherResult>;
  /** Asks it to stop publishing. */
  stop(): void;
  /** Ends its processes, by pid; call after the last usage sample. */
  kill(): Promise<void>;
}

/** The lean MQTT.js publisher (publisher.ts) in its own process, as a {@link Load}. */
export async function mqttJsLoad(config: PublisherConfig): Promise<Load> {
  const worker = await forkPublisher(config);
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

/** Starts a load against the phase's broker and topic prefix. */
export type MakeLoad = (mqttUrl: string, topicPrefix: string) => Load | Promise<Load>;

export interface PhaseOptions {
  readonly label: string;
  readonly endpoints: Endpoints;
  readonly start: () => Promise<SystemUnderTest>;
  /** The readings sent (for the exactly-once check) and, without `load`, the lean publisher's settings. */
  readonly publisher: Omit<PublisherConfig, "mqttUrl" | "topicPrefix">;
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

export interface PhaseResult {
  readonly label: string;
  readonly publisher: PublisherResult;
  /** Publisher: acknowledged readings a second from its first publish to its last PUBACK. */
  readonly offeredPerSecond: number;
  /** Rows a second committed in the steady window (first 10% and last 5% of the commit span left out). */
  readonly steady: SteadyRate;
  /** The same while the publisher was still publishing, and after it (draining what the MQTT broker queued). */
  readonly whilePublishing: SteadyRate | undefined;
  readonly afterPublishing: SteadyRate | undefined;
  /** All rows over first publish to last commit. */
  readonly overallPerSecond: number;
  /** All rows over first commit to last commit (compared with the broker alone's first to last message). */
  readonly firstToLastPerSecond: number;
  readonly cutShort: boolean;
  readonly rows: number;
  readonly perSecond: number[];
  /** Where readings waited during the steady window (see {@link Backlog}); undefined when the load cannot tell. */
  readonly backlog: Backlog | undefined;
  /** Cumulative stage counts about once a second; `t` in s from the first publish. */
  readonly stages: Record<string, number[]>;
  readonly publishToCommitMs: Percentiles;
  readonly publishToReceiveMs: Percentiles;
  readonly receiveToCommitMs: Percentiles;
  readonly counters: Record<string, number | undefined>;
  readonly exitCodes: Record<string, number | null>;
  readonly usage: UsageReport;
  readonly exactlyOnce: { readonly checked: boolean; readonly ok: boolean; readonly problems: string[] };
}

interface Sample extends StageCounts {
  readonly t: number;
  /** Readings the publisher got its PUBACK for (from Mosquitto, which queues them for the gateway). */
  readonly acked: number;
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

function spread(values: number[]): Spread {
  if (values.length === 0) return { mean: 0, max: 0 };
  return { mean: Math.round(values.reduce((a, b) => a + b, 0) / values.length), max: Math.max(...values) };
}

function backlog(samples: readonly Sample[], from: number, to: number): Backlog {
  const inWindow = samples.filter((s) => s.t >= from && s.t <= to);
  return {
    beforeConfirm: spread(inWindow.map((s) => Math.max(0, s.acked - s.gatewayPublished))),
    afterConfirm: spread(inWindow.map((s) => Math.max(0, s.gatewayPublished - s.stored))),
    gatewayInflight: spread(inWindow.map((s) => s.gatewayInflight)),
  };
}

function stageSeries(samples: readonly Sample[], t0: number): Record<string, number[]> {
  const out: Record<string, number[]> = {
    t: [],
    acked: [],
    gatewayReceived: [],
    gatewayPublished: [],
    deliveries: [],
    stored: [],
  };
  let next = 0;
  for (const s of samples) {
    const t = (s.t - t0) / 1_000;
    if (t < next) continue;
    next = Math.floor(t) + 1;
    out.t?.push(round(t, 1));
    out.acked?.push(s.acked);
    out.gatewayReceived?.push(s.gatewayReceived);
    out.gatewayPublished?.push(s.gatewayPublished);
    out.deliveries?.push(s.deliveries);
    out.stored?.push(s.stored);
  }
  return out;
}

/** Runs one phase end to end and deletes its queues afterwards. */
export async function runPhase(o: PhaseOptions): Promise<PhaseResult> {
  const e = o.endpoints;
  const sut = await o.start();
  let publisher: Load | undefined;
  let ackCounted = true;
  try {
    const pubConfig: PublisherConfig = { ...o.publisher, mqttUrl: e.mqttUrl, topicPrefix: e.topicPrefix };
    publisher = await (o.load ? o.load(e.mqttUrl, e.topicPrefix) : mqttJsLoad(pubConfig));
    const sampler = new UsageSampler({ ...sut.pids, ...o.watch, ...publisher.watch });
    let published: PublisherResult | undefined;
    void publisher.done.then((r) => {
      published = r;
    });
    publisher.start();
    let stored = 0;
    let firstStoredAt: number | undefined;
    let lastChange = Date.now();
    let lastSeen = -1;
    let cutShort = false;
    let lastLog = Date.now();
    const samples: Sample[] = [];
    for (;;) {
      await new Promise((r) => setTimeout(r, POLL_MS));
      const counts = await sut.progress();
      // The final count once the load is done: its last progress report may predate its last PUBACKs.
      const ackedNow = published?.acked ?? publisher.acked();
      if (ackedNow === undefined) ackCounted = false;
      const acked = ackedNow ?? 0;
      samples.push({ t: Date.now(), acked, ...counts });
      stored = counts.stored;
      const progress = stored + acked;
      if (progress !== lastSeen) {
        lastSeen = progress;
        lastChange = Date.now();
      }
      if (stored > 0) firstStoredAt ??= Date.now();
      if (published && stored >= published.acked) break;
      if (o.limitMs !== undefined && firstStoredAt !== undefined && Date.now() - firstStoredAt >= o.limitMs) {
        cutShort = !published || stored < published.acked;
        break;
      }
      if (Date.now() - lastChange > STALL_MS) {
        throw new Error(
          `${o.label}: no progress for ${STALL_MS / 1_000} s (${stored} stored, ${acked} acked)`,
        );
      }
      if (Date.now() - lastLog >= 5_000) {
        lastLog = Date.now();
        const what = ackedNow === undefined ? "publishing" : `${acked.toLocaleString("en-US")} published`;
        say(
          `  ${o.label}: ${what}, ${counts.gatewayPublished.toLocaleString("en-US")} confirmed to the gateway, ${stored.toLocaleString("en-US")} stored`,
        );
      }
    }
    publisher.stop();
    const usage = sampler.stop(o.cpus);
    const counters = await sut.counters();
    const exitCodes = await sut.stop();
    const result = published ?? (await publisher.done);

    const span = result.lastPublishAt - result.firstPublishAt;
    const latencyFrom = publisher.seqIsPublishTime
      ? result.firstPublishAt + span * o.latencyWarmup
      : Number.POSITIVE_INFINITY;
    const rows = analyzeRows(
      e.dbPath,
      latencyFrom,
      cutShort || result.failed > 0
        ? undefined
        : {
            sent: result.sent,
            devices: o.publisher.devices,
            sensors: o.publisher.sensors,
            devicePrefix: o.publisher.devicePrefix,
            baseTs: o.publisher.baseTs,
          },
    );
    const { first, last } = rows.timeline;
    const steady = steadyRate(rows.commits, first, last);
    const split = (from: number, to: number) =>
      to - from > 2_000 ? steadyRate(rows.commits, from, to, 0, 0) : undefined;
    const ackedSeconds = Math.max(1, result.lastAckAt - result.firstPublishAt) / 1_000;
    const exactlyOnceChecked = !cutShort && result.failed === 0;
    return {
      label: o.label,
      publisher: result,
      offeredPerSecond: Math.round(result.acked / ackedSeconds),
      steady,
      whilePublishing: split(steady.from, Math.min(steady.to, result.lastAckAt)),
      afterPublishing: split(Math.max(steady.from, result.lastAckAt), steady.to),
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
      exactlyOnce: {
        checked: exactlyOnceChecked,
        ok: exactlyOnceChecked && rows.problems.length === 0,
        problems: rows.problems,
      },
    };
  } catch (err) {
    await sut.stop().catch(() => undefined);
    throw err;
  } finally {
    await publisher?.kill();
    await deleteQueues(e.amqpUrl, e.queue).catch((err: unknown) =>
      say(`could not delete the queues of ${e.queue}: ${String(err)}`),
    );
  }
}

export type { ProcessUsage };
