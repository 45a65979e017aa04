import type { PhaseResult } from "./pipeline.js";
import type { ProfileSummary } from "./profile.js";
import type { AmqpCeilings, Ceiling, SqliteCeilings } from "./raw.js";

export interface RawResults {
  readonly mqtt: Ceiling;
  readonly amqp: AmqpCeilings;
  readonly sqlite: SqliteCeilings;
}

export interface Target {
  readonly name: string;
  readonly measured: string;
  /** undefined: not judged in this run (short mode, or a baseline skipped). */
  readonly met: boolean | undefined;
}

export interface ReportInput {
  readonly window: number;
  readonly queueType: string;
  readonly devices: number;
  readonly sensors: number;
  readonly raw: RawResults | undefined;
  readonly slowest: { readonly stage: string; readonly perSecond: number } | undefined;
  readonly pipeline: PhaseResult;
  readonly naive: PhaseResult | undefined;
  readonly latency: (PhaseResult & { readonly offered: number }) | undefined;
  readonly targets: readonly Target[];
  readonly profiles: Record<string, ProfileSummary[]>;
}

const n = (x: number) => Math.round(x).toLocaleString("en-US");
const ratio = (x: number, base: number | undefined) => (base ? (x / base).toFixed(2) : "-");

function table(rows: string[][], align: ("l" | "r")[]): string {
  const widths = align.map((_, c) => Math.max(...rows.map((r) => (r[c] ?? "").length)));
  return rows
    .map((r) =>
      r
        .map((cell, c) => (align[c] === "r" ? cell.padStart(widths[c] ?? 0) : cell.padEnd(widths[c] ?? 0)))
        .join("  ")
        .trimEnd(),
    )
    .join("\n");
}

function ms(p: { p50: number; p95: number; p99: number; max: number; n: number }): string {
  return `p50 ${n(p.p50)}  p95 ${n(p.p95)}  p99 ${n(p.p99)}  max ${n(p.max)} ms (${n(p.n)} readings)`;
}

/** The human-readable report: throughput table with ratios, latency, resources, targets, profiles. */
export function formatReport(r: ReportInput): string {
  const base = r.slowest?.perSecond;
  const out: string[] = [];
  const rows: string[][] = [["", "readings/s", "x slowest raw", ""]];
  const mark = (stage: string) => (r.slowest?.stage === stage ? "<- slowest raw stage" : "");
  if (r.raw) {
    const { mqtt, amqp, sqlite } = r.raw;
    rows.push(
      [
        `raw  MQTT QoS 1 publish -> subscriber (window ${r.window})`,
        n(mqtt.perSecond),
        ratio(mqtt.perSecond, base),
        mark("mqtt"),
      ],
      [
        `raw  AMQP publish, persistent + confirms (${r.queueType})`,
        n(amqp.publish.perSecond),
        ratio(amqp.publish.perSecond, base),
        mark("amqp-publish"),
      ],
      [
        `raw  AMQP consume, prefetch 2000, multiple acks`,
        n(amqp.consume.perSecond),
        ratio(amqp.consume.perSecond, base),
        mark("amqp-consume"),
      ],
      [
        `raw  SQLite insert, 500 rows/txn, WAL, sync=FULL`,
        n(sqlite.batched.perSecond),
        ratio(sqlite.batched.perSecond, base),
        mark("sqlite"),
      ],
      [
        `info AMQP publish and consume at once`,
        n(amqp.through.perSecond),
        ratio(amqp.through.perSecond, base),
        "(not a stage ceiling)",
      ],
      [
        `info SQLite via SqliteStore.writeBatch(500)`,
        n(sqlite.store.perSecond),
        ratio(sqlite.store.perSecond, base),
        "",
      ],
      [
        `info SQLite, one transaction per row`,
        n(sqlite.perRow.perSecond),
        ratio(sqlite.perRow.perSecond, base),
        "",
      ],
    );
  }
  const p = r.pipeline;
  rows.push([
    `PIPELINE sustained end to end (${n(r.devices)} devices x ${r.sensors})`,
    n(p.steady.perSecond),
    ratio(p.steady.perSecond, base),
    `steady ${p.steady.seconds} s of ${n(p.rows)} rows`,
  ]);
  if (p.whilePublishing)
    rows.push([
      "  while the publisher runs on the same box",
      n(p.whilePublishing.perSecond),
      ratio(p.whilePublishing.perSecond, base),
      `${p.whilePublishing.seconds} s`,
    ]);
  if (p.afterPublishing)
    rows.push([
      "  after it, draining the MQTT broker's queue",
      n(p.afterPublishing.perSecond),
      ratio(p.afterPublishing.perSecond, base),
      `${p.afterPublishing.seconds} s`,
    ]);
  rows.push([
    "  publisher offered (PUBACKed by Mosquitto)",
    n(p.offeredPerSecond),
    ratio(p.offeredPerSecond, base),
    "",
  ]);
  if (r.naive) {
    rows.push([
      "REFERENCE straightforward (await confirm, 1 txn/row)",
      n(r.naive.steady.perSecond),
      ratio(r.naive.steady.perSecond, base),
      `steady ${r.naive.steady.seconds} s`,
    ]);
    rows.push([
      "pipeline / reference",
      `${(p.steady.perSecond / Math.max(1, r.naive.steady.perSecond)).toFixed(1)}x`,
      "",
      "",
    ]);
  }
  out.push("Throughput", table(rows, ["l", "r", "r", "l"]), "");

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

  const res: string[][] = [["process", "peak RSS MiB", "RSS at end MiB", "CPU s", "cores"]];
  const addUsage = (label: string, run: PhaseResult | undefined) => {
    if (!run) return;
    for (const [name, u] of Object.entries(run.usage.processes)) {
      res.push([
        `${label} ${name}`,
        u.peakRssMiB.toFixed(1),
        u.lastRssMiB.toFixed(1),
        u.cpuSeconds.toFixed(1),
        u.cores.toFixed(2),
      ]);
    }
    res.push([
      `${label} machine busy`,
      "",
      "",
      "",
      `${(run.usage.machineBusy * run.usage.cpus).toFixed(2)} of ${run.usage.cpus}`,
    ]);
  };
  addUsage("pipeline", p);
  addUsage("latency", r.latency);
  out.push(
    "Resources (sampled from /proc every 0.5 s during the run)",
    table(res, ["l", "r", "r", "r", "r"]),
    "",
  );

  const checks = [p, r.latency].filter((x): x is NonNullable<typeof x> => x !== undefined);
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
