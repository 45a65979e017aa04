/**
 * The analysts' queries on ten million readings (issue 14): fills a database once (1,000 devices x 4 sensors over
 * 30 days, written through the store module), then times each question through the query layer and over HTTP
 * while another process ingests readings, and exports every row as csv in a child process whose peak RSS it reads.
 * HTTP is timed twice: by a client in this process, whose fetch and body read share the event loop with the
 * server's main thread, and by a client in a process of its own, as an analyst's browser or script is; that client
 * also fetches a body of each answer's size from a node:http server that does nothing else (the baseline: what
 * HTTP costs that client whatever the server).
 *
 *   npm run build && node dist/bench/query.js [--db FILE] [--runs N] [--ingest-rate N] [--skip-export]
 */
import { spawn } from "node:child_process";
import { once } from "node:events";
import { createWriteStream, existsSync, mkdirSync, readFileSync } from "node:fs";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { loadavg } from "node:os";
import { dirname } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { READING_COLUMNS, readingsAnswer } from "../query/answers.js";
import { render, writeTo } from "../query/format.js";
import type { Reading } from "../schemas/index.js";
import { startServe } from "../serve/index.js";
import type { ReadingQueries } from "../store/queries.js";
import { SqliteStore } from "../store/sqlite.js";
import { openSqliteQueries } from "../store/sqlite-queries.js";

const DEVICES = 1_000;
const SENSORS = [
  { sensor: "temperature", unit: "C", base: 21, swing: 4 },
  { sensor: "humidity", unit: "%", base: 55, swing: 15 },
  { sensor: "pressure", unit: "hPa", base: 1_013, swing: 8 },
  { sensor: "co2", unit: "ppm", base: 600, swing: 300 },
] as const;
const ROWS = 10_000_000;
const PER_SERIES = ROWS / (DEVICES * SENSORS.length);
const DAY_MS = 86_400_000;
const SPAN_MS = 30 * DAY_MS;
const STEP_MS = Math.floor(SPAN_MS / PER_SERIES);
/** Rows per fill transaction: large, because the fill is set-up, not the product's write path. */
const FILL_BATCH = 100_000;
const INGEST_BATCH_INTERVAL_MS = 100;
const CHART_POINTS = 1_000;
const RSS_TARGET_MIB = 150;
const EXPORT_TARGET_ROWS_PER_S = 500_000;

const say = (line: string) => process.stderr.write(`bench query: ${line}\n`);
const fmt = (x: number) => Math.round(x).toLocaleString("en-US");
const deviceId = (d: number) => `dev-${String(d).padStart(4, "0")}`;

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
 * Writes the ten million readings in time order across all series, as a processor would store them, through
 * SqliteStore.writeBatch; `synchronous = OFF` for the fill only (a crash would just mean filling again).
 */
function fill(path: string, end: number): void {
  mkdirSync(dirname(path), { recursive: true });
  const store = new SqliteStore(path);
  store.db.pragma("synchronous = OFF");
  const start = end - SPAN_MS;
  const t0 = performance.now();
  let batch: Reading[] = [];
  let written = 0;
  for (let i = 0; i < PER_SERIES; i++) {
    for (let d = 0; d < DEVICES; d++) {
      // Each device keeps its own phase within the step, so series are not in lockstep.
      const ts = start + i * STEP_MS + ((d * 7_919) % STEP_MS);
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
  say(`filled ${fmt(ROWS)} rows in ${((performance.now() - t0) / 1_000).toFixed(1)} s`);
}

/** Another process writing `rate` readings a second as the processor would (SqliteStore, synchronous=FULL). */
async function ingestLoop(path: string, rate: number): Promise<void> {
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
async function exportAll(path: string): Promise<void> {
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
 * (a kept-alive connection, as the in-process client uses), reads the body as text, and answers each list with one
 * JSON array of the milliseconds every request took, from sending it to the body's last byte.
 */
async function httpClient(): Promise<void> {
  for await (const line of createInterface({ input: process.stdin })) {
    const times: number[] = [];
    for (const url of JSON.parse(line) as string[]) {
      const t = performance.now();
      // As the in-process client: a kept-alive socket the server closed meanwhile is retried once, in the time.
      const res = await fetch(url).catch(() => fetch(url));
      await res.text();
      if (!res.ok) throw new Error(`${url}: ${res.status}`);
      times.push(performance.now() - t);
    }
    process.stdout.write(`${JSON.stringify(times)}\n`);
  }
}

/** Starts the separate HTTP client; `get(urls)` resolves to the milliseconds each request took, in order. */
function startHttpClient(): { get: (urls: string[]) => Promise<number[]>; stop: () => Promise<void> } {
  const child = spawn(process.execPath, [fileURLToPath(import.meta.url), "--http-client-child"], {
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

function runChild(args: string[]): { done: Promise<string>; kill: () => void; output: () => string } {
  const child = spawn(process.execPath, [fileURLToPath(import.meta.url), ...args], {
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
function lastJson<T>(out: string, key: string): T | undefined {
  const lines = out.trim().split("\n").reverse();
  for (const line of lines) {
    if (!line.includes(`"${key}"`)) continue;
    return JSON.parse(line) as T;
  }
  return undefined;
}

/** Readings the ingesting child reported written so far (once a second). */
const ingested = (child: { output: () => string }) =>
  lastJson<{ progress: number }>(child.output(), "progress")?.progress ?? 0;

/**
 * Waits until the ingesting child has written at least 90% of `rate` in each of two consecutive seconds (or 60 s
 * passed): its first batches, into pages not yet in the OS cache, run far below the rate asked.
 */
async function untilIngesting(child: { output: () => string }, rate: number): Promise<number> {
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

interface Timing {
  readonly question: string;
  readonly target: string;
  readonly direct: number;
  readonly http: number;
  readonly httpSeparate: number;
  /** The separate client fetching a body of the answer's size from a server that does nothing else. */
  readonly bare: number;
}

/**
 * The baseline of the HTTP columns: a node:http server that answers `/bytes/N` with N bytes it holds, so the
 * separate client's time for a body of an answer's size, without any query, is measured in the same run.
 */
async function startBareServer(): Promise<{ url: string; stop: () => Promise<void> }> {
  const bodies = new Map<number, Buffer>();
  const server = createServer((req, res) => {
    const size = Number(req.url?.split("/")[2] ?? 0);
    let body = bodies.get(size);
    if (body === undefined) {
      body = Buffer.alloc(size, "a");
      bodies.set(size, body);
    }
    res.writeHead(200, {
      "content-type": "application/json",
      "content-length": size,
      "cache-control": "no-store",
    });
    res.end(body);
  });
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    stop: () => new Promise((resolve) => server.close(() => resolve())),
  };
}

/** Requests each HTTP question is asked before it is timed (see measure). */
const HTTP_WARM_UP = 300;

const ms = (x: number) => (Number.isNaN(x) ? "-" : `${x.toFixed(2)} ms`);

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)] ?? Number.NaN;
};

async function timeIt(runs: number, f: (i: number) => Promise<unknown>): Promise<number> {
  await f(runs); // warm-up, on a series the timed runs do not use
  const times: number[] = [];
  for (let i = 0; i < runs; i++) {
    const t = performance.now();
    await f(i);
    times.push(performance.now() - t);
  }
  return median(times);
}

async function collect<T>(it: AsyncIterable<T>): Promise<number> {
  let n = 0;
  for await (const _ of it) n++;
  return n;
}

async function measure(path: string, runs: number): Promise<Timing[]> {
  const q: ReadingQueries = await openSqliteQueries(path);
  const serve = await startServe({ dbPath: path, host: "127.0.0.1", port: 0 });
  const client = startHttpClient();
  const bareServer = await startBareServer();
  const end = (await q.latest(deviceId(0))).reduce((m, r) => Math.max(m, r.ts), 0);
  const dev = (i: number) => deviceId((i * 37 + 11) % DEVICES);
  const http = async (p: string) => {
    // A kept-alive socket can be closed by the server's idle timer, which fires late here because the direct runs
    // block this process's event loop: ask again once on a fresh connection.
    const res = await fetch(`${serve.url}${p}`).catch(() => fetch(`${serve.url}${p}`));
    if (!res.ok) throw new Error(`${p}: ${res.status}`);
    return res.text();
  };
  const dayFrom = end - DAY_MS;
  const monthFrom = end - SPAN_MS;
  const questions: {
    question: string;
    target: string;
    runs?: number;
    direct: (i: number) => Promise<unknown>;
    path?: (i: number) => string;
  }[] = [
    {
      question: `latest value of all ${DEVICES * SENSORS.length} series`,
      target: "< 5 ms",
      direct: () => q.latest(),
      path: () => "/api/latest",
    },
    {
      // A reader kept open (serve) keeps the rollup's text between questions; `telemetry query latest` opens one
      // for its one question, so it reads the text too: timed from opening the file to the answer.
      question: "the same, first question of a reader just opened (`telemetry query latest`)",
      target: "(< 5 ms)",
      direct: async () => {
        const fresh = await openSqliteQueries(path);
        try {
          return await fresh.latest();
        } finally {
          await fresh.stop();
        }
      },
    },
    {
      question: "`devices` (counts, first/last per series)",
      target: "< 20 ms",
      direct: () => q.devices(),
      path: () => "/api/devices",
    },
    {
      question: "one series, one day, raw",
      target: "< 20 ms",
      direct: (i) =>
        collect(q.readings({ device: dev(i), sensor: "temperature", from: dayFrom, order: "asc" })),
      path: (i) => `/api/readings?device=${dev(i)}&sensor=temperature&from=${dayFrom}`,
    },
    {
      question: `one series, 30 days, at most ${fmt(CHART_POINTS)} chart points`,
      target: "< 20 ms",
      direct: (i) =>
        q.series({ device: dev(i), sensor: "temperature", from: monthFrom, points: CHART_POINTS }),
      path: (i) => `/api/series?device=${dev(i)}&sensor=temperature&from=${monthFrom}&points=${CHART_POINTS}`,
    },
    {
      question: "`stats --every 1h` over 30 days, one series",
      target: "< 10 ms",
      direct: (i) =>
        collect(q.stats({ device: dev(i), sensor: "temperature", from: monthFrom, every: 3_600_000 })),
      path: (i) => `/api/stats?device=${dev(i)}&sensor=temperature&every=1h&from=${monthFrom}`,
    },
  ];
  const out: Timing[] = [];
  for (const x of questions) {
    const n = x.runs ?? runs;
    // Every series a question uses is read once first, so no column pays the OS page-cache misses the others then
    // avoid (measured: a chart over series not read recently took 18 ms, the same again 3.5 ms).
    for (let i = 0; i <= n; i++) await x.direct(i);
    const direct = await timeIt(n, x.direct);
    const { path: pathOf } = x;
    if (pathOf === undefined) {
      say(`${x.question}: ${direct.toFixed(2)} ms (median of ${n})`);
      out.push({
        question: x.question,
        target: x.target,
        direct,
        http: Number.NaN,
        httpSeparate: Number.NaN,
        bare: Number.NaN,
      });
      continue;
    }
    // A server is warmed up as one that has been up a while (a dashboard asks every few seconds): HTTP_WARM_UP
    // requests first, each question's series in turn. With only the query layer's warm-up (n + 1), the code of the
    // server's two threads was not yet fully compiled: latest and devices over HTTP took 1.5 to 2 ms more.
    let bytes = 0;
    for (let i = 0; i < Math.max(n + 1, HTTP_WARM_UP); i++)
      bytes = Buffer.byteLength(await http(pathOf(i % (n + 1))));
    const overHttp = await timeIt(n, (i) => http(pathOf(i)));
    // The same warm-up request and the same n timed ones as timeIt, this process waiting meanwhile.
    const urls = [n, ...Array.from({ length: n }, (_, i) => i)].map((i) => `${serve.url}${pathOf(i)}`);
    const separate = median((await client.get(urls)).slice(1));
    const bareUrls = Array.from({ length: n + 1 }, () => `${bareServer.url}/bytes/${bytes}`);
    const bare = median((await client.get(bareUrls)).slice(1));
    say(
      `${x.question}: ${direct.toFixed(2)} ms, over HTTP ${overHttp.toFixed(2)} ms, ` +
        `separate client ${separate.toFixed(2)} ms, a bare server's ${fmt(bytes)} bytes ${bare.toFixed(2)} ms (median of ${n})`,
    );
    out.push({
      question: x.question,
      target: x.target,
      direct,
      http: overHttp,
      httpSeparate: separate,
      bare,
    });
  }
  await client.stop();
  await bareServer.stop();
  await serve.stop();
  await q.stop();
  return out;
}

const USAGE = `Usage: npm run bench:query -- [options]     (or: node dist/bench/query.js [options])

The analysts' questions on ten million readings (1,000 devices x 4 sensors over 30 days): fills the database once
(about two minutes; kept for later runs), then times latest, devices, a raw day, a 30-day chart, stats --every 1h
and a csv export of every row, through the query layer and over HTTP, while a child process ingests readings.
Prints the median of each question and the export's rows/s and peak RSS. The last column is the baseline of the
HTTP ones: the separate client fetching a body of the answer's size from a server that does nothing else.

Options:
  --db FILE            the database to fill or reuse (default /tmp/telemetry-query-bench/telemetry.db)
  --runs N             timed runs of each question; the median is reported (default 21)
  --ingest-rate N      readings/s the ingesting child writes meanwhile; 0: no writer (default 5000)
  --fill-only          fill the database (if it does not exist) and stop
  --skip-export        leave out the csv export of every row (it takes about 20 s on ten million)
  --help               this text
`;

function parseOptions() {
  try {
    return parseArgs({
      options: {
        db: { type: "string", default: "/tmp/telemetry-query-bench/telemetry.db" },
        runs: { type: "string", default: "21" },
        "ingest-rate": { type: "string", default: "5000" },
        "fill-only": { type: "boolean", default: false },
        "skip-export": { type: "boolean", default: false },
        help: { type: "boolean", default: false },
        // The bench's own child processes, not for users.
        "ingest-child": { type: "boolean", default: false },
        "export-child": { type: "boolean", default: false },
        "http-client-child": { type: "boolean", default: false },
      },
    }).values;
  } catch (err) {
    process.stderr.write(`bench query: ${err instanceof Error ? err.message : String(err)}\n\n${USAGE}`);
    process.exit(2);
  }
}

const args = parseOptions();
if (args.help) {
  process.stdout.write(USAGE);
  process.exit(0);
}
for (const name of ["runs", "ingest-rate"] as const) {
  const n = Number(args[name]);
  if (!Number.isInteger(n) || n < (name === "runs" ? 1 : 0)) {
    process.stderr.write(
      `bench query: --${name} must be a whole number${name === "runs" ? " of at least 1" : ""}, not ${args[name]}\n`,
    );
    process.exit(2);
  }
}

async function main(): Promise<void> {
  const path = args.db;
  if (args["ingest-child"]) return ingestLoop(path, Number(args["ingest-rate"]));
  if (args["export-child"]) return exportAll(path);
  if (args["http-client-child"]) return httpClient();
  if (!existsSync(path)) fill(path, Date.now());
  else say(`${path} exists; using it as it is (delete it to fill again)`);
  if (args["fill-only"]) return;
  const rate = Number(args["ingest-rate"]);
  const ingesting =
    rate > 0 ? runChild(["--ingest-child", "--db", path, "--ingest-rate", String(rate)]) : undefined;
  // A failed run must not leave its writer behind (one left once doubled the writers of the next run).
  process.once("exit", () => ingesting?.kill());
  const load = () =>
    loadavg()
      .map((x) => x.toFixed(2))
      .join(" ");
  if (ingesting) {
    say(`waiting for the ingesting child to reach ${fmt(rate)} readings/s`);
    say(`  ${fmt(await untilIngesting(ingesting, rate))} readings/s in its last second`);
  }
  say(`load average before the questions: ${load()}`);
  const ingestedBefore = ingesting ? ingested(ingesting) : 0;
  const questionsStart = performance.now();
  const timings = await measure(path, Number(args.runs));
  const questionsSeconds = (performance.now() - questionsStart) / 1_000;
  const ingestDuring = ingesting ? (ingested(ingesting) - ingestedBefore) / questionsSeconds : 0;
  say(`load average after the questions: ${load()}`);
  if (ingesting) {
    say(`ingest while the questions ran (${questionsSeconds.toFixed(1)} s): ${fmt(ingestDuring)} readings/s`);
  }
  let exported: { rows: number; seconds: number; peakRssMiB: number } | undefined;
  if (!args["skip-export"]) {
    say("exporting every reading as csv in a child process");
    exported = JSON.parse(await runChild(["--export-child", "--db", path]).done) as {
      rows: number;
      seconds: number;
      peakRssMiB: number;
    };
  }
  ingesting?.kill();
  const ingest = ingesting
    ? lastJson<{ written: number; busy: number; perSecond: number }>(await ingesting.done, "written")
    : undefined;
  const lines = [
    "| question | target | query layer (median) | over HTTP, client in the same process (median) | over HTTP, separate client (median) | the separate client, a body of that size from a bare server (median) |",
    "| --- | --- | --- | --- | --- | --- |",
    ...timings.map(
      (t) =>
        `| ${t.question} | ${t.target} | ${t.direct.toFixed(2)} ms | ${ms(t.http)} | ${ms(t.httpSeparate)} | ${ms(t.bare)} |`,
    ),
    ...(exported === undefined
      ? []
      : [
          `| csv export of all ${fmt(exported.rows)} rows | RSS < ${RSS_TARGET_MIB} MB, >= ${fmt(EXPORT_TARGET_ROWS_PER_S)} rows/s | ` +
            `${fmt(exported.rows / exported.seconds)} rows/s (${exported.seconds.toFixed(1)} s), peak RSS ${exported.peakRssMiB.toFixed(0)} MiB | | | |`,
        ]),
  ];
  if (ingesting) {
    lines.push(
      "",
      `Ingest while the questions ran: ${fmt(ingestDuring)} readings/s of ${fmt(rate)} asked (${questionsSeconds.toFixed(1)} s).`,
    );
  }
  process.stdout.write(`${lines.join("\n")}\n`);
  if (ingest)
    say(
      `ingest beside the queries: ${fmt(ingest.written)} readings, ${fmt(ingest.perSecond)}/s, ${ingest.busy} batches found the database busy`,
    );
}

await main();
