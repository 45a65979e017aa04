/**
 * What a big fleet costs the processor: a phase of `npm run bench` (`--skip-fleet` leaves it out), or on its own
 * `node dist/bench/fleet.js [--short] [--series N,N,...] [--amqp-url URL]`.
 *
 * For each fleet size N (default 1,000, 10,000 and 300,000 series; `--short`: 1,000 and 10,000), on a SQLite file
 * and a queue of its own (`bench-fleet-<run>-<N>`, deleted afterwards), with the processor's defaults:
 * 1. a processor on an empty store: start time (spawn to /readyz 200) and idle RSS;
 * 2. a burst that creates the fleet: one reading per series, published straight to the queue as batch messages of
 *    500 readings (the gateway's default PUBLISH_BATCH), until all are stored: time and RSS after (VmRSS, VmHWM);
 * 3. the processor restarted on the store that now holds N series: start time and idle RSS;
 * 4. a second burst, one more reading per series (every series touched again): time and RSS after;
 * 5. the SQLite file after a clean stop: its bytes by table (SQLite's dbstat), per series and per reading.
 * Series are devices of 4 sensors (`fleet-<n>` x temperature, humidity, pressure, co2). RabbitMQ is `--amqp-url`
 * (default `$AMQP_URL` or 127.0.0.1:5672). Prints a table and one JSON line with every figure.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import amqp from "amqplib";
import Database from "better-sqlite3";
import { declareTopology, queueNames } from "../amqp/topology.js";
import { SchemaRegistry } from "../schemas/index.js";
import { type Service, startService } from "../scripts/spawn.js";
import { scrape, total } from "./metrics.js";
import { readProc } from "./proc.js";
import { deviceName, sensorName } from "./publisher.js";

const SENSORS = 4;
const MESSAGE_READINGS = 500;
const UNCONFIRMED_MAX = 64;
const POLL_MS = 100;
const STORE_TIMEOUT_MS = 600_000;
const TS0 = Date.UTC(2026, 0, 1);
const FULL = [1_000, 10_000, 300_000];
const SHORT = [1_000, 10_000];

interface Start {
  /** Spawn to the first /readyz 200, ms. */
  readonly startMs: number;
  readonly idleRssKiB: number;
}

interface Burst {
  readonly storeMs: number;
  readonly rssKiB: number;
  readonly hwmKiB: number;
}

export interface FleetFigures {
  readonly series: number;
  readonly empty: Start;
  readonly create: Burst;
  readonly restart: Start;
  readonly again: Burst;
  readonly fileBytes: number;
  readonly bytesByTable: Record<string, number>;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function startTimed(env: Record<string, string>): Promise<{ service: Service } & Start> {
  const t0 = performance.now();
  const service = await startService("processor", env);
  for (;;) {
    const ok = await fetch(`http://127.0.0.1:${service.httpPort}/readyz`).then(
      (r) => r.status === 200,
      () => false,
    );
    if (ok) break;
    await sleep(10);
  }
  const startMs = performance.now() - t0;
  await sleep(1_000); // let start-up garbage go before the idle figure
  const idleRssKiB = readProc(service.proc.pid ?? 0)?.rssKiB ?? 0;
  return { service, startMs, idleRssKiB };
}

/** Publishes one reading per series (`round` sets its ts), as confirmed batch messages, and waits until stored. */
async function burst(
  url: string,
  queue: string,
  series: number,
  round: number,
  processor: Service,
): Promise<Burst> {
  const schemas = SchemaRegistry.load();
  const storedBefore = total(await scrape(processor.httpPort), "telemetry_processor_readings_stored_total");
  const conn = await amqp.connect(url);
  const ch = await conn.createConfirmChannel();
  const t0 = performance.now();
  const now = Date.now();
  let pending: Promise<void>[] = [];
  for (let first = 0; first < series; first += MESSAGE_READINGS) {
    const datums: Buffer[] = [];
    let bytes = 0;
    for (let j = first; j < Math.min(series, first + MESSAGE_READINGS); j++) {
      const datum = schemas.encodeDatum({
        device_id: deviceName("fleet", Math.floor(j / SENSORS)),
        sensor: sensorName(j % SENSORS),
        ts: TS0 + round * 60_000,
        value: j % 1_000,
        unit: "C",
        seq: round,
        gateway_id: "bench-fleet",
        received_at: now,
        quality: "good",
        tags: {},
      });
      datums.push(datum);
      bytes += datum.length;
    }
    const body = schemas.frameBatch(datums, bytes);
    pending.push(
      new Promise<void>((resolve, reject) =>
        ch.publish("", queue, body, { persistent: true, mandatory: true }, (err) =>
          err ? reject(err) : resolve(),
        ),
      ),
    );
    if (pending.length >= UNCONFIRMED_MAX) {
      await Promise.all(pending);
      pending = [];
    }
  }
  await Promise.all(pending);
  await conn.close();
  const deadline = Date.now() + STORE_TIMEOUT_MS;
  for (;;) {
    const stored = total(await scrape(processor.httpPort), "telemetry_processor_readings_stored_total");
    if (stored - storedBefore >= series) break;
    if (Date.now() > deadline) throw new Error(`${series} readings not stored within ${STORE_TIMEOUT_MS} ms`);
    await sleep(POLL_MS);
  }
  const storeMs = performance.now() - t0;
  const proc = readProc(processor.proc.pid ?? 0);
  return { storeMs, rssKiB: proc?.rssKiB ?? 0, hwmKiB: proc?.hwmKiB ?? 0 };
}

/** The SQLite file's bytes by table and index, from dbstat (pages in use, whole pages). */
function bytesByTable(dbPath: string): { fileBytes: number; byTable: Record<string, number> } {
  const db = new Database(dbPath, { readonly: true });
  try {
    const rows = db.prepare("SELECT name, sum(pgsize) AS bytes FROM dbstat GROUP BY name").all() as {
      name: string;
      bytes: number;
    }[];
    const pageSize = db.pragma("page_size", { simple: true }) as number;
    const pages = db.pragma("page_count", { simple: true }) as number;
    return { fileBytes: pageSize * pages, byTable: Object.fromEntries(rows.map((r) => [r.name, r.bytes])) };
  } finally {
    db.close();
  }
}

async function measure(url: string, run: string, series: number): Promise<FleetFigures> {
  const dir = mkdtempSync(join(tmpdir(), `bench-fleet-${series}-`));
  const queue = `bench-fleet-${run}-${series}`;
  const env = {
    AMQP_URL: url,
    QUEUE: queue,
    DB_PATH: join(dir, "telemetry.db"),
    HTTP_PORT: "0",
    LOG_LEVEL: "info",
  };
  const conn = await amqp.connect(url);
  const ch = await conn.createChannel();
  await declareTopology(ch, queue, "quorum");
  let processor: Service | undefined;
  try {
    const empty = await startTimed(env);
    processor = empty.service;
    const create = await burst(url, queue, series, 0, processor);
    await processor.stop("SIGTERM");
    const restart = await startTimed(env);
    processor = restart.service;
    const again = await burst(url, queue, series, 1, processor);
    await processor.stop("SIGTERM");
    processor = undefined;
    const disk = bytesByTable(env.DB_PATH);
    return {
      series,
      empty: { startMs: empty.startMs, idleRssKiB: empty.idleRssKiB },
      create,
      restart: { startMs: restart.startMs, idleRssKiB: restart.idleRssKiB },
      again,
      fileBytes: disk.fileBytes,
      bytesByTable: disk.byTable,
    };
  } finally {
    await processor?.stop("SIGKILL");
    for (const q of Object.values(queueNames(queue))) await ch.deleteQueue(q).catch(() => undefined);
    await conn.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

const mib = (kib: number) => (kib / 1_024).toFixed(0);
const s = (ms: number) => (ms / 1_000).toFixed(2);

/** The phase's table and the RSS per series, as text. */
export function fleetReport(figures: readonly FleetFigures[]): string {
  const out = ["Processor against fleet size (series = device x sensor)"];
  out.push(
    "series    | start empty | idle RSS | create: time  RSS  peak | restart: start  idle RSS | again: time  RSS  peak | file MiB | B/series on disk",
  );
  for (const f of figures) {
    // Everything but the rows: the rollup's tables and index, per series.
    const perSeriesDisk = (f.fileBytes - (f.bytesByTable.readings ?? 0)) / f.series;
    out.push(
      [
        String(f.series).padStart(9),
        `${s(f.empty.startMs)} s`.padStart(11),
        `${mib(f.empty.idleRssKiB)} MiB`.padStart(8),
        `${s(f.create.storeMs)} s ${mib(f.create.rssKiB)} ${mib(f.create.hwmKiB)} MiB`.padStart(23),
        `${s(f.restart.startMs)} s ${mib(f.restart.idleRssKiB)} MiB`.padStart(24),
        `${s(f.again.storeMs)} s ${mib(f.again.rssKiB)} ${mib(f.again.hwmKiB)} MiB`.padStart(22),
        (f.fileBytes / 1_048_576).toFixed(1).padStart(8),
        `${perSeriesDisk.toFixed(0)} (+${((f.bytesByTable.readings ?? 0) / (2 * f.series)).toFixed(0)}/reading)`,
      ].join(" | "),
    );
  }
  const [small, big] = [figures[0], figures.at(-1)];
  if (small && big && big.series > small.series) {
    const perSeries = ((big.again.rssKiB - small.again.rssKiB) * 1_024) / (big.series - small.series);
    const restartPerSeries =
      ((big.restart.idleRssKiB - small.restart.idleRssKiB) * 1_024) / (big.series - small.series);
    out.push(
      `RSS per series (${small.series} to ${big.series} series): ${perSeries.toFixed(0)} B after a burst over every ` +
        `series, ${restartPerSeries.toFixed(0)} B idle after a restart`,
    );
  }
  return out.join("\n");
}

/** Measures each fleet size in turn (`short`: 1,000 and 10,000 series, else also 300,000). */
export async function runFleetBench(o: {
  readonly amqpUrl: string;
  readonly short: boolean;
  readonly series?: readonly number[];
}): Promise<FleetFigures[]> {
  const run = Date.now().toString(36);
  const figures: FleetFigures[] = [];
  for (const n of o.series ?? (o.short ? SHORT : FULL)) figures.push(await measure(o.amqpUrl, run, n));
  return figures;
}

async function main(argv: string[]): Promise<void> {
  const at = (flag: string) => {
    const i = argv.indexOf(flag);
    return i >= 0 ? argv[i + 1] : undefined;
  };
  if (argv.includes("--help")) {
    console.log("Usage: node dist/bench/fleet.js [--short] [--series 1000,10000,300000] [--amqp-url URL]");
    return;
  }
  const url = at("--amqp-url") ?? process.env.AMQP_URL ?? "amqp://guest:guest@127.0.0.1:5672";
  const list = at("--series")
    ?.split(",")
    .map((n) => Number(n));
  if (list?.some((n) => !Number.isInteger(n) || n < SENSORS))
    throw new Error("--series: integers >= 4, comma separated");
  const figures = await runFleetBench({ amqpUrl: url, short: argv.includes("--short"), series: list });
  console.log(fleetReport(figures));
  console.log(JSON.stringify({ fleet: figures }));
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main(process.argv.slice(2)).catch((err: unknown) => {
    console.error(`fleet: ${err instanceof Error ? err.message : String(err)}`);
    process.exitCode = 1;
  });
}
