/**
 * The gateway's peak memory against payload size (issue 31): N payloads of k readings each (k = 1, 100, 1,000,
 * 8,000; 8,000 is about 248 KB, under the 256 KiB limit) published while RabbitMQ blocks publishers, the gateway's
 * VmRSS sampled and its VmHWM read from /proc; then RabbitMQ is unblocked and every reading must be stored.
 *
 * Each size gets a fresh gateway and processor on a private RabbitMQ node (its memory alarm is raised with
 * `set_vm_memory_high_watermark`, as test/integration/faults-blocked.test.ts does) and a private Mosquitto, so the
 * idle RSS is the gateway's own before that size and the shared broker is never blocked. GATEWAY_INFLIGHT_BYTES is
 * passed to the gateway when set in the benchmark's environment (or with `--set`).
 */
import { join } from "node:path";
import { connect } from "mqtt";
import { startPrivateMosquitto, startPrivateRabbit } from "../scripts/private-brokers.js";
import { type Service, startService, untilReady } from "../scripts/spawn.js";
import { inspectStore } from "../store/inspect.js";
import { metric } from "./metrics.js";
import { readProc } from "./proc.js";
import { fmt, markdownTable, round, sleep, until } from "./util.js";

/** Readings per payload, and payloads per size (a full run; a short one sends `short` of each). */
const SIZES = [1, 100, 1_000, 8_000] as const;
const PAYLOADS = { full: 300, short: 20 } as const;
/**
 * Sampling while blocked, ms; the gateway has taken all it will once its received count has not moved for
 * `settle`; it is idle `idle` after it is ready.
 */
const WAIT_MS = { sample: 100, settle: 3_000, idle: 1_000 } as const;
const T0 = Date.UTC(2026, 0, 1);
const MiB = (kib: number) => round(kib / 1_024, 1);

export interface PayloadRssRow {
  readonly readingsPerPayload: number;
  readonly payloadBytes: number;
  readonly payloads: number;
  /** The gateway's VmRSS once ready and idle, before RabbitMQ blocked it. */
  readonly idleRssMiB: number;
  /** The gateway's VmHWM (the kernel's own peak) once it had taken all it would while blocked. */
  readonly peakRssMiB: number;
  readonly peakOverIdleMiB: number;
  /** MQTT messages the gateway had taken in while blocked (it holds them, and their PUBACKs). */
  readonly takenWhileBlocked: number;
  /** Rows in the database after unblocking, and the readings published (the warm-up payload included). */
  readonly stored: number;
  readonly sent: number;
}

export interface PayloadRssResult {
  readonly inflightBytes: string | undefined;
  readonly rows: readonly PayloadRssRow[];
}

/** `n` readings of one payload: distinct ts per (payload, reading), one-digit values, so ~31 bytes each. */
function payload(p: number, k: number): Buffer {
  const items = Array.from({ length: k }, (_, i) => `{"ts":${T0 + p * k + i},"value":${i % 10}}`);
  return Buffer.from(`[${items.join(",")}]`);
}

/** Runs every size on one private RabbitMQ node and one private Mosquitto; both are stopped at the end. */
export async function runPayloadRss(o: {
  readonly short: boolean;
  readonly workDir: string;
  readonly serviceEnv: Readonly<Record<string, string>>;
  readonly say: (line: string) => void;
}): Promise<PayloadRssResult> {
  const payloads = o.short ? PAYLOADS.short : PAYLOADS.full;
  const inflightBytes = o.serviceEnv.GATEWAY_INFLIGHT_BYTES ?? process.env.GATEWAY_INFLIGHT_BYTES;
  await using rabbit = await startPrivateRabbit();
  await using mosquitto = await startPrivateMosquitto({ maxQueued: 0, maxInflight: 0 });
  const rows: PayloadRssRow[] = [];
  for (const k of SIZES) {
    const id = `bench-payload-${k}`;
    const env = {
      AMQP_URL: rabbit.url,
      MQTT_URL: mosquitto.url,
      QUEUE: id,
      TOPIC_PREFIX: id,
      GATEWAY_ID: id,
      DB_PATH: join(o.workDir, `${id}.db`),
      HTTP_PORT: "0",
      LOG_LEVEL: "info",
      ...(inflightBytes === undefined ? {} : { GATEWAY_INFLIGHT_BYTES: inflightBytes }),
      ...o.serviceEnv,
    };
    const services: Service[] = [];
    const client = connect(mosquitto.url, { clientId: `${id}-pub`, clean: true, protocolVersion: 4 });
    client.on("error", () => undefined);
    try {
      services.push(await startService("processor", env));
      const gateway = await startService("gateway", env);
      services.push(gateway);
      await untilReady(...services);
      const pid = gateway.proc.pid ?? 0;
      await sleep(WAIT_MS.idle);
      const idle = readProc(pid)?.rssKiB ?? 0;
      await rabbit.ctl("set_vm_memory_high_watermark", "0.0000001");
      // One small payload makes the gateway publish, so RabbitMQ blocks it before the measured ones arrive.
      await client.publishAsync(`${id}/warm-up/load`, payload(payloads, 1), { qos: 1 });
      await until(
        "RabbitMQ blocks the gateway",
        async () => {
          const res = await fetch(`http://127.0.0.1:${gateway.httpPort}/readyz`);
          return /blocked/.test(await res.text());
        },
        { stallMs: 30_000 },
      );
      const body = (p: number) => payload(p, k);
      await Promise.all(
        Array.from({ length: payloads }, (_, p) =>
          client.publishAsync(`${id}/dev-${p % 10}/load`, body(p), { qos: 1 }),
        ),
      );
      let taken = 0;
      let movedAt = Date.now();
      await until(
        "the gateway takes what it will",
        async () => {
          const now = await metric(gateway.httpPort, "telemetry_gateway_messages_received_total");
          if (now !== taken) [taken, movedAt] = [now, Date.now()];
          return Date.now() - movedAt >= WAIT_MS.settle;
        },
        { pollMs: WAIT_MS.sample },
      );
      const peak = readProc(pid)?.hwmKiB ?? 0;
      await rabbit.ctl("set_vm_memory_high_watermark", "0.4");
      const sent = payloads * k + 1;
      let stored = 0;
      const storedNow = async () => {
        stored = await metric(services[0]!.httpPort, "telemetry_processor_readings_stored_total");
        return stored >= sent;
      };
      await until(`${id}: every reading stored`, storedNow, {
        pollMs: 250,
        stallMs: 60_000,
        progress: () => stored,
      });
      await Promise.all(services.splice(0).map((s) => s.stop("SIGTERM")));
      const store = inspectStore(env.DB_PATH);
      const row: PayloadRssRow = {
        readingsPerPayload: k,
        payloadBytes: body(0).length,
        payloads,
        idleRssMiB: MiB(idle),
        peakRssMiB: MiB(peak),
        peakOverIdleMiB: MiB(peak - idle),
        takenWhileBlocked: taken - 1,
        stored: store.totals().rows,
        sent,
      };
      store.close();
      rows.push(row);
      o.say(
        `  ${fmt(payloads)} x ${fmt(k)} readings (${fmt(row.payloadBytes)} bytes): gateway ${row.idleRssMiB} -> ${row.peakRssMiB} MiB, ${fmt(row.stored)} of ${fmt(sent)} stored`,
      );
    } finally {
      await Promise.all(services.map((s) => s.stop("SIGKILL")));
      await client.endAsync(true);
    }
  }
  return { inflightBytes, rows };
}

/** True when every size stored exactly the readings published. */
export const payloadRssComplete = (r: PayloadRssResult): boolean => r.rows.every((x) => x.stored === x.sent);

/** The figures as a markdown section, one row per payload size. */
export function payloadRssReport(r: PayloadRssResult): string {
  return [
    "## Gateway memory against payload size while RabbitMQ blocks (issue 31)",
    "",
    `Payloads published while a private RabbitMQ node's memory alarm blocks publishers; GATEWAY_INFLIGHT_BYTES ${r.inflightBytes ?? "unset (default)"}. ` +
      "Idle: VmRSS before the alarm; peak: VmHWM once the gateway took all it would; stored: rows after unblocking.",
    "",
    ...markdownTable(
      [
        ">readings a payload",
        ">bytes a payload",
        ">payloads",
        ">idle RSS MiB",
        ">peak RSS MiB",
        ">peak - idle MiB",
        ">taken while blocked",
        ">stored / sent",
      ],
      r.rows.map((x) => [
        fmt(x.readingsPerPayload),
        fmt(x.payloadBytes),
        fmt(x.payloads),
        String(x.idleRssMiB),
        String(x.peakRssMiB),
        String(x.peakOverIdleMiB),
        fmt(x.takenWhileBlocked),
        `${fmt(x.stored)} / ${fmt(x.sent)}${x.stored === x.sent ? "" : " MISSING"}`,
      ]),
    ),
  ].join("\n");
}
