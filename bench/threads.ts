/**
 * The C-driven pipeline phase of `npm run bench` alone, with the gateway's and the processor's CPU split by thread
 * (issue 28): which part is the main thread's, the SQLite worker's, V8's helpers' (concurrent GC). Compare builds
 * by running it alternately on each:
 *
 *   npm run build && node dist/bench/threads.js [READINGS] [KEY=VALUE ...]
 *
 * READINGS defaults to 400,000 (40 `mosquitto_pub -M 1000`, as the bench); KEY=VALUE go to both services' environment.
 */
import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import os from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { startPrivateMosquitto } from "../scripts/private-brokers.js";
import { cPublisherLoad, writeReadingFiles } from "./c-clients.js";
import { runPhase, startProduct } from "./pipeline.js";
import { CLK_TCK, pidListeningOn } from "./proc.js";
import { fmt, say } from "./util.js";

/** CPU ms so far of each thread of `pid`, by thread id. */
function threadCpuMs(pid: number): Map<string, number> {
  const out = new Map<string, number>();
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    try {
      const stat = readFileSync(`/proc/${pid}/task/${tid}/stat`, "utf8");
      const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      out.set(tid, ((Number(fields[11]) + Number(fields[12])) * 1_000) / CLK_TCK);
    } catch {
      // The thread ended between the listing and the read.
    }
  }
  return out;
}

/** µs per reading of the main thread, the busiest other thread and all the others together, over the phase. */
function split(pid: number, before: Map<string, number>, readings: number) {
  const us = [...threadCpuMs(pid)].map(([tid, ms]) => ({
    tid,
    us: ((ms - (before.get(tid) ?? 0)) * 1_000) / readings,
  }));
  const main = us.find((t) => t.tid === String(pid))?.us ?? 0;
  const others = us.filter((t) => t.tid !== String(pid)).sort((a, b) => b.us - a.us);
  const rest = others.slice(1).reduce((a, t) => a + t.us, 0);
  return { main, busiestOther: others[0]?.us ?? 0, rest };
}

async function main(): Promise<void> {
  const total = Number(process.argv[2] ?? 400_000);
  if (!Number.isSafeInteger(total) || total < 1_000) throw new Error("READINGS: an integer, at least 1000");
  const env = Object.fromEntries(
    process.argv.slice(3).map((kv) => [kv.slice(0, kv.indexOf("=")), kv.slice(kv.indexOf("=") + 1)]),
  );
  const workDir = mkdtempSync(join(os.tmpdir(), "telemetry-threads-"));
  const runId = `threads-${Date.now().toString(36)}-${process.pid}`;
  const readings = { devicePrefix: "cdev", devices: 20, sensors: 2, total, baseTs: Date.now() - 3_600_000 };
  const inputs = writeReadingFiles(workDir, readings);
  await using broker = await startPrivateMosquitto({ maxQueued: 0, maxInflight: 0 });
  const amqpUrl = process.env.AMQP_URL ?? "amqp://guest:guest@127.0.0.1:5672";
  const e = {
    ...{ mqttUrl: broker.url, amqpUrl, queue: `bench-${runId}`, queueType: "quorum" as const },
    ...{ topicPrefix: "bench-threads", gatewayId: `bench-${runId}`, dbPath: join(workDir, "threads.db") },
  };
  let pids: Record<string, number> = {};
  const before = new Map<string, Map<string, number>>();
  const splits: Record<string, ReturnType<typeof split>> = {};
  try {
    const r = await runPhase({
      label: "c-pipeline",
      endpoints: e,
      start: async () => {
        const sut = await startProduct(e, undefined, env);
        pids = sut.pids;
        for (const [name, pid] of Object.entries(pids)) before.set(name, threadCpuMs(pid));
        return sut;
      },
      publisher: { ...readings, window: 0, rate: 0, clientId: `${runId}-unused` },
      load: (mqttUrl, topicPrefix) => {
        const load = cPublisherLoad({
          mqttUrl,
          topicPrefix,
          clientIdPrefix: runId,
          inputs,
          total,
          inflight: 1_000,
        });
        // Read when every reading is stored, before the services are stopped.
        const stop = () => {
          for (const [name, pid] of Object.entries(pids)) splits[name] = split(pid, before.get(name)!, total);
          load.stop();
        };
        return { ...load, stop };
      },
      watch: { mosquitto: broker.pid, rabbitmq: pidListeningOn(Number(new URL(amqpUrl).port || 5672)) },
      latencyWarmup: 0,
      cpus: os.cpus().length,
    });
    const us = (name: string) => ((r.usage.processes[name]?.cpuSeconds ?? 0) * 1e6) / Math.max(1, r.rows);
    const n1 = (x: number) => x.toFixed(1);
    for (const [name, s] of Object.entries(splits)) {
      say(
        `${name}: main thread ${n1(s.main)}, busiest other thread ${n1(s.busiestOther)}, all others ${n1(s.rest)} us a reading`,
      );
    }
    say(
      `${fmt(r.rows)} rows, ${fmt(r.firstToLastPerSecond)}/s first to last commit; CPU us a reading: gateway ${n1(us("gateway"))}, processor ${n1(us("processor"))}, RabbitMQ ${n1(us("rabbitmq"))} (sum ${n1(us("gateway") + us("processor") + us("rabbitmq"))}), Mosquitto ${n1(us("mosquitto"))}, publishers ${n1(us("publisher"))}; exactly once ${r.exactlyOnce.ok ? "OK" : "FAILED"}; load ${os.loadavg()[0]?.toFixed(1)}`,
    );
    if (!r.exactlyOnce.ok) process.exitCode = 1;
  } finally {
    rmSync(workDir, { recursive: true, force: true });
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main().catch((err: unknown) => {
    say(err instanceof Error ? (err.stack ?? err.message) : String(err));
    process.exitCode = 1;
  });
}
