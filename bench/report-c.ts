/** The C-client part of the report: the broker alone against the pipeline, driven by the same C publishers. */
import type { BrokerBaseline } from "./c-clients.js";
import type { PhaseResult } from "./pipeline.js";
import type { UsageReport } from "./proc.js";
import { fmt as n, table } from "./util.js";

/** Issue 13's and 28's comparison: the broker alone and the pipeline, driven by the same C publishers in one run. */
export interface CClientResults {
  /** mosquitto_pub processes (one per device and sensor) and readings each phase sends. */
  readonly publishers: number;
  readonly readings: number;
  /** Each publisher's QoS 1 window (`-M`) in the pipeline phases. */
  readonly inflight: number;
  /** PUBLISH_BATCH of the "batched" run, as set. */
  readonly batchSetting: string;
  /** The broker alone with `-M inflight` and with libmosquitto's default window of 20. */
  readonly brokerAlone: readonly BrokerBaseline[];
  /** The faster of `brokerAlone`: the baseline of the ratios. */
  readonly baseline: BrokerBaseline;
  /** The pipeline with its defaults (batch messages), and with PUBLISH_BATCH=1 (one reading a message). */
  readonly batched: PhaseResult;
  readonly unbatched: PhaseResult;
}

/** CPU microseconds per reading stored of the gateway, the processor, RabbitMQ and their sum, in one run. */
export function servicesCpuUs(run: PhaseResult) {
  const us = (name: string) => ((run.usage.processes[name]?.cpuSeconds ?? 0) * 1e6) / Math.max(1, run.rows);
  if (run.rows === 0) return undefined;
  const [gateway, processor, rabbitmq] = [us("gateway"), us("processor"), us("rabbitmq")];
  return { gateway, processor, rabbitmq, total: gateway + processor + rabbitmq };
}

/** `mosquitto_pub`'s own `-M` default. */
export const LIBMOSQUITTO_INFLIGHT = 20;

const ratio = (x: number, base: number) => (base > 0 ? (x / base).toFixed(2) : "-");

/** The broker alone against the pipeline with and without batching: rates and CPU per reading of each process. */
export function cClientSection(c: CClientResults): string[] {
  const base = c.baseline.perSecond;
  const procs = ["publisher", "mosquitto", "subscriber", "gateway", "rabbitmq", "processor"];
  const cpu = (usage: UsageReport, count: number) => {
    const us = (name: string) => {
      const u = usage.processes[name];
      return u === undefined ? undefined : (u.cpuSeconds * 1e6) / Math.max(1, count);
    };
    const sum = (xs: (number | undefined)[]) => xs.reduce<number>((a, x) => a + (x ?? 0), 0);
    const services = ["gateway", "rabbitmq", "processor"].map(us);
    return [
      ...procs.map((name) => (us(name) === undefined ? "-" : n(us(name) ?? 0))),
      services.every((x) => x === undefined) ? "-" : n(sum(services)),
      n(sum(Object.keys(usage.processes).map(us))),
    ];
  };
  const run = (label: string, p: PhaseResult) => [
    label,
    n(p.firstToLastPerSecond),
    ratio(p.firstToLastPerSecond, base),
    n(p.steady.perSecond),
    ...cpu(p.usage, p.rows),
  ];
  const alone = (b: BrokerBaseline) => [
    `broker alone, -M ${b.inflight}${b.inflight === LIBMOSQUITTO_INFLIGHT ? " (libmosquitto default window)" : ""}${b === c.baseline ? " <- baseline" : ""}`,
    n(b.perSecond),
    ratio(b.perSecond, base),
    "-",
    ...cpu(b.usage, b.received),
  ];
  const rows = [
    ["", "readings/s", "x broker", "steady/s", ...procs, "gw+rmq+pr", "all"],
    ...c.brokerAlone.map(alone),
    run(`pipeline, PUBLISH_BATCH ${c.batchSetting}`, c.batched),
    run("pipeline, PUBLISH_BATCH=1 (batching off)", c.unbatched),
  ];
  const gain = c.batched.firstToLastPerSecond / Math.max(1, c.unbatched.firstToLastPerSecond);
  const [b, u] = [c.batched.counters, c.unbatched.counters];
  return [
    `Against the broker alone: the same ${c.publishers} C publishers (mosquitto_pub -q 1 -l -M ${c.inflight} in the pipeline, one per device and sensor, ${n(c.readings)} readings from files), one run`,
    "(broker alone: mosquitto_pub -> Mosquitto -> mosquitto_sub, the faster window is the baseline; readings/s: first to",
    " last message received, or first to last commit; steady/s: the pipeline's steady window;",
    " CPU us per reading of each process; rabbitmq is the shared broker's whole CPU, anyone's queues included)",
    table(rows, ["l", ...rows[0]!.slice(1).map((): "r" => "r")]),
    `  batching gain: ${gain.toFixed(2)}x readings/s; mean batch on the processor ${b.batchMean ?? "-"} (batching off ${u.batchMean ?? "-"}); gateway confirm mean ${b.confirmMeanMs ?? "-"} ms (off ${u.confirmMeanMs ?? "-"} ms)`,
    `  failed mosquitto_pub: broker alone ${c.baseline.failedPublishers}, pipeline ${c.batched.publisher.failed}, batching off ${c.unbatched.publisher.failed}; mosquitto_sub received ${n(c.baseline.received)} of ${n(c.readings)}`,
    "",
  ];
}
