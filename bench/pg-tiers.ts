/**
 * `npm run bench:pg-tiers -- [--rounds N] [--batches N]`: what the rollup tiers cost PostgreSQL's `writeBatch`
 * (issue 27: at most 15% of the processor's throughput). Two stores, each on a database of its own, one keeping the
 * tiers and one not (the bench-only `rollups: false`), write the same batches of 500 readings one after the other;
 * rounds alternate which store goes first, so load on the shared machine falls on both alike. Two loads: a fleet
 * (4,000 series, 1 reading/s each, so about one tier row per reading per tier) and few series (10 series, 50
 * readings of each per batch). A first round warms each store up and is not counted. Reports readings/s per round,
 * the median ratio (with tiers / without) and its spread, the load average, and CPU µs per reading of this process
 * and of the PostgreSQL backends serving the store (from /proc: less moved by other work on the machine than
 * readings/s, which waits for the cores). Runs on `DATABASE_URL` (or the
 * local server); its databases are dropped at the end.
 */
import { randomBytes } from "node:crypto";
import { loadavg } from "node:os";
import { parseArgs } from "node:util";
import pg from "pg";
import type { Reading } from "../schemas/index.js";
import { PostgresStore } from "../store/postgres.js";
import { dayOf } from "../store/postgres-partitions.js";
import { readProc } from "./proc.js";
import { deviceName, readingValue, sensorName } from "./publisher.js";
import { fmt, markdownTable, median, say } from "./util.js";

const BATCH = 500;
const SENSORS = 4;

const { values } = parseArgs({
  options: { rounds: { type: "string" }, batches: { type: "string" } },
});
const rounds = Number(values.rounds ?? 6);
const batches = Number(values.batches ?? 100);
const serverUrl =
  process.env.DATABASE_URL?.startsWith("postgres") === true
    ? process.env.DATABASE_URL
    : "postgres://postgres@127.0.0.1:5432/postgres";

interface Load {
  readonly name: string;
  readonly series: number;
  readonly intervalMs: number;
}
const LOADS: readonly Load[] = [
  { name: "fleet: 4,000 series, 1 reading/s each", series: 4_000, intervalMs: 1_000 },
  { name: "few series: 10 series, 50 readings each per batch", series: 10, intervalMs: 100 },
];

/** Today, so the store's own partitions hold every reading. */
const T0 = dayOf(Date.now());

/** Reading `i` of a load: every series at one time, then the next time, as a live fleet sends them. */
function reading(load: Load, i: number): Reading {
  const j = i % load.series;
  const ts = T0 + Math.floor(i / load.series) * load.intervalMs;
  return {
    device_id: deviceName("bench", Math.floor(j / SENSORS)),
    sensor: sensorName(j % SENSORS),
    ts,
    value: readingValue(i),
    unit: "C",
    seq: Math.floor(i / load.series),
    gateway_id: "bench-gateway",
    received_at: ts + 5,
  };
}

const admin = new pg.Client({ connectionString: serverUrl });
await admin.connect();
const made: string[] = [];

async function database(): Promise<{ name: string; url: string }> {
  const name = `bench_pg_tiers_${randomBytes(4).toString("hex")}`;
  await admin.query(`CREATE DATABASE "${name}"`);
  made.push(name);
  const u = new URL(serverUrl);
  u.pathname = `/${name}`;
  return { name, url: u.toString() };
}

/** A store, its database's name and where its readings go on from. */
interface Side {
  readonly store: PostgresStore;
  readonly database: string;
  next: number;
}

async function open(rollups: boolean): Promise<Side> {
  const { name, url } = await database();
  return { store: await PostgresStore.open(url, { rollups }), database: name, next: 0 };
}

/** CPU ms so far of each PostgreSQL backend serving `database`, by pid. */
async function backendsCpu(database: string): Promise<Map<number, number>> {
  const sql = "SELECT pid FROM pg_stat_activity WHERE datname = $1 AND backend_type = 'client backend'";
  const { rows } = await admin.query<{ pid: number }>(sql, [database]);
  return new Map(rows.map((r) => [r.pid, readProc(r.pid)?.cpuMs ?? 0]));
}

interface Round {
  readonly perSecond: number;
  /** CPU µs per reading of this process (the store's client side) and of the store's PostgreSQL backends. */
  readonly clientUs: number;
  readonly serverUs: number;
}

/** Writes `batches` batches into `side`, one after the other. */
async function round(load: Load, side: Side): Promise<Round> {
  const n = batches * BATCH;
  const server0 = await backendsCpu(side.database);
  const client0 = process.cpuUsage();
  const t = performance.now();
  for (let b = 0; b < batches; b++) {
    const batch = Array.from({ length: BATCH }, (_, k) => reading(load, side.next + k));
    side.next += BATCH;
    const r = await side.store.writeBatch(batch);
    if (r.inserted !== BATCH) throw new Error(`inserted ${r.inserted} of ${BATCH} readings`);
  }
  const seconds = (performance.now() - t) / 1_000;
  const client = process.cpuUsage(client0);
  let serverMs = 0;
  // A backend opened during the round counts whole.
  for (const [pid, ms] of await backendsCpu(side.database)) serverMs += ms - (server0.get(pid) ?? 0);
  return {
    perSecond: n / seconds,
    clientUs: (client.user + client.system) / n,
    serverUs: (serverMs * 1_000) / n,
  };
}

const spread = (xs: readonly number[]) =>
  `${median(xs).toFixed(2)} (min ${Math.min(...xs).toFixed(2)}, max ${Math.max(...xs).toFixed(2)})`;
const cpu = (r: Round) => `${r.clientUs.toFixed(1)} + ${r.serverUs.toFixed(1)}`;

const lines: string[] = [];
try {
  for (const load of LOADS) {
    const tiers = await open(true);
    const bare = await open(false);
    const rows: string[][] = [];
    const ratios: number[] = [];
    const cpuRatios: number[] = [];
    const loads: number[] = [];
    for (let n = 0; n <= rounds; n++) {
      // Alternate the order, so a load spike during one round does not always fall on the same store.
      const first = n % 2 === 0 ? tiers : bare;
      const a = await round(load, first);
      const b = await round(load, first === tiers ? bare : tiers);
      const [withTiers, without] = first === tiers ? [a, b] : [b, a];
      const load1 = loadavg()[0] ?? 0;
      if (n === 0) continue; // warm-up
      const ratio = withTiers.perSecond / without.perSecond;
      const cpuRatio = (withTiers.clientUs + withTiers.serverUs) / (without.clientUs + without.serverUs);
      ratios.push(ratio);
      cpuRatios.push(cpuRatio);
      loads.push(load1);
      rows.push([
        String(n),
        fmt(withTiers.perSecond),
        fmt(without.perSecond),
        ratio.toFixed(2),
        cpu(withTiers),
        cpu(without),
        cpuRatio.toFixed(2),
        load1.toFixed(1),
      ]);
      say(
        `${load.name}: round ${n}: ${fmt(withTiers.perSecond)} against ${fmt(without.perSecond)} readings/s`,
      );
    }
    await tiers.store.stop();
    await bare.store.stop();
    lines.push(
      `${load.name}; ${rounds} rounds of ${batches} batches of ${BATCH} readings per store`,
      "",
      ...markdownTable(
        [
          "round",
          ">with tiers, readings/s",
          ">without, readings/s",
          ">ratio",
          ">with tiers, CPU µs/reading (client + server)",
          ">without",
          ">CPU ratio",
          ">load (1 min)",
        ],
        rows,
      ),
      "",
      `readings/s ratio median ${spread(ratios)}; CPU per reading ratio (with tiers / without) median ` +
        `${spread(cpuRatios)}; load average median ${median(loads).toFixed(1)}`,
      "",
    );
  }
  process.stdout.write(`PostgreSQL writeBatch with the rollup tiers against without\n\n${lines.join("\n")}`);
} finally {
  for (const name of made) await admin.query(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`);
  await admin.end();
}
