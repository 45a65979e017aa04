/** The one report of `npm run bench`: every phase's figures, the targets judged on them, and what failed. */
import { type FleetFigures, fleetReport } from "./fleet.js";
import type { BenchOptions } from "./options.js";
import { type PayloadRssResult, payloadRssComplete, payloadRssReport } from "./payload-rss.js";
import type { PhaseResult } from "./pipeline.js";
import type { UsageReport } from "./proc.js";
import type { ProfileSummary } from "./profile.js";
import type { AmqpCeilings, Ceiling, SqliteCeilings } from "./raw.js";
import { type CClientResults, cClientSection, servicesCpuUs } from "./report-c.js";
import { type SpoolBenchResult, spoolReport } from "./spool.js";
import { type StoresBenchResult, storesReport } from "./stores.js";
import { fmt as n, type Percentiles, table } from "./util.js";

/**
 * Issue 28's targets (end to end against the broker alone with the same C publishers at their fastest, CPU of the
 * services per reading, p99 latency at 10% and 50% of the sustained rate), issue 13's RSS flat over
 * `flatRssReadings`, and the earlier ones of issue 1 (against the slowest raw stage and the reference).
 */
const TARGET = {
  ...{ brokerShare: 0.7, servicesCpuUs: 15, latencyMs: { 0.1: 20, 0.5: 50 } },
  ...{
    flatRssReadings: 1_000_000,
    flatRssSlack: 1.1,
    flatRssSlackMiB: 8,
    throughputShare: 0.7,
    referenceFactor: 10,
  },
} as const;

export interface RawResults {
  readonly mqtt: Ceiling;
  readonly amqp: AmqpCeilings;
  readonly sqlite: SqliteCeilings;
}

/** Everything one invocation measured; a phase left out or skipped is undefined. */
export interface Results {
  readonly short: boolean;
  readonly options: BenchOptions;
  readonly cpus: number;
  raw?: RawResults;
  c?: CClientResults;
  pipeline?: PhaseResult;
  naive?: PhaseResult;
  /** The latency runs, at 10% and 50% of the sustained rate. */
  latency?: LatencyRun[];
  spool?: SpoolBenchResult;
  stores?: StoresBenchResult;
  payloadRss?: PayloadRssResult;
  fleet?: FleetFigures[];
  readonly profiles: Record<string, ProfileSummary[]>;
}

/** A latency run: readings offered at `offered`/s, `share` of the sustained rate. */
export type LatencyRun = PhaseResult & { readonly offered: number; readonly share: number };

export interface Target {
  readonly name: string;
  readonly measured: string;
  /** undefined: not judged in this run (short mode, or a baseline skipped). */
  readonly met: boolean | undefined;
}

/** The slowest raw stage, the ratios between phases and the targets judged on them (none in a short run). */
export function targets(r: Results) {
  const p = r.pipeline;
  if (!p) throw new Error("the pipeline phase did not run");
  const raw = r.raw;
  const stages = raw
    ? {
        mqtt: raw.mqtt,
        "amqp-publish": raw.amqp.publish,
        "amqp-consume": raw.amqp.consume,
        sqlite: raw.sqlite.batched,
      }
    : {};
  const slowest = Object.entries(stages)
    .map(([stage, c]) => ({ stage, perSecond: c.perSecond }))
    .reduce<{ stage: string; perSecond: number } | undefined>(
      (a, b) => (a && a.perSecond <= b.perSecond ? a : b),
      undefined,
    );
  const judge = (ok: boolean | undefined) => (r.short ? undefined : ok);
  const c = r.c;
  const share = slowest && p.steady.perSecond / slowest.perSecond;
  const factor = r.naive && p.steady.perSecond / Math.max(1, r.naive.steady.perSecond);
  const brokerShare = c && c.batched.firstToLastPerSecond / Math.max(1, c.baseline.perSecond);
  const cpu = c && servicesCpuUs(c.batched);
  const flat = flatRss(p);
  const list: Target[] = [
    {
      name: `issue 28: end to end >= ${TARGET.brokerShare} of the broker alone, same C publishers at their fastest`,
      measured:
        c === undefined || brokerShare === undefined
          ? "no C-client phases"
          : `${brokerShare.toFixed(2)} (${n(c.batched.firstToLastPerSecond)} of ${n(c.baseline.perSecond)}/s, baseline -M ${c.baseline.inflight}; batching off: ${(c.unbatched.firstToLastPerSecond / Math.max(1, c.baseline.perSecond)).toFixed(2)})`,
      met: judge(brokerShare === undefined ? undefined : brokerShare >= TARGET.brokerShare),
    },
    {
      name: `issue 28: gateway + processor + RabbitMQ <= ${TARGET.servicesCpuUs} us CPU per reading`,
      measured:
        c === undefined || cpu === undefined
          ? "no C-client phases"
          : `${n(cpu.total)} us (gateway ${n(cpu.gateway)}, processor ${n(cpu.processor)}, RabbitMQ ${n(cpu.rabbitmq)}; batching off: ${n(servicesCpuUs(c.unbatched)?.total ?? 0)})`,
      met: judge(cpu === undefined ? undefined : cpu.total <= TARGET.servicesCpuUs),
    },
    ...([0.1, 0.5] as const).map((share) => {
      const l = r.latency?.find((x) => x.share === share);
      const limit = TARGET.latencyMs[share];
      return {
        name: `issue 28: p99 publish -> commit < ${limit} ms at ${share * 100}% of the sustained rate`,
        measured: l ? `${n(l.publishToCommitMs.p99)} ms at ${n(l.offered)}/s` : "no latency run",
        met: judge(l ? l.publishToCommitMs.p99 < limit : undefined),
      };
    }),
    {
      name: `issue 13: RSS flat over ${n(TARGET.flatRssReadings)} readings (max of 2nd half <= ${TARGET.flatRssSlack} x 1st + ${TARGET.flatRssSlackMiB} MiB)`,
      measured: `${flat.text} over ${n(p.rows)} readings`,
      met: judge(p.rows >= TARGET.flatRssReadings ? flat.ok : undefined),
    },
    {
      name: `end to end >= ${TARGET.throughputShare * 100}% of the slowest raw stage`,
      measured:
        share === undefined
          ? "no baselines"
          : `${(share * 100).toFixed(0)}% (${n(p.steady.perSecond)} of ${n(slowest?.perSecond ?? 0)}/s, ${slowest?.stage})`,
      met: judge(share === undefined ? undefined : share >= TARGET.throughputShare),
    },
    {
      name: `end to end >= ${TARGET.referenceFactor}x the straightforward reference`,
      measured: factor === undefined ? "no reference" : `${factor.toFixed(1)}x`,
      met: judge(factor === undefined ? undefined : factor >= TARGET.referenceFactor),
    },
    {
      name: "flat memory (compare peak RSS across --total)",
      measured: `gateway ${p.usage.processes.gateway?.peakRssMiB ?? "-"} MiB, processor ${p.usage.processes.processor?.peakRssMiB ?? "-"} MiB peak after ${n(p.rows)} readings`,
      met: undefined,
    },
    {
      name: "throughput within 20% from 10 to 10,000 devices (compare --devices runs)",
      measured: `${n(p.steady.perSecond)}/s at ${n(r.options.devices)} devices`,
      met: undefined,
    },
  ];
  const ratios = {
    pipelineToSlowestRaw: share,
    pipelineToReference: factor,
    endToEndToBrokerAlone: brokerShare,
  };
  return { slowest, ratios, targets: list };
}

/** What makes the run fail (exit 1): a reading lost or stored twice, a service not exiting 0 after SIGTERM. */
export function failures(r: Results): string[] {
  const checked = [r.c?.batched, r.c?.unbatched, r.pipeline, ...(r.latency ?? [])];
  return [
    checked.some((x) => x?.exactlyOnce.checked && !x.exactlyOnce.ok) && "a reading was lost or stored twice",
    checked.some((x) => x && Object.values(x.exitCodes).some((code) => code !== 0)) &&
      "a service did not exit 0 after SIGTERM",
    r.stores?.phases.some((p) => p.drains.some((d) => d.rows !== r.stores?.readings)) &&
      "a store phase did not hold exactly the readings queued",
    r.payloadRss && !payloadRssComplete(r.payloadRss) && "a payload-size phase did not store every reading",
  ].filter((x): x is string => typeof x === "string");
}

/** Gateway's and processor's highest RSS in the second half of the run's samples against the first half. */
function flatRss(run: PhaseResult): { ok: boolean; text: string } {
  const parts = ["gateway", "processor"].map((name) => {
    const series = run.usage.processes[name]?.rssSeriesMiB ?? [];
    const half = Math.floor(series.length / 2);
    const [first, second] = [Math.max(0, ...series.slice(0, half)), Math.max(0, ...series.slice(half))];
    return {
      ok: second <= first * TARGET.flatRssSlack + TARGET.flatRssSlackMiB,
      text: `${name} ${first.toFixed(0)} -> ${second.toFixed(0)} MiB`,
    };
  });
  return { ok: parts.every((x) => x.ok), text: parts.map((x) => x.text).join(", ") };
}

const ratio = (x: number, base: number | undefined) => (base ? (x / base).toFixed(2) : "-");
const ms = (p: Percentiles) =>
  `p50 ${n(p.p50)}  p95 ${n(p.p95)}  p99 ${n(p.p99)}  max ${n(p.max)} ms (${n(p.n)} readings)`;
/** CPU µs per reading of every process of a run together. */
const phaseCpu = (run: PhaseResult) =>
  (Object.values(run.usage.processes).reduce((a, u) => a + u.cpuSeconds, 0) * 1e6) / Math.max(1, run.rows);

/** Throughput of every raw stage and of the pipeline and the reference, with ratios to the slowest stage. */
function throughputSection(
  r: Results,
  p: PhaseResult,
  slowest: { stage: string; perSecond: number } | undefined,
) {
  const rows: string[][] = [["", "readings/s", "x slowest raw", "CPU us/reading", ""]];
  const row = (label: string, perSecond: number, cpu: string, note = "") =>
    rows.push([label, n(perSecond), ratio(perSecond, slowest?.perSecond), cpu, note]);
  const ceiling = (label: string, c: Ceiling, stage?: string, note = "") =>
    row(
      label,
      c.perSecond,
      n(Object.values(c.cpuUsPerItem).reduce((a, b) => a + b, 0)),
      slowest?.stage === stage ? "<- slowest raw stage" : note,
    );
  if (r.raw) {
    const { mqtt, amqp, sqlite } = r.raw;
    ceiling(`raw  MQTT QoS 1 publish -> subscriber (window ${r.options.window})`, mqtt, "mqtt");
    ceiling(
      `raw  AMQP publish, persistent + confirms (${r.options.queueType})`,
      amqp.publish,
      "amqp-publish",
    );
    ceiling("raw  AMQP consume, prefetch 2000, multiple acks", amqp.consume, "amqp-consume");
    ceiling("raw  SQLite insert, 500 rows/txn, WAL, sync=FULL", sqlite.batched, "sqlite");
    ceiling("info AMQP publish and consume at once", amqp.through, undefined, "(not a stage ceiling)");
    ceiling("info SQLite via SqliteStore.writeBatch(500)", sqlite.store);
    ceiling("info SQLite, one transaction per row", sqlite.perRow);
  }
  const o = r.options;
  row(
    `PIPELINE sustained end to end (${n(o.devices)} devices x ${o.sensors})`,
    p.steady.perSecond,
    n(phaseCpu(p)),
    `steady ${p.steady.seconds} s of ${n(p.rows)} rows`,
  );
  const split = [
    ["  while the publisher runs on the same box", p.whilePublishing],
    ["  after it, draining the MQTT broker's queue", p.afterPublishing],
  ] as const;
  for (const [label, w] of split) if (w) row(label, w.perSecond, "", `${w.seconds} s`);
  row("  publisher offered (PUBACKed by Mosquitto)", p.offeredPerSecond, "");
  if (r.naive) {
    const cpu = r.naive.cutShort ? "-" : n(phaseCpu(r.naive));
    row(
      "REFERENCE straightforward (await confirm, 1 txn/row)",
      r.naive.steady.perSecond,
      cpu,
      `steady ${r.naive.steady.seconds} s`,
    );
    rows.push([
      "pipeline / reference",
      `${(p.steady.perSecond / Math.max(1, r.naive.steady.perSecond)).toFixed(1)}x`,
      "",
      "",
      "",
    ]);
  }
  return [
    "Throughput (CPU us/reading: CPU time of every process taking part, brokers and load generator included, per item)",
    table(rows, ["l", "r", "r", "r", "l"]),
    `  CPU budget: ${r.cpus} CPUs / ${n(phaseCpu(p))} us per reading = at most ${n((r.cpus * 1e6) / Math.max(1, phaseCpu(p)))} readings/s end to end on this machine, even with nothing else running`,
    "",
  ];
}

/** Peak and last RSS, CPU seconds and cores, CPU per reading of every process of every run. */
function resourcesSection(r: Results, p: PhaseResult): string[] {
  const res: string[][] = [["process", "peak RSS MiB", "RSS at end MiB", "CPU s", "cores", "CPU us/reading"]];
  const add = (label: string, run: { usage: UsageReport; rows: number; cutShort: boolean } | undefined) => {
    if (!run) return;
    // A run cut short stored fewer readings than were published: CPU per reading stored would mislead.
    const perReading = (s: number) => (run.cutShort ? "-" : n((s * 1e6) / Math.max(1, run.rows)));
    let ours = 0;
    for (const [name, u] of Object.entries(run.usage.processes)) {
      ours += u.cpuSeconds;
      const cells = [
        u.peakRssMiB.toFixed(1),
        u.lastRssMiB.toFixed(1),
        u.cpuSeconds.toFixed(1),
        u.cores.toFixed(2),
      ];
      res.push([`${label} ${name}`, ...cells, perReading(u.cpuSeconds)]);
    }
    res.push([
      `${label} all of the above`,
      "",
      "",
      ours.toFixed(1),
      (ours / run.usage.seconds).toFixed(2),
      perReading(ours),
    ]);
    const busy = `${(run.usage.machineBusy * run.usage.cpus).toFixed(2)} of ${run.usage.cpus}`;
    res.push([`${label} machine busy (anyone's processes)`, "", "", "", busy, ""]);
  };
  if (r.c) {
    for (const b of r.c.brokerAlone)
      add(`C broker only -M ${b.inflight}`, { usage: b.usage, rows: b.received, cutShort: false });
    add("C pipeline", r.c.batched);
    add("C pipeline batch=1", r.c.unbatched);
  }
  add("pipeline", p);
  add("reference", r.naive);
  for (const l of r.latency ?? []) add(`latency ${l.share * 100}%`, l);
  return [
    "Resources (/proc, sampled every 0.5 s; CPU over the phase; per reading stored in it)",
    table(res, ["l", "r", "r", "r", "r", "r"]),
    "",
  ];
}

/** The human-readable report: throughput with ratios, latency, resources, exactly once, targets, profiles. */
export function formatReport(r: Results, judged: ReturnType<typeof targets>): string {
  const p = r.pipeline;
  if (!p) throw new Error("the pipeline phase did not run");
  const out = [...throughputSection(r, p, judged.slowest), ...(r.c ? cClientSection(r.c) : [])];
  const b = p.backlog;
  const sp = (x: { mean: number; max: number }) => `${n(x.mean)} / ${n(x.max)}`;
  if (b)
    out.push(
      "Where the pipeline's backlog sat in its steady window (readings, mean / max; the stage it piles up in front of limits)",
      `  before RabbitMQ's confirm (queued in Mosquitto or held by the gateway)  ${sp(b.beforeConfirm)}`,
      `  confirmed, not yet committed (RabbitMQ queue + processor)               ${sp(b.afterConfirm)}`,
      `  gateway window in use (GATEWAY_INFLIGHT bounds it)                      ${sp(b.gatewayInflight)}`,
      `  gateway confirm latency mean ${p.counters.confirmMeanMs ?? "-"} ms; processor commit mean ${p.counters.commitMeanMs ?? "-"} ms, mean batch ${p.counters.batchMean ?? "-"}`,
      "",
    );
  out.push(
    "Latency, publish -> stored_at (the publisher's clock = the processor's clock; stored_at is taken just before the commit)",
  );
  for (const l of r.latency ?? [])
    out.push(
      `  at ${n(l.offered)}/s offered, ${l.share * 100}% of the sustained rate (achieved ${n(l.steady.perSecond)}/s):`,
      `    publish -> commit   ${ms(l.publishToCommitMs)}`,
      `    publish -> gateway  ${ms(l.publishToReceiveMs)}`,
      `    gateway -> commit   ${ms(l.receiveToCommitMs)}`,
      `    processor commit mean ${l.counters.commitMeanMs ?? "-"} ms, mean batch ${l.counters.batchMean ?? "-"}; gateway confirm mean ${l.counters.confirmMeanMs ?? "-"} ms; receive->commit p99 <= ${l.counters.receiveToCommitP99BoundMs ?? "-"} ms (metrics buckets)`,
    );
  out.push(`  throughput run, saturated (includes time queued in Mosquitto): ${ms(p.publishToCommitMs)}`, "");
  out.push(
    ...resourcesSection(r, p),
    "Exactly once (rows vs readings sent, per key count and ts range, value sum)",
  );
  for (const c of [r.c?.batched, r.c?.unbatched, p, ...(r.latency ?? [])]) {
    if (!c) continue;
    const verdict = !c.exactlyOnce.checked ? "not checked" : c.exactlyOnce.ok ? "OK" : "FAILED";
    out.push(
      `  ${c.label}: ${verdict}: ${n(c.rows)} rows for ${n(c.publisher.sent)} sent; duplicates counter ${c.counters.duplicates ?? "-"}, rejected ${c.counters.gatewayRejected ?? "-"}, dead-lettered ${c.counters.deadLettered ?? "-"}; exit codes ${JSON.stringify(c.exitCodes)}`,
      ...c.exactlyOnce.problems.map((problem) => `    ${problem}`),
    );
  }
  const verdicts = judged.targets.map((t) => [
    t.name,
    t.measured,
    t.met === undefined ? "not judged" : t.met ? "met" : "MISSED",
  ]);
  out.push("", "Targets", table(verdicts, ["l", "l", "l"]));
  for (const [service, summaries] of Object.entries(r.profiles)) {
    for (const s of summaries) {
      const share = (x: { busyShare: number; name: string }) => [
        `  ${(x.busyShare * 100).toFixed(1)}%`,
        x.name,
      ];
      out.push(
        "",
        `CPU profile: ${service} (${n(s.totalMs)} ms sampled, ${n(s.idleMs)} ms idle) ${s.file}`,
        table(s.modules.map(share), ["r", "l"]),
        "  by what it is for (issue 28's groups; the SQLite worker thread is not in this profile):",
        table(s.groups.map(share), ["r", "l"]),
        "  top functions by self time:",
        table(s.functions.map(share), ["r", "l"]),
      );
    }
  }
  if (r.spool) out.push("", spoolReport(r.spool));
  if (r.stores) out.push("", storesReport(r.stores));
  if (r.payloadRss) out.push("", payloadRssReport(r.payloadRss));
  if (r.fleet) out.push("", fleetReport(r.fleet));
  return out.join("\n");
}
