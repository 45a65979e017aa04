import type { BrokerBaseline } from "./c-clients.js";
import type { PhaseResult } from "./pipeline.js";
import type { UsageReport } from "./proc.js";
import type { ProfileSummary } from "./profile.js";
import type { AmqpCeilings, Ceiling, SqliteCeilings } from "./raw.js";
import { fmt, table } from "./util.js";

export interface RawResults {
  readonly mqtt: Ceiling;
  readonly amqp: AmqpCeilings;
  readonly sqlite: SqliteCeilings;
}

/** Issue 13's comparison: the broker alone and the pipeline, driven by the same C publishers in one run. */
export interface CClientResults {
  /** mosquitto_pub processes (one per device and sensor) and readings each phase sends. */
  readonly publishers: number;
  readonly readings: number;
  /** PUBLISH_BATCH of the "batched" run, as set. */
  readonly batchSetting: string;
  readonly baseline: BrokerBaseline;
  /** The pipeline with its defaults (batch messages). */
  readonly batched: PhaseResult;
  /** The same with PUBLISH_BATCH=1 (one reading a message). */
  readonly unbatched: PhaseResult;
}

export interface Target {
  readonly name: string;
  readonly measured: string;
  /** undefined: not judged in this run (short mode, or a baseline skipped). */
  readonly met: boolean | undefined;
}

export interface ReportInput {
  readonly cpus: number;
  readonly window: number;
  readonly queueType: string;
  readonly devices: number;
  readonly sensors: number;
  readonly raw: RawResults | undefined;
  readonly slowest: { readonly stage: string; readonly perSecond: number } | undefined;
  readonly pipeline: PhaseResult;
  readonly naive: PhaseResult | undefined;
  readonly latency: (PhaseResult & { readonly offered: number }) | undefined;
  readonly c: CClientResults | undefined;
  readonly targets: readonly Target[];
  readonly profiles: Record<string, ProfileSummary[]>;
}

const n = fmt;
const ratio = (x: number, base: number | undefined) => (base ? (x / base).toFixed(2) : "-");

function ms(p: { p50: number; p95: number; p99: number; max: number; n: number }): string {
  return `p50 ${n(p.p50)}  p95 ${n(p.p95)}  p99 ${n(p.p99)}  max ${n(p.max)} ms (${n(p.n)} readings)`;
}

/** The broker alone against the pipeline with and without batching: rates and CPU per reading of each process. */
function cClientSection(c: CClientResults): string[] {
  const base = c.baseline.perSecond;
  const procs = ["publisher", "mosquitto", "subscriber", "gateway", "rabbitmq", "processor"];
  const rows: string[][] = [["", "readings/s", "x broker", "steady/s", ...procs, "gw+rmq+pr", "all"]];
  const cpu = (usage: UsageReport, count: number) => {
    const us = (name: string) => {
      const u = usage.processes[name];
      return u === undefined ? undefined : (u.cpuSeconds * 1e6) / Math.max(1, count);
    };
    const services = ["gateway", "rabbitmq", "processor"].map(us);
    const all = Object.keys(usage.processes).map(us);
    const sum = (xs: (number | undefined)[]) => xs.reduce<number>((a, x) => a + (x ?? 0), 0);
    return [
      ...procs.map((name) => {
        const v = us(name);
        return v === undefined ? "-" : n(v);
      }),
      services.every((x) => x === undefined) ? "-" : n(sum(services)),
      n(sum(all)),
    ];
  };
  rows.push([
    "broker alone: mosquitto_pub -> Mosquitto -> mosquitto_sub",
    n(base),
    "1.00",
    "-",
    ...cpu(c.baseline.usage, c.baseline.received),
  ]);
  const run = (label: string, p: PhaseResult) =>
    rows.push([
      label,
      n(p.firstToLastPerSecond),
      ratio(p.firstToLastPerSecond, base),
      n(p.steady.perSecond),
      ...cpu(p.usage, p.rows),
    ]);
  run(`pipeline, PUBLISH_BATCH ${c.batchSetting}`, c.batched);
  run("pipeline, PUBLISH_BATCH=1 (batching off)", c.unbatched);
  const gain = c.batched.firstToLastPerSecond / Math.max(1, c.unbatched.firstToLastPerSecond);
  return [
    `Against the broker alone: the same ${c.publishers} C publishers (mosquitto_pub -q 1 -l, one per device and sensor, ${n(c.readings)} readings from files), one run`,
    "(readings/s: first to last message received, or first to last commit; steady/s: the pipeline's steady window;",
    " CPU us per reading of each process; rabbitmq is the shared broker's whole CPU, anyone's queues included)",
    table(rows, ["l", "r", "r", "r", ...procs.map((): "r" => "r"), "r", "r"]),
    `  batching gain: ${gain.toFixed(2)}x readings/s; mean batch on the processor ${c.batched.counters.batchMean ?? "-"} (batching off ${c.unbatched.counters.batchMean ?? "-"}); gateway confirm mean ${c.batched.counters.confirmMeanMs ?? "-"} ms (off ${c.unbatched.counters.confirmMeanMs ?? "-"} ms)`,
    `  failed mosquitto_pub: broker alone ${c.baseline.failedPublishers}, pipeline ${c.batched.publisher.failed}, batching off ${c.unbatched.publisher.failed}; mosquitto_sub received ${n(c.baseline.received)} of ${n(c.readings)}`,
  ];
}

/** The human-readable report: throughput table with ratios, latency, resources, targets, profiles. */
export function formatReport(r: ReportInput): string {
  const base = r.slowest?.perSecond;
  const out: string[] = [];
  const rows: string[][] = [["", "readings/s", "x slowest raw", "CPU us/reading", ""]];
  const mark = (stage: string) => (r.slowest?.stage === stage ? "<- slowest raw stage" : "");
  const cpuSum = (c: Ceiling) => Object.values(c.cpuUsPerItem).reduce((a, b) => a + b, 0);
  const cpuOf = (c: Ceiling) => `${n(cpuSum(c))}`;
  const row = (label: string, perSecond: number, cpu: string, note: string) =>
    rows.push([label, n(perSecond), ratio(perSecond, base), cpu, note]);
  if (r.raw) {
    const { mqtt, amqp, sqlite } = r.raw;
    row(
      `raw  MQTT QoS 1 publish -> subscriber (window ${r.window})`,
      mqtt.perSecond,
      cpuOf(mqtt),
      mark("mqtt"),
    );
    row(
      `raw  AMQP publish, persistent + confirms (${r.queueType})`,
      amqp.publish.perSecond,
      cpuOf(amqp.publish),
      mark("amqp-publish"),
    );
    row(
      "raw  AMQP consume, prefetch 2000, multiple acks",
      amqp.consume.perSecond,
      cpuOf(amqp.consume),
      mark("amqp-consume"),
    );
    row(
      "raw  SQLite insert, 500 rows/txn, WAL, sync=FULL",
      sqlite.batched.perSecond,
      cpuOf(sqlite.batched),
      mark("sqlite"),
    );
    row(
      "info AMQP publish and consume at once",
      amqp.through.perSecond,
      cpuOf(amqp.through),
      "(not a stage ceiling)",
    );
    row("info SQLite via SqliteStore.writeBatch(500)", sqlite.store.perSecond, cpuOf(sqlite.store), "");
    row("info SQLite, one transaction per row", sqlite.perRow.perSecond, cpuOf(sqlite.perRow), "");
  }
  const p = r.pipeline;
  const phaseCpu = (run: PhaseResult) =>
    (Object.values(run.usage.processes).reduce((a, u) => a + u.cpuSeconds, 0) * 1e6) / Math.max(1, run.rows);
  row(
    `PIPELINE sustained end to end (${n(r.devices)} devices x ${r.sensors})`,
    p.steady.perSecond,
    n(phaseCpu(p)),
    `steady ${p.steady.seconds} s of ${n(p.rows)} rows`,
  );
  if (p.whilePublishing) {
    row(
      "  while the publisher runs on the same box",
      p.whilePublishing.perSecond,
      "",
      `${p.whilePublishing.seconds} s`,
    );
  }
  if (p.afterPublishing) {
    row(
      "  after it, draining the MQTT broker's queue",
      p.afterPublishing.perSecond,
      "",
      `${p.afterPublishing.seconds} s`,
    );
  }
  row("  publisher offered (PUBACKed by Mosquitto)", p.offeredPerSecond, "", "");
  if (r.naive) {
    row(
      "REFERENCE straightforward (await confirm, 1 txn/row)",
      r.naive.steady.perSecond,
      r.naive.cutShort ? "-" : n(phaseCpu(r.naive)),
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
  out.push(
    "Throughput (CPU us/reading: CPU time of every process taking part, brokers and load generator included, per item)",
    table(rows, ["l", "r", "r", "r", "l"]),
    `  CPU budget: ${r.cpus} CPUs / ${n(phaseCpu(p))} us per reading = at most ${n((r.cpus * 1e6) / Math.max(1, phaseCpu(p)))} readings/s end to end on this machine, even with nothing else running`,
    "",
  );

  if (r.c) out.push(...cClientSection(r.c), "");

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
  if (r.latency) {
    out.push(
      `  at ${n(r.latency.offered)}/s offered (achieved ${n(r.latency.steady.perSecond)}/s):`,
      `    publish -> commit   ${ms(r.latency.publishToCommitMs)}`,
      `    publish -> gateway  ${ms(r.latency.publishToReceiveMs)}`,
      `    gateway -> commit   ${ms(r.latency.receiveToCommitMs)}`,
      `    processor commit mean ${r.latency.counters.commitMeanMs ?? "-"} ms, mean batch ${r.latency.counters.batchMean ?? "-"}; receive->commit p99 <= ${r.latency.counters.receiveToCommitP99BoundMs ?? "-"} ms (metrics buckets)`,
    );
  }
  out.push(`  throughput run, saturated (includes time queued in Mosquitto): ${ms(p.publishToCommitMs)}`, "");

  const res: string[][] = [["process", "peak RSS MiB", "RSS at end MiB", "CPU s", "cores", "CPU us/reading"]];
  const addUsage = (
    label: string,
    run: { usage: UsageReport; rows: number; cutShort: boolean } | undefined,
  ) => {
    if (!run) return;
    // A run cut short stored fewer readings than were published: CPU per reading stored would mislead.
    const perReading = (cpuSeconds: number) =>
      run.cutShort ? "-" : n((cpuSeconds * 1e6) / Math.max(1, run.rows));
    let ours = 0;
    for (const [name, u] of Object.entries(run.usage.processes)) {
      ours += u.cpuSeconds;
      res.push([
        `${label} ${name}`,
        u.peakRssMiB.toFixed(1),
        u.lastRssMiB.toFixed(1),
        u.cpuSeconds.toFixed(1),
        u.cores.toFixed(2),
        perReading(u.cpuSeconds),
      ]);
    }
    res.push([
      `${label} all of the above`,
      "",
      "",
      ours.toFixed(1),
      (ours / run.usage.seconds).toFixed(2),
      perReading(ours),
    ]);
    const busy = run.usage.machineBusy * run.usage.cpus;
    res.push([
      `${label} machine busy (anyone's processes)`,
      "",
      "",
      "",
      `${busy.toFixed(2)} of ${run.usage.cpus}`,
      "",
    ]);
  };
  if (r.c) {
    addUsage("C broker only", { usage: r.c.baseline.usage, rows: r.c.baseline.received, cutShort: false });
    addUsage("C pipeline", r.c.batched);
    addUsage("C pipeline batch=1", r.c.unbatched);
  }
  addUsage("pipeline", p);
  addUsage("reference", r.naive);
  addUsage("latency", r.latency);
  out.push(
    "Resources (/proc, sampled every 0.5 s; CPU over the phase; per reading stored in it)",
    table(res, ["l", "r", "r", "r", "r", "r"]),
    "",
  );

  const checks = [r.c?.batched, r.c?.unbatched, p, r.latency].filter(
    (x): x is NonNullable<typeof x> => x !== undefined,
  );
  out.push("Exactly once (rows vs readings sent, per key count and ts range, value sum)");
  for (const c of checks) {
    const verdict = !c.exactlyOnce.checked ? "not checked" : c.exactlyOnce.ok ? "OK" : "FAILED";
    out.push(
      `  ${c.label}: ${verdict}: ${n(c.rows)} rows for ${n(c.publisher.sent)} sent; duplicates counter ${c.counters.duplicates ?? "-"}, rejected ${c.counters.gatewayRejected ?? "-"}, dead-lettered ${c.counters.deadLettered ?? "-"}; exit codes ${JSON.stringify(c.exitCodes)}`,
    );
    for (const problem of c.exactlyOnce.problems) out.push(`    ${problem}`);
  }
  out.push("");

  out.push("Targets");
  out.push(
    table(
      r.targets.map((t) => [
        t.name,
        t.measured,
        t.met === undefined ? "not judged" : t.met ? "met" : "MISSED",
      ]),
      ["l", "l", "l"],
    ),
  );

  for (const [service, summaries] of Object.entries(r.profiles)) {
    for (const s of summaries) {
      out.push("", `CPU profile: ${service} (${n(s.totalMs)} ms sampled, ${n(s.idleMs)} ms idle) ${s.file}`);
      out.push(
        table(
          s.modules.map((m) => [`  ${(m.busyShare * 100).toFixed(1)}%`, m.name]),
          ["r", "l"],
        ),
      );
      out.push("  top functions by self time:");
      out.push(
        table(
          s.functions.map((f) => [`  ${(f.busyShare * 100).toFixed(1)}%`, f.name]),
          ["r", "l"],
        ),
      );
    }
  }
  return out.join("\n");
}
