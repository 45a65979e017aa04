/**
 * The processor's store figures (issues 14 and 17), in one run: a durable queue is filled with batch messages as
 * the gateway writes them, then the real processor process(es) drain it and the drain is timed until every reading
 * is committed. Phases: (a) SQLite, the product; (b) SQLite without the `series` rollup and the rollup tiers
 * (bench/processor-child.ts); (t) SQLite with the `series` rollup, without the tiers; (c) PostgreSQL, one
 * processor; (d) PostgreSQL, two processors on one queue; (e) PostgreSQL, one processor without the rollup tiers
 * (bench/processor-child.ts). Each phase must store exactly the readings queued.
 */
import { rmSync } from "node:fs";
import { loadavg } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import Database from "better-sqlite3";
import pg from "pg";
import { splitUrlList } from "../common/config.js";
import { type Reading, SchemaRegistry } from "../schemas/index.js";
import { type Service, startService } from "../scripts/spawn.js";
import type { SqliteStoreOptions } from "../store/sqlite.js";
import { readRollup } from "../store/sqlite-rollup.js";
import { TIERS } from "../store/tiers.js";
import { metric } from "./metrics.js";
import { readProc } from "./proc.js";
import { deviceName, readingValue, sensorName } from "./publisher.js";
import { publishConfirmed } from "./raw.js";
import { deleteQueues, fmt, markdownTable, median, round, until } from "./util.js";

const SENSORS = 4;
const DEVICES = 1_000;
/** Readings per queue message: what the gateway's PUBLISH_BATCH packs at most (500). */
const MESSAGE_READINGS = 500;
/** Publishes awaiting their confirm at once while filling the queue. */
const FILL_WINDOW = 64;
const WAIT = { pollMs: 100, stallMs: 60_000 } as const;
const T0 = Date.UTC(2026, 0, 1);
const INTERVAL_MS = 10_000;
const CHILD = fileURLToPath(new URL("./processor-child.js", import.meta.url));

export interface StoresBenchOptions {
  readonly amqpUrl: string;
  /** Server to create the PostgreSQL phases' databases on, e.g. postgres://postgres@127.0.0.1:5432/postgres. */
  readonly databaseUrl: string;
  readonly workDir: string;
  readonly runId: string;
  readonly short: boolean;
  readonly say: (line: string) => void;
}

/** Batch message bodies of `perSeries` readings of every series, time by time, as a live fleet sends them. */
function batchBodies(perSeries: number): Buffer[] {
  const schemas = SchemaRegistry.load();
  const readings: Reading[] = [];
  for (let k = 0; k < perSeries; k++) {
    const ts = T0 + k * INTERVAL_MS;
    for (let j = 0; j < DEVICES * SENSORS; j++) {
      const where = {
        device_id: deviceName("bench", Math.floor(j / SENSORS)),
        sensor: sensorName(j % SENSORS),
      };
      const value = readingValue(readings.length);
      readings.push({
        ...where,
        ts,
        value,
        unit: "C",
        seq: k,
        gateway_id: "bench-gateway",
        received_at: ts + 5,
      });
    }
  }
  const bodies: Buffer[] = [];
  for (let i = 0; i < readings.length; i += MESSAGE_READINGS) {
    const datums = readings.slice(i, i + MESSAGE_READINGS).map((r) => schemas.encodeDatum(r));
    bodies.push(
      schemas.frameBatch(
        datums,
        datums.reduce((n, d) => n + d.length, 0),
      ),
    );
  }
  return bodies;
}

/** What a phase needs to run one drain: the processes to start, and how to count the rows afterwards. */
interface DrainTarget {
  /** Starts the processors on `queue` (resolving once each logged "processor started"). */
  start(queue: string): Promise<Service[]>;
  /** Rows stored, read once the processors have stopped. */
  rows(): Promise<number>;
  /** Pids of the PostgreSQL server processes serving the phase's database (one per connection). */
  backends?(): Promise<number[]>;
}

const cpuMsOf = (pid: number | undefined) => (pid === undefined ? 0 : (readProc(pid)?.cpuMs ?? 0));

/**
 * Fills a fresh queue with `bodies` (holding `readings` readings), starts the processors, and times the drain from
 * the moment the first one consumes to the poll that sees every reading committed; then stops them (SIGTERM, exit 0
 * expected) and checks the row count. Throws when a reading is missing, stored twice, or progress stops.
 */
async function drainOnce(
  amqpUrl: string,
  queue: string,
  bodies: Buffer[],
  readings: number,
  target: DrainTarget,
) {
  await publishConfirmed(amqpUrl, queue, bodies, FILL_WINDOW, "quorum", true);
  let services: Service[] = [];
  try {
    services = await target.start(queue);
    const startedAt = performance.now();
    const cpu0 = services.map((s) => cpuMsOf(s.proc.pid));
    const pg0 = new Map((await target.backends?.())?.map((pid) => [pid, cpuMsOf(pid)]));
    let [stored, pgPids] = [0, [] as number[]];
    const committed = async () => {
      stored = (
        await Promise.all(
          services.map((s) => metric(s.httpPort, "telemetry_processor_readings_stored_total")),
        )
      ).reduce((a, b) => a + b, 0);
      pgPids = (await target.backends?.()) ?? [];
      return stored >= readings;
    };
    await until(`${queue}: every reading committed`, committed, { ...WAIT, progress: () => stored });
    const seconds = (performance.now() - startedAt) / 1_000;
    const cpuMs = services.reduce((sum, s, i) => sum + cpuMsOf(s.proc.pid) - (cpu0[i] ?? 0), 0);
    // A backend opened during the drain counts whole: all its CPU was spent for this phase.
    const pgCpuMs = target.backends
      ? pgPids.reduce((sum, pid) => sum + cpuMsOf(pid) - (pg0.get(pid) ?? 0), 0)
      : undefined;
    const codes = await Promise.all(services.splice(0).map((s) => s.stop("SIGTERM")));
    if (codes.some((c) => c !== 0)) throw new Error(`${queue}: a processor exited with ${codes.join(", ")}`);
    const rows = await target.rows();
    if (rows !== readings) throw new Error(`${queue}: ${rows} rows stored for ${readings} readings queued`);
    if (stored !== readings) throw new Error(`${queue}: processors counted ${stored} stored of ${readings}`);
    return {
      seconds: round(seconds, 2),
      perSecond: Math.round(readings / seconds),
      /** CPU of the processor process(es) from their start of consuming to the last commit, µs per reading. */
      processorCpuUs: round((cpuMs * 1_000) / readings, 1),
      /** CPU of the PostgreSQL backends serving the phase's database over the same interval, µs per reading. */
      postgresCpuUs: pgCpuMs === undefined ? undefined : round((pgCpuMs * 1_000) / readings, 1),
      rows,
    };
  } finally {
    await Promise.all(services.map((s) => s.stop("SIGKILL")));
    await deleteQueues(amqpUrl, queue);
  }
}

/**
 * A SQLite phase: the product's processor, or (`rollups: false`) the bench child without the `series` rollup and
 * the tiers.
 */
function sqliteTarget(amqpUrl: string, dbPath: string, options: SqliteStoreOptions): DrainTarget {
  const rollups = options.rollups ?? true;
  const tiers = rollups && (options.tiers ?? true);
  return {
    async start(queue) {
      for (const suffix of ["", "-wal", "-shm"]) rmSync(`${dbPath}${suffix}`, { force: true });
      const env = {
        AMQP_URL: amqpUrl,
        QUEUE: queue,
        HTTP_PORT: "0",
        LOG_LEVEL: "info",
        DB_PATH: dbPath,
        DATABASE_URL: "",
      };
      const prefix = rollups && tiers ? [] : [process.execPath, CHILD, JSON.stringify(options)];
      return [await startService("processor", env, [], prefix)];
    },
    async rows() {
      const db = new Database(dbPath, { readonly: true });
      try {
        const rows = (db.prepare("SELECT count(*) AS n FROM readings").get() as { n: number }).n;
        const rolled = readRollup(db).reduce((n, s) => n + s.count, 0);
        // The rollup and each tier must be whole when on, and empty when off (else phase (b) measured the product).
        const counted = TIERS.map((t) => [
          t.table,
          db.prepare(`SELECT total(count) FROM ${t.table}`).pluck().get(),
        ]);
        for (const [what, n] of [["series", rolled], ...counted])
          if (n !== ((what === "series" ? rollups : tiers) ? rows : 0))
            throw new Error(
              `${dbPath}: ${what} counts ${n} readings for ${rows} rows (${JSON.stringify(options)})`,
            );
        return rows;
      } finally {
        db.close();
      }
    },
  };
}

/**
 * A PostgreSQL phase: `processors` product processors on one queue, a fresh database each drain; or (`tiers:
 * false`) the bench child without the rollup tiers.
 */
function postgresTarget(
  amqpUrl: string,
  server: string,
  admin: pg.Client,
  database: string,
  processors: number,
  tiers = true,
) {
  const u = new URL(server);
  u.pathname = `/${database}`;
  const url = u.toString();
  return {
    async start(queue) {
      await admin.query(`DROP DATABASE IF EXISTS "${database}" WITH (FORCE)`);
      await admin.query(`CREATE DATABASE "${database}"`);
      const env = { AMQP_URL: amqpUrl, QUEUE: queue, HTTP_PORT: "0", LOG_LEVEL: "info", DATABASE_URL: url };
      const prefix = tiers ? [] : [process.execPath, CHILD, JSON.stringify({ rollups: false })];
      return Promise.all(
        Array.from({ length: processors }, () => startService("processor", env, [], prefix)),
      );
    },
    async rows() {
      const client = new pg.Client({ connectionString: url });
      await client.connect();
      try {
        const { rows } = await client.query<{ n: string; tiered: string | null }>(
          "SELECT (SELECT count(*) FROM readings) AS n, (SELECT sum(count) FROM rollup_1m) AS tiered",
        );
        const n = Number(rows[0]?.n ?? 0);
        // The tiers must count every row when on, and none when off (else phase (e) measured the product).
        const tiered = Number(rows[0]?.tiered ?? 0);
        if (tiered !== (tiers ? n : 0))
          throw new Error(`${database}: rollup_1m counts ${tiered} readings for ${n} rows (tiers ${tiers})`);
        return n;
      } finally {
        await client.end();
      }
    },
    async backends() {
      const sql = "SELECT pid FROM pg_stat_activity WHERE datname = $1 AND backend_type = 'client backend'";
      return (await admin.query<{ pid: number }>(sql, [database])).rows.map((r) => r.pid);
    },
  } satisfies DrainTarget;
}

const PHASES = [
  { id: "a", label: "SQLite, the product (series rollup and tiers on)", store: "SQLite", processors: 1 },
  { id: "b", label: "SQLite, series rollup and tiers off", store: "SQLite", processors: 1 },
  { id: "t", label: "SQLite, series rollup on, tiers off", store: "SQLite", processors: 1 },
  { id: "c", label: "PostgreSQL, one processor", store: "PostgreSQL", processors: 1 },
  { id: "e", label: "PostgreSQL, rollup tiers off", store: "PostgreSQL", processors: 1 },
  { id: "d", label: "PostgreSQL, two processors on one queue", store: "PostgreSQL", processors: 2 },
] as const;

/**
 * Runs the six phases, round after round (phases interleaved, so a burst of load elsewhere on the machine falls
 * on every phase alike), and gives each phase's medians. Short: 40,000 readings, one round; full: 160,000, five.
 */
export async function runStoresBench(opts: StoresBenchOptions) {
  const rounds = opts.short ? 1 : 5;
  const start = loadavg();
  const readings = DEVICES * SENSORS * (opts.short ? 10 : 40);
  const bodies = batchBodies(readings / (DEVICES * SENSORS));
  const admin = new pg.Client({ connectionString: opts.databaseUrl });
  admin.on("error", () => undefined);
  await admin.connect();
  const database = `bench_${opts.runId.replace(/[^a-z0-9]/gi, "_").toLowerCase()}_stores`;
  const dbPath = join(opts.workDir, `stores-${opts.runId}.db`);
  const amqpUrl = splitUrlList(opts.amqpUrl)[0] ?? opts.amqpUrl;
  const targets = {
    a: sqliteTarget(amqpUrl, dbPath, {}),
    b: sqliteTarget(amqpUrl, dbPath, { rollups: false }),
    t: sqliteTarget(amqpUrl, dbPath, { tiers: false }),
    c: postgresTarget(amqpUrl, opts.databaseUrl, admin, database, 1),
    d: postgresTarget(amqpUrl, opts.databaseUrl, admin, database, 2),
    e: postgresTarget(amqpUrl, opts.databaseUrl, admin, database, 1, false),
  };
  type Drain = Awaited<ReturnType<typeof drainOnce>>;
  const drains: Record<string, Drain[]> = { a: [], b: [], t: [], c: [], d: [], e: [] };
  try {
    for (let r = 0; r < rounds; r++) {
      for (const p of PHASES) {
        const d = await drainOnce(
          amqpUrl,
          `bench-${opts.runId}-stores-${p.id}${r}`,
          bodies,
          readings,
          targets[p.id],
        );
        drains[p.id]?.push(d);
        const pgCpu = d.postgresCpuUs === undefined ? "" : `, PostgreSQL ${d.postgresCpuUs} µs/reading`;
        opts.say(
          `  (${p.id}) ${p.label}, round ${r + 1}/${rounds}: ${fmt(d.perSecond)} readings/s, processor ${d.processorCpuUs} µs/reading${pgCpu}`,
        );
      }
    }
  } finally {
    await admin.query(`DROP DATABASE IF EXISTS "${database}" WITH (FORCE)`).catch(() => undefined);
    await admin.end().catch(() => undefined);
    for (const suffix of ["", "-wal", "-shm"]) rmSync(`${dbPath}${suffix}`, { force: true });
  }
  const phases = PHASES.map((p) => {
    const ds = drains[p.id] ?? [];
    const pgCpu = ds.flatMap((d) => (d.postgresCpuUs === undefined ? [] : [d.postgresCpuUs]));
    return {
      ...p,
      /** Every round, in the order run, and the medians over the rounds. */
      drains: ds,
      perSecond: Math.round(median(ds.map((d) => d.perSecond))),
      processorCpuUs: round(median(ds.map((d) => d.processorCpuUs)), 1),
      postgresCpuUs: pgCpu.length > 0 ? round(median(pgCpu), 1) : undefined,
    };
  });
  const paired = (on: string, off: string, f: (a: Drain, b: Drain) => number) =>
    round(median((drains[on] ?? []).map((a, i) => f(a, drains[off]?.[i] ?? a))), 3);
  return {
    readings,
    devices: DEVICES,
    sensors: SENSORS,
    messageReadings: MESSAGE_READINGS,
    rounds,
    phases,
    /** 1 - (a)/(b), median over rounds of each round's pair: the throughput the rollup costs (issue 14: <= 0.15). */
    rollupThroughputCost: paired("a", "b", (a, b) => 1 - a.perSecond / b.perSecond),
    /** (a)/(b) - 1 of the processor's CPU µs per reading, median over rounds: what the rollup adds to each reading. */
    rollupCpuCost: paired("a", "b", (a, b) => a.processorCpuUs / b.processorCpuUs - 1),
    /** The same two, (a) against (t): what SQLite's tiers alone cost. */
    tiersThroughputCost: paired("a", "t", (a, t) => 1 - a.perSecond / t.perSecond),
    tiersCpuCost: paired("a", "t", (a, t) => a.processorCpuUs / t.processorCpuUs - 1),
    /** 1 - (c)/(e), median over rounds of each round's pair: the throughput PostgreSQL's tiers cost (issue 27). */
    tierThroughputCost: paired("c", "e", (c, e) => 1 - c.perSecond / e.perSecond),
    loadAverage: { start: start.map((x) => round(x, 2)), end: loadavg().map((x) => round(x, 2)) },
  };
}

export type StoresBenchResult = Awaited<ReturnType<typeof runStoresBench>>;

/** The figures as a markdown section: one row per phase, ratios to the product (phase a) of the same run. */
export function storesReport(r: StoresBenchResult): string {
  const product = r.phases.find((p) => p.id === "a");
  const pct = round(r.rollupThroughputCost * 100, 1);
  const tierPct = round(r.tierThroughputCost * 100, 1);
  const head = [
    "phase",
    ">readings/s",
    ">x (a)",
    ">processor CPU µs/reading",
    ">PostgreSQL backends CPU µs/reading",
  ];
  return [
    "## Stores: the processor draining one queue",
    "",
    `${fmt(r.readings)} readings (${fmt(r.devices)} devices x ${r.sensors} sensors), queued before the processor ` +
      `starts as the gateway writes them (${r.messageReadings} per batch message), drained by the real processor ` +
      `process(es) with default settings; median of ${r.rounds} round(s), phases interleaved; every phase stored ` +
      "exactly the readings queued. CPU: /proc/<pid>/stat of the processor process(es) (its SQLite worker thread " +
      "included) and of the PostgreSQL backends serving the phase's database, from the first consume to the last " +
      "commit; PostgreSQL's WAL writer, checkpointer and background writer are shared with the machine and not counted.",
    "",
    ...markdownTable(
      [...head, "rounds (readings/s)"],
      r.phases.map((p) => [
        `(${p.id}) ${p.label}`,
        fmt(p.perSecond),
        product ? String(round(p.perSecond / product.perSecond, 2)) : "-",
        String(p.processorCpuUs),
        String(p.postgresCpuUs ?? "not applicable"),
        p.drains.map((d) => fmt(d.perSecond)).join(", "),
      ]),
    ),
    "",
    `Rollup cost, series rollup and tiers together (issues 14 and 27: at most 15%), median of the rounds' pairs: (a) is ${Math.abs(pct)}% ` +
      `${pct >= 0 ? "below" : "above"} (b) in readings/s, and its processor spends ${round(r.rollupCpuCost * 100, 1)}% more CPU per reading.` +
      ` SQLite's tiers alone: (a) is ${round(r.tiersThroughputCost * 100, 1)}% below (t) in readings/s, ` +
      `${round(r.tiersCpuCost * 100, 1)}% more CPU per reading.` +
      ` PostgreSQL's rollup tiers (issue 27: at most 15%): (c) is ${Math.abs(tierPct)}% ${tierPct >= 0 ? "below" : "above"} (e).` +
      ` Load average ${r.loadAverage.start.join(" ")} at the start, ${r.loadAverage.end.join(" ")} at the end.`,
  ].join("\n");
}
