/**
 * Does a large retention delete stall ingestion? Fills a database once with old readings (default 2,000,000, older
 * than RETENTION), puts current readings on a fresh queue, then starts `telemetry processor` on a copy of the
 * database and times how fast it stores them: alternately with RETENTION unset and set (so it deletes every old row
 * while it ingests), sampling its /metrics. Prints one line per run.
 *
 *   npm run build && node dist/bench/retention.js [--old 2000000] [--messages 300000] [--rounds 2]
 */
import { copyFileSync, existsSync, mkdirSync, rmSync } from "node:fs";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { parseArgs } from "node:util";
import { type Reading, SchemaRegistry } from "../schemas/index.js";
import { startService } from "../scripts/spawn.js";
import { SqliteStore } from "../store/sqlite.js";
import { scrape, total } from "./metrics.js";
import { publishConfirmed } from "./raw.js";
import { deleteQueues, fmt } from "./util.js";

const DAY_MS = 86_400_000;
const RETENTION = "30d";
const OLD_AGE_MS = 60 * DAY_MS;
const DEVICES = 1_000;
const SENSORS = ["temperature", "humidity", "pressure", "co2"] as const;
const FILL_BATCH = 100_000;
const PUBLISH_WINDOW = 5_000;
const SAMPLE_MS = 250;

const { values: args } = parseArgs({
  options: {
    dir: { type: "string", default: "/tmp/telemetry-retention-bench" },
    old: { type: "string", default: "2000000" },
    messages: { type: "string", default: "300000" },
    rounds: { type: "string", default: "2" },
    "amqp-url": { type: "string", default: process.env.AMQP_URL ?? "amqp://guest:guest@127.0.0.1:5672" },
  },
});
const say = (line: string) => process.stderr.write(`bench retention: ${line}\n`);

const reading = (i: number, ts: number): Reading => ({
  device_id: `dev-${String(i % DEVICES).padStart(4, "0")}`,
  sensor: SENSORS[Math.floor(i / DEVICES) % SENSORS.length] ?? "temperature",
  ts,
  value: i % 1_000,
  unit: null,
  seq: i,
  gateway_id: "bench",
  received_at: ts,
});

/** `old` readings spread over a day, 60 days ago: all of them older than RETENTION. */
function fill(path: string, old: number): void {
  const store = new SqliteStore(path);
  store.db.pragma("synchronous = OFF");
  const start = Date.now() - OLD_AGE_MS;
  const step = DAY_MS / (old / (DEVICES * SENSORS.length));
  for (let at = 0; at < old; at += FILL_BATCH) {
    const batch: Reading[] = [];
    for (let i = at; i < Math.min(old, at + FILL_BATCH); i++) {
      batch.push(reading(i, Math.floor(start + Math.floor(i / (DEVICES * SENSORS.length)) * step)));
    }
    store.writeBatch(batch);
  }
  store.db.pragma("wal_checkpoint(TRUNCATE)");
  store.close();
}

/** `count` current readings, one a message, on a fresh quorum queue. */
async function publish(url: string, queue: string, count: number): Promise<void> {
  const schemas = SchemaRegistry.load();
  const now = Date.now();
  const bodies = Array.from({ length: count }, (_, i) =>
    schemas.encode(reading(i, now + Math.floor(i / (DEVICES * SENSORS.length)))),
  );
  await publishConfirmed(url, queue, bodies, PUBLISH_WINDOW, "quorum", true);
}

async function metrics(port: number): Promise<{ stored: number; deleted: number }> {
  const m = await scrape(port);
  return {
    stored: total(m, "telemetry_processor_readings_stored_total"),
    deleted: total(m, "telemetry_processor_retention_deleted_total"),
  };
}

async function run(round: number, withRetention: boolean, base: string): Promise<void> {
  const url = args["amqp-url"];
  const messages = Number(args.messages);
  const queue = `bench-retention-${process.pid}-${round}-${withRetention ? "on" : "off"}`;
  const db = join(args.dir, "run.db");
  for (const f of [db, `${db}-wal`, `${db}-shm`]) rmSync(f, { force: true });
  copyFileSync(base, db);
  await publish(url, queue, messages);
  const processor = await startService("processor", {
    AMQP_URL: url,
    QUEUE: queue,
    DB_PATH: db,
    HTTP_PORT: "0",
    LOG_LEVEL: "info",
    ...(withRetention ? { RETENTION } : {}),
  });
  try {
    const t0 = performance.now();
    let deletingUntil: { at: number; stored: number } | undefined;
    let last = { stored: 0, deleted: 0 };
    while (last.stored < messages) {
      await sleep(SAMPLE_MS);
      const m = await metrics(processor.httpPort);
      // The window in which deletion ran: up to the last sample at which the deleted count still grew.
      if (m.deleted > last.deleted) deletingUntil = { at: performance.now() - t0, stored: m.stored };
      last = m;
    }
    const seconds = (performance.now() - t0) / 1_000;
    const pass = processor.logs.find((l) => l.msg === "retention pass deleted old readings");
    let line = `round ${round}, RETENTION ${withRetention ? RETENTION : "unset"}: ${fmt(messages)} stored in ${seconds.toFixed(1)} s, ${fmt(messages / seconds)}/s`;
    if (deletingUntil) {
      line += `; while deleting (first ${(deletingUntil.at / 1_000).toFixed(1)} s): ${fmt(deletingUntil.stored / (deletingUntil.at / 1_000))}/s`;
    }
    if (withRetention) line += `; deleted ${fmt(last.deleted)} during the run`;
    if (pass) line += `; pass: ${fmt(pass.deleted as number)} rows in ${fmt(pass.ms as number)} ms`;
    process.stdout.write(`${line}\n`);
  } finally {
    await processor.stop();
    await deleteQueues(url, queue);
  }
}

async function main(): Promise<void> {
  mkdirSync(args.dir, { recursive: true });
  const base = join(args.dir, `old-${args.old}.db`);
  if (!existsSync(base)) {
    say(`filling ${base} with ${fmt(Number(args.old))} old readings`);
    fill(base, Number(args.old));
  }
  for (let round = 1; round <= Number(args.rounds); round++) {
    await run(round, false, base);
    await run(round, true, base);
  }
}

await main();
