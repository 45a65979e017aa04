import amqp from "amqplib";
import { queueNames } from "../amqp/topology.js";
import { defineCommand } from "../common/command.js";
import { parsers, redactUrl, setting, splitUrlList } from "../common/config.js";
import { amqpSecurity, common, reportFormat, securityProblem } from "../common/settings.js";
import { readTls, type TlsMaterial } from "../common/tls.js";
import { params } from "../query/params.js";
import { isSilent } from "../query/silent.js";
import { openQueries } from "../store/index.js";
import { postgresStatus } from "../store/postgres-status.js";
import { storeStatus } from "../store/status.js";
import { PROBE_TIMEOUT_MS, type Readiness, readiness, reasonOf, scrape } from "./probe.js";

/** Default base URLs of the services' health endpoints: their default HTTP_PORT on this machine. */
const GATEWAY_URL = "http://127.0.0.1:9464";
const PROCESSOR_URL = "http://127.0.0.1:9465";

/** The counters a rate is computed from, per service (they are the services' own, from `/metrics`). */
const RATES = {
  gateway: {
    received: "telemetry_gateway_messages_received_total",
    published: "telemetry_gateway_readings_published_total",
    rejected: "telemetry_gateway_rejected_total",
  },
  processor: {
    deliveries: "telemetry_processor_deliveries_total",
    stored: "telemetry_processor_readings_stored_total",
    duplicates: "telemetry_processor_duplicates_total",
    dead_lettered: "telemetry_processor_dead_lettered_total",
  },
} as const;

type ServiceName = keyof typeof RATES;

/** One queue as `checkQueue` sees it. */
export type QueueStatus =
  | { readonly messages: number; readonly consumers: number }
  | { readonly error: string };

/** A gateway's spool (SPOOL_PATH), from its /metrics: what it holds that RabbitMQ has not confirmed yet. */
export interface SpoolStatus {
  readonly readings: number;
  readonly bytes: number;
  /** Age of the oldest segment holding unconfirmed readings (0 when empty). */
  readonly oldest_age_s: number;
  /** Full under SPOOL_FULL=block: PUBACKs held. */
  readonly full: boolean;
  /** Readings dropped unsent since the gateway started (drop policies, max age, corruption). */
  readonly dropped: number;
}

/** One service: its health URL, what `/readyz` said, and its rates per second over the sampling interval. */
export interface ServiceStatus {
  readonly url: string;
  readonly ready: boolean;
  readonly state: Readiness["state"];
  readonly reason?: string;
  readonly rates?: Readonly<Record<string, number>>;
  /**
   * Gateway only: whether RabbitMQ takes its publishes. "down" with a spool and `ready`: the spool absorbs the
   * outage (the gateway still PUBACKs); without a spool the gateway is not ready then.
   */
  readonly uplink?: "up" | "down";
  /** Gateway with a spool only. */
  readonly spool?: SpoolStatus;
}

/** What `telemetry status --format json` prints. */
export interface Status {
  readonly queues: Readonly<Record<string, QueueStatus>>;
  readonly store:
    | {
        readonly path: string;
        readonly rows: number;
        readonly newest_ts: string | null;
        readonly newest_stored_at: string | null;
        readonly bytes: number;
        readonly devices: number;
        /** Devices silent now (query/silent.ts, with `SILENT_MIN`), and the first few of them in device order. */
        readonly silent_devices: number;
        readonly silent_first: readonly string[];
      }
    | { readonly path: string; readonly error: string };
  readonly services: Readonly<Record<ServiceName, ServiceStatus>>;
  readonly interval_ms: number;
}

/** Depth and consumers of `<QUEUE>`, `.rejected` and `.dead`, one passive declare each (on its own channel, since a
 * missing queue closes the channel that asked). */
async function queues(url: string, queue: string, tls: TlsMaterial): Promise<Record<string, QueueStatus>> {
  const out: Record<string, QueueStatus> = {};
  let conn: amqp.ChannelModel | undefined;
  let lastError: unknown;
  for (const node of splitUrlList(url)) {
    try {
      conn = await amqp.connect(node, { ...tls, timeout: PROBE_TIMEOUT_MS });
      break;
    } catch (err) {
      lastError = err;
    }
  }
  const names = Object.values(queueNames(queue));
  if (!conn) {
    for (const name of names) out[name] = { error: `RabbitMQ ${redactUrl(url)}: ${reasonOf(lastError)}` };
    return out;
  }
  conn.on("error", () => undefined);
  try {
    for (const name of names) {
      const ch = await conn.createChannel();
      ch.on("error", () => undefined);
      try {
        const q = await ch.checkQueue(name);
        out[name] = { messages: q.messageCount, consumers: q.consumerCount };
        await ch.close();
      } catch (err) {
        out[name] = { error: /NOT_FOUND/.test(String(err)) ? "does not exist" : reasonOf(err) };
      }
    }
  } finally {
    await conn.close().catch(() => undefined);
  }
  return out;
}

const SPOOL_METRICS = {
  uplinkUp: "telemetry_gateway_uplink_up",
  amqpConnected: "telemetry_gateway_amqp_connected",
  readings: "telemetry_gateway_spool_depth_readings",
  bytes: "telemetry_gateway_spool_bytes",
  oldest: "telemetry_gateway_spool_oldest_age_seconds",
  full: "telemetry_gateway_spool_full",
  dropped: "telemetry_gateway_spool_dropped_total",
} as const;

/** The gateway's uplink and spool from one scrape: the spool's gauges exist only with SPOOL_PATH. */
function uplinkOf(samples: Map<string, number>): Pick<ServiceStatus, "uplink" | "spool"> {
  const m = SPOOL_METRICS;
  const spooled = samples.get(m.uplinkUp);
  if (spooled === undefined) {
    const connected = samples.get(m.amqpConnected);
    return connected === undefined ? {} : { uplink: connected === 1 ? "up" : "down" };
  }
  return {
    uplink: spooled === 1 ? "up" : "down",
    spool: {
      readings: samples.get(m.readings) ?? 0,
      bytes: samples.get(m.bytes) ?? 0,
      oldest_age_s: Math.round((samples.get(m.oldest) ?? 0) * 10) / 10,
      full: samples.get(m.full) === 1,
      dropped: samples.get(m.dropped) ?? 0,
    },
  };
}

/** Readiness now, and rates from two scrapes of `/metrics` `intervalMs` apart. */
async function service(name: ServiceName, url: string, intervalMs: number): Promise<ServiceStatus> {
  const first = await scrape(url);
  const t0 = Date.now();
  const ready = await readiness(url);
  const base = {
    url,
    ready: ready.state === "ready",
    state: ready.state,
    ...(ready.state === "ready" ? {} : { reason: ready.reason }),
  };
  if (!first) return base;
  await new Promise((r) => setTimeout(r, Math.max(0, intervalMs - (Date.now() - t0))));
  const second = await scrape(url);
  const seconds = (Date.now() - t0) / 1_000;
  const withUplink = name === "gateway" ? { ...base, ...uplinkOf(second ?? first) } : base;
  if (!second || seconds <= 0) return withUplink;
  const rates: Record<string, number> = {};
  for (const [key, metric] of Object.entries(RATES[name])) {
    const delta = (second.get(metric) ?? 0) - (first.get(metric) ?? 0);
    rates[`${key}_per_s`] = Math.round((Math.max(0, delta) / seconds) * 10) / 10;
  }
  return { ...withUplink, rates };
}

const iso = (ms: number | null) => (ms === null ? null : new Date(ms).toISOString());
/** Silent devices `status` names; the rest are counted (`telemetry query devices` lists them all). */
const SILENT_NAMED = 5;

/** How many devices the store holds and which are silent now. */
async function silentDevices(c: { dbPath: string; databaseUrl?: string | undefined; silentMin: number }) {
  const queries = await openQueries(c);
  try {
    const devices = await queries.devices();
    const now = Date.now();
    const silent = devices.filter((d) => isSilent(d, now, c.silentMin)).map((d) => d.device_id);
    return {
      devices: devices.length,
      silent_devices: silent.length,
      silent_first: silent.slice(0, SILENT_NAMED),
    };
  } finally {
    await queries.stop();
  }
}

/** Gathers the whole status; never throws for a broker, store or service it cannot reach (it says so instead). */
export async function gatherStatus(c: {
  amqpUrl: string;
  amqpCaFile?: string | undefined;
  amqpCertFile?: string | undefined;
  amqpKeyFile?: string | undefined;
  queue: string;
  dbPath: string;
  databaseUrl?: string | undefined;
  gateway: string;
  processor: string;
  intervalMs: number;
  silentMin: number;
}): Promise<Status> {
  const store = async (): Promise<Status["store"]> => {
    try {
      const s = c.databaseUrl ? await postgresStatus(c.databaseUrl) : storeStatus(c.dbPath);
      return {
        path: s.path,
        rows: s.rows,
        newest_ts: iso(s.newestTs),
        newest_stored_at: iso(s.newestStoredAt),
        bytes: s.bytes,
        ...(await silentDevices(c)),
      };
    } catch (err) {
      return { path: c.databaseUrl ? redactUrl(c.databaseUrl) : c.dbPath, error: redactUrl(reasonOf(err)) };
    }
  };
  const [q, stored, gateway, processor] = await Promise.all([
    queues(
      c.amqpUrl,
      c.queue,
      readTls({ caFile: c.amqpCaFile, certFile: c.amqpCertFile, keyFile: c.amqpKeyFile }),
    ),
    store(),
    service("gateway", c.gateway, c.intervalMs),
    service("processor", c.processor, c.intervalMs),
  ]);
  return { queues: q, store: stored, services: { gateway, processor }, interval_ms: c.intervalMs };
}

const KIB = 1_024;
const MIB = 1_048_576;
const size = (bytes: number) =>
  bytes < MIB ? `${Math.ceil(bytes / KIB)} KiB` : `${(bytes / MIB).toFixed(bytes < 100 * MIB ? 1 : 0)} MiB`;

/** "uplink down: the spool absorbs the outage, 1234 readings spooled (0.2 MiB), oldest 12 s", or undefined. */
function uplinkLine(svc: ServiceStatus): string | undefined {
  const sp = svc.spool;
  if (!sp) return svc.uplink === "down" ? "uplink down (no spool: PUBACKs wait for RabbitMQ)" : undefined;
  const held =
    `${sp.readings} readings spooled (${size(sp.bytes)} on disk), oldest ${sp.oldest_age_s} s` +
    (sp.full ? ", FULL: PUBACKs held" : "") +
    (sp.dropped > 0 ? `, ${sp.dropped} dropped` : "");
  return svc.uplink === "down"
    ? `uplink down: the spool absorbs the outage, ${held}`
    : `uplink up; spool: ${held}`;
}

function table(s: Status): string {
  const lines: string[] = ["QUEUE                                     MESSAGES  CONSUMERS"];
  for (const [name, q] of Object.entries(s.queues)) {
    lines.push(
      "error" in q
        ? `${name.padEnd(40)}  ${q.error}`
        : `${name.padEnd(40)}  ${String(q.messages).padStart(8)}  ${String(q.consumers).padStart(9)}`,
    );
  }
  lines.push("", "STORE");
  if ("error" in s.store) lines.push(`  ${s.store.path}: ${s.store.error}`);
  else {
    lines.push(
      `  ${s.store.path}: ${s.store.rows} rows, newest reading ${s.store.newest_ts ?? "none"}, ` +
        `last stored ${s.store.newest_stored_at ?? "never"}`,
    );
    const { devices, silent_devices: n, silent_first: first } = s.store;
    lines.push(
      `  ${devices} devices, ${n} silent` +
        (n === 0 ? "" : `: ${first.join(", ")}${n > first.length ? `, and ${n - first.length} more` : ""}`),
    );
  }
  lines.push("", `SERVICE     STATE        URL                      RATES (per s, over ${s.interval_ms} ms)`);
  for (const [name, svc] of Object.entries(s.services)) {
    const rates = svc.rates
      ? Object.entries(svc.rates)
          .map(([k, v]) => `${k.replace(/_per_s$/, "")} ${v}`)
          .join(", ")
      : "";
    const state = svc.reason ? `${svc.state}: ${svc.reason}` : svc.state;
    lines.push(`${name.padEnd(10)}  ${svc.state.padEnd(11)}  ${svc.url.padEnd(23)}  ${rates}`);
    if (svc.reason) lines.push(`${" ".repeat(12)}${state}`);
    const uplink = uplinkLine(svc);
    if (uplink) lines.push(`${" ".repeat(12)}${uplink}`);
  }
  return `${lines.join("\n")}\n`;
}

/**
 * `telemetry status [--format table|json]`: queue depths and consumers, rows stored and the newest reading, each
 * service's readiness and rates, on one screen. Exit 0 when RabbitMQ answered and both services are ready, 1
 * otherwise (the status is printed either way). Secrets never print: URLs show `***` for their password.
 */
export const statusCommand = defineCommand({
  name: "status",
  usage: "telemetry status [options]",
  summary:
    "Queue depths and consumers of <QUEUE>, <QUEUE>.rejected and <QUEUE>.dead, rows stored and the newest " +
    "reading, silent devices, and each running service's readiness with its rates (from two samples of its\n" +
    "/metrics).",
  check: securityProblem,
  spec: {
    amqpUrl: common.amqpUrl,
    ...amqpSecurity,
    queue: common.queue,
    dbPath: common.dbPath,
    databaseUrl: common.databaseUrl,
    gateway: setting({
      flag: "gateway",
      default: GATEWAY_URL,
      description: "Base URL of the gateway's health endpoint.",
      parse: parsers.url("http:", "https:"),
    }),
    processor: setting({
      flag: "processor",
      default: PROCESSOR_URL,
      description: "Base URL of the processor's health endpoint.",
      parse: parsers.url("http:", "https:"),
    }),
    intervalMs: setting({
      flag: "interval",
      default: 1_000,
      description: "Time between the two samples of each service's /metrics the rates come from.",
      parse: parsers.duration(100, 60_000),
    }),
    silentMin: params.silentMin,
    format: reportFormat,
  },
  run: async (config) => {
    const s = await gatherStatus(config);
    process.stdout.write(config.format === "json" ? `${JSON.stringify(s, null, 2)}\n` : table(s));
    const queuesOk = Object.values(s.queues).every((q) => !("error" in q) || q.error === "does not exist");
    return queuesOk && s.services.gateway.ready && s.services.processor.ready ? 0 : 1;
  },
});
