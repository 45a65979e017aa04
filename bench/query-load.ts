/**
 * bench/query.ts's data and helper processes: the ten million readings it fills a database with, the child that
 * ingests beside the questions, the csv export of every row (in a child, for its peak RSS), and the separate HTTP
 * client that times the API as an analyst's browser or script would.
 */
import { spawn } from "node:child_process";
import { once } from "node:events";
import { createWriteStream, mkdirSync, readFileSync } from "node:fs";
import { dirname } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { READING_COLUMNS, readingsAnswer } from "../query/answers.js";
import { render, writeTo } from "../query/format.js";
import type { Reading } from "../schemas/index.js";
import { SqliteStore } from "../store/sqlite.js";
import { openSqliteQueries } from "../store/sqlite-queries.js";

/** The bench's script, which runs its helper processes by flag. */
const BENCH = fileURLToPath(new URL("./query.js", import.meta.url));

export const DEVICES = 1_000;
export const SENSORS = [
  { sensor: "temperature", unit: "C", base: 21, swing: 4 },
  { sensor: "humidity", unit: "%", base: 55, swing: 15 },
  { sensor: "pressure", unit: "hPa", base: 1_013, swing: 8 },
  { sensor: "co2", unit: "ppm", base: 600, swing: 300 },
] as const;
export const ROWS = 10_000_000;
export const PER_SERIES = ROWS / (DEVICES * SENSORS.length);
export const DAY_MS = 86_400_000;
export const SPAN_MS = 30 * DAY_MS;
/** Rows per fill transaction: large, because the fill is set-up, not the product's write path. */
const FILL_BATCH = 100_000;
const INGEST_BATCH_INTERVAL_MS = 100;
export const CHART_POINTS = 1_000;
export const RSS_TARGET_MIB = 150;
export const EXPORT_TARGET_ROWS_PER_S = 500_000;

export const say = (line: string) => process.stderr.write(`bench query: ${line}\n`);
export const fmt = (x: number) => Math.round(x).toLocaleString("en-US");
export const deviceId = (d: number) => `dev-${String(d).padStart(4, "0")}`;

/** A smooth daily curve per series plus a little noise, so min/max/mean differ between buckets. */
function valueAt(d: number, s: number, ts: number): number {
  const spec = SENSORS[s] ?? SENSORS[0];
  const phase = ((ts % DAY_MS) / DAY_MS) * 2 * Math.PI + d;
  return Math.round((spec.base + spec.swing * Math.sin(phase) + Math.random() - 0.5) * 100) / 100;
}

function readingAt(d: number, s: number, ts: number, seq: number): Reading {
  const spec = SENSORS[s] ?? SENSORS[0];
  return {
    device_id: deviceId(d),
    sensor: spec.sensor,
    ts,
    value: valueAt(d, s, ts),
    unit: spec.unit,
    seq,
    gateway_id: "bench",
    received_at: ts + 40,
  };
}

/**
 * Writes the ten million readings (`perSeries` a series of `devices` devices, spread over `spanMs`) in time order
 * across all series, as a processor would store them, through SqliteStore.writeBatch; `synchronous = OFF` for the
 * fill only (a crash would just mean filling again).
 */
export function fill(
  path: string,
  end: number,
  spanMs = SPAN_MS,
  devices = DEVICES,
  perSeries = PER_SERIES,
): void {
  mkdirSync(dirname(path), { recursive: true });
  const store = new SqliteStore(path);
  store.db.pragma("synchronous = OFF");
  const start = end - spanMs;
  const step = Math.floor(spanMs / perSeries);
  const t0 = performance.now();
  let batch: Reading[] = [];
  let written = 0;
  for (let i = 0; i < perSeries; i++) {
    for (let d = 0; d < devices; d++) {
      // Each device keeps its own phase within the step, so series are not in lockstep.
      const ts = start + i * step + ((d * 7_919) % step);
      for (let s = 0; s < SENSORS.length; s++) batch.push(readingAt(d, s, ts, i));
    }
    if (batch.length >= FILL_BATCH) {
      store.writeBatch(batch);
      written += batch.length;
      batch = [];
      if (written % 1_000_000 === 0) {
        say(`filled ${fmt(written)} rows, ${fmt(written / ((performance.now() - t0) / 1_000))}/s`);
      }
    }
  }
  if (batch.length > 0) store.writeBatch(batch);
  store.db.pragma("synchronous = FULL");
  store.close();
  say(`filled ${fmt(written + batch.length)} rows in ${((performance.now() - t0) / 1_000).toFixed(1)} s`);
}

/** Another process writing `rate` readings a second as the processor would (SqliteStore, synchronous=FULL). */
export async function ingestLoop(path: string, rate: number): Promise<void> {
  const store = new SqliteStore(path);
  const perTick = Math.max(1, Math.round((rate * INGEST_BATCH_INTERVAL_MS) / 1_000));
  let written = 0;
  let busy = 0;
  let stopping = false;
  process.once("SIGTERM", () => {
    stopping = true;
  });
  const started = performance.now();
  // Progress once a second, so the parent can wait for the writer to reach its rate (its first batches into a cold
  // ten-million-row file are slow) and count what it wrote while the questions ran.
  const progress = setInterval(
    () => process.stdout.write(`${JSON.stringify({ progress: written })}\n`),
    1_000,
  );
  while (!stopping) {
    const tick = performance.now();
    const now = Date.now();
    const batch: Reading[] = [];
    for (let i = 0; i < perTick; i++) {
      const d = Math.floor(Math.random() * DEVICES);
      const s = Math.floor(Math.random() * SENSORS.length);
      batch.push(readingAt(d, s, now + i, written + i));
    }
    try {
      store.writeBatch(batch);
      written += batch.length;
    } catch (err) {
      // As the processor does: a busy database is retried with the next tick, nothing else is expected.
      if ((err as { code?: string }).code !== "SQLITE_BUSY") throw err;
      busy++;
    }
    const wait = INGEST_BATCH_INTERVAL_MS - (performance.now() - tick);
    if (wait > 0) await new Promise((r) => setTimeout(r, wait));
  }
  clearInterval(progress);
  store.close();
  process.stdout.write(
    `${JSON.stringify({ written, busy, perSecond: written / ((performance.now() - started) / 1_000) })}\n`,
  );
}

/** Peak resident set size of this process so far, MiB (VmHWM). */
function peakRssMiB(): number {
  const kib = Number(/^VmHWM:\s+(\d+) kB/m.exec(readFileSync("/proc/self/status", "utf8"))?.[1] ?? 0);
  return kib / 1_024;
}

/**
 * Every reading of every device as csv through the query layer (`readingsAnswer`, as `query readings --format csv`
 * and `/api/readings?format=csv` answer) to /dev/null; run in a process of its own.
 */
export async function exportAll(path: string): Promise<void> {
  const queries = await openSqliteQueries(path);
  const devices = [...new Set((await queries.latest()).map((r) => r.device_id))];
  let rows = 0;
  async function* pages() {
    for (const device of devices) {
      const answer = readingsAnswer(queries, { device, order: "asc" });
      if (answer.pages === undefined) throw new Error("readings answer without pages");
      for await (const page of answer.pages) {
        rows += page.length;
        yield page;
      }
    }
  }
  const started = performance.now();
  const out = createWriteStream("/dev/null");
  await writeTo(render({ rows: [], pages: pages(), columns: READING_COLUMNS }, "csv"), out);
  const seconds = (performance.now() - started) / 1_000;
  out.end();
  await queries.stop();
  process.stdout.write(`${JSON.stringify({ rows, seconds, peakRssMiB: peakRssMiB() })}\n`);
}

/**
 * The separate HTTP client: reads lists of URLs on stdin, one JSON array a line, fetches each URL of a list in turn
 * (a kept-alive connection), reads the body as text, and answers each list with one
 * JSON array of the milliseconds every request took, from sending it to the body's last byte.
 */
export async function httpClient(): Promise<void> {
  for await (const line of createInterface({ input: process.stdin })) {
    const times: number[] = [];
    for (const url of JSON.parse(line) as string[]) {
      const t = performance.now();
      // A kept-alive socket the server closed meanwhile is retried once, in the time.
      const res = await fetch(url).catch(() => fetch(url));
      await res.text();
      if (!res.ok) throw new Error(`${url}: ${res.status}`);
      times.push(performance.now() - t);
    }
    process.stdout.write(`${JSON.stringify(times)}\n`);
  }
}

/** Starts the separate HTTP client; `get(urls)` resolves to the milliseconds each request took, in order. */
export function startHttpClient(): { get: (urls: string[]) => Promise<number[]>; stop: () => Promise<void> } {
  const child = spawn(process.execPath, [BENCH, "--http-client-child"], {
    stdio: ["pipe", "pipe", "inherit"],
  });
  const answers = createInterface({ input: child.stdout })[Symbol.asyncIterator]();
  const exited = once(child, "exit");
  return {
    async get(urls) {
      child.stdin.write(`${JSON.stringify(urls)}\n`);
      const answer = await answers.next();
      if (answer.done) throw new Error("the HTTP client process exited");
      return JSON.parse(answer.value) as number[];
    },
    async stop() {
      child.stdin.end();
      await exited;
    },
  };
}

export function runChild(args: string[]): { done: Promise<string>; kill: () => void; output: () => string } {
  const child = spawn(process.execPath, [BENCH, ...args], {
    stdio: ["ignore", "pipe", "inherit"],
  });
  let out = "";
  child.stdout.on("data", (d: Buffer) => {
    out += d.toString();
  });
  const done = new Promise<string>((resolve, reject) => {
    child.once("exit", (code) =>
      code === 0 ? resolve(out) : reject(new Error(`child ${args[0]} exited ${code}`)),
    );
  });
  return { done, kill: () => child.kill("SIGTERM"), output: () => out };
}

/** The last line of a child's output that is JSON with `key`, parsed. */
export function lastJson<T>(out: string, key: string): T | undefined {
  const lines = out.trim().split("\n").reverse();
  for (const line of lines) {
    if (!line.includes(`"${key}"`)) continue;
    return JSON.parse(line) as T;
  }
  return undefined;
}

/** Readings the ingesting child reported written so far (once a second). */
export const ingested = (child: { output: () => string }) =>
  lastJson<{ progress: number }>(child.output(), "progress")?.progress ?? 0;

/**
 * Waits until the ingesting child has written at least 90% of `rate` in each of two consecutive seconds (or 60 s
 * passed): its first batches, into pages not yet in the OS cache, run far below the rate asked.
 */
export async function untilIngesting(child: { output: () => string }, rate: number): Promise<number> {
  const deadline = Date.now() + 60_000;
  let good = 0;
  let last = ingested(child);
  let perSecond = 0;
  while (good < 2 && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 1_000));
    const now = ingested(child);
    perSecond = now - last;
    last = now;
    good = perSecond >= rate * 0.9 ? good + 1 : 0;
  }
  return perSecond;
}
