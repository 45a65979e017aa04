/**
 * `npm run demo`: the whole pipeline on this machine. Starts the processor and the gateway as separate processes,
 * runs the simulator, waits until every reading it got a PUBACK for is stored, checks the rows, and stops both
 * services with SIGTERM. Uses the product's defaults (QUEUE, DB_PATH, ...) unless the environment sets them, so
 * the data stays in ./data/telemetry.db for `sqlite3` afterwards.
 */
import { spawn } from "node:child_process";
import { mkdirSync, readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import type { SimReading } from "../simulators/sensors.js";
import { inspectStore } from "../store/inspect.js";
import { CLI, startService, untilReady } from "./spawn.js";

const COUNT = Number(process.env.DEMO_COUNT ?? 30_000);
const DEVICES = Number(process.env.DEMO_DEVICES ?? 20);
/** Readings/s offered: below what the pipeline sustains, so a broker with default queue limits drops nothing. */
const RATE = Number(process.env.DEMO_RATE ?? 2_500);
const WAIT_MS = 120_000;
/** Series printed at the end, as a glimpse of what was stored. */
const SERIES_SHOWN = 5;

function say(line: string): void {
  process.stderr.write(`demo: ${line}\n`);
}

async function main(): Promise<number> {
  const dbPath = resolve(process.env.DB_PATH ?? "./data/telemetry.db");
  const workDir = join(resolve("data"), "demo");
  mkdirSync(workDir, { recursive: true });
  const record = join(workDir, "sent.ndjson");
  const env = { DB_PATH: dbPath, HTTP_PORT: "0", LOG_LEVEL: process.env.LOG_LEVEL ?? "warn" };

  say(`starting processor (SQLite ${dbPath}) and gateway`);
  const processor = await startService("processor", { ...env, LOG_LEVEL: "info" });
  // A wide window, so a broker with Mosquitto's default queue limit (1,000 per session) drops nothing if this
  // machine is slow for a moment (README: "The MQTT broker").
  const gateway = await startService("gateway", { ...env, LOG_LEVEL: "info", GATEWAY_INFLIGHT: "10000" });
  // The gateway's MQTT session must exist before the simulator publishes, or the first readings go nowhere.
  await untilReady(processor, gateway);
  say(
    `processor http://127.0.0.1:${processor.httpPort}/metrics, gateway http://127.0.0.1:${gateway.httpPort}/metrics`,
  );

  say(
    `simulating ${DEVICES} devices x 3 sensors, ${COUNT.toLocaleString("en")} readings at ${RATE.toLocaleString("en")}/s`,
  );
  const started = Date.now();
  const sim = spawn(
    process.execPath,
    [
      CLI,
      "simulate",
      "--devices",
      String(DEVICES),
      "--count",
      String(COUNT),
      "--rate",
      String(RATE),
      "--record",
      record,
    ],
    { stdio: ["ignore", "inherit", "inherit"] },
  );
  const simCode = await new Promise<number | null>((done) => sim.on("exit", done));
  if (simCode !== 0) {
    say(`simulator exited with ${simCode}`);
    await Promise.all([gateway.stop(), processor.stop()]);
    return 1;
  }

  const sent: SimReading[] = readFileSync(record, "utf8")
    .split("\n")
    .filter(Boolean)
    .map((l) => JSON.parse(l) as SimReading);
  const store = inspectStore(dbPath);
  let missing = sent;
  let mismatched = 0;
  const deadline = Date.now() + WAIT_MS;
  while (missing.length > 0 && Date.now() < deadline) {
    const still: SimReading[] = [];
    for (const r of missing) {
      const row = store.row({ device_id: r.deviceId, sensor: r.sensor, ts: r.ts });
      if (!row) still.push(r);
      else if (row.value !== r.value || row.unit !== r.unit || row.seq !== r.seq) mismatched++;
    }
    missing = still;
    if (missing.length > 0) await new Promise((r) => setTimeout(r, 250));
  }
  const seconds = (Date.now() - started) / 1000;
  const series = store.series();
  store.close();

  const [gwCode, procCode] = await Promise.all([gateway.stop(), processor.stop()]);
  say(
    `stored ${sent.length - missing.length} of ${sent.length} acknowledged readings, ${mismatched} differing, in ${seconds.toFixed(1)} s (${Math.round(sent.length / seconds).toLocaleString("en")} readings/s end to end)`,
  );
  say(`gateway exited ${gwCode}, processor exited ${procCode} after SIGTERM`);
  say(`${series.length} series in ${dbPath}; the first ${Math.min(series.length, SERIES_SHOWN)}:`);
  for (const s of series.slice(0, SERIES_SHOWN)) {
    say(
      `  ${s.device_id}/${s.sensor}: ${s.rows} rows, ${new Date(s.firstTs).toISOString()} .. ${new Date(s.lastTs).toISOString()}, values ${s.minValue} .. ${s.maxValue}`,
    );
  }
  say(
    `look at the data: npx telemetry query devices --db ${dbPath}; npx telemetry serve --db ${dbPath} ` +
      "(dashboard on http://127.0.0.1:8080/)",
  );
  return missing.length === 0 && mismatched === 0 && gwCode === 0 && procCode === 0 ? 0 : 1;
}

main().then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    say(err instanceof Error ? err.message : String(err));
    process.exitCode = 1;
  },
);
