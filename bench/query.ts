/**
 * The analysts' queries on ten million readings (issue 14), old and new side by side (issue 30): fills a database
 * once (1,000 devices x 4 sensors over 30 days, written through the store module), then times each question
 * through the query layer and over HTTP (by a client in a process of its own, as an analyst's browser or script
 * is) while another process ingests readings, and exports every row as csv in a child process whose peak RSS it
 * reads. `--against REF` (default b2c5a7b, the commit before the query half's rewrite) builds REF in a temporary
 * git worktree and runs its own bench:query on the same database first, then prints both runs in one table.
 *
 *   npm run build && node dist/bench/query.js [--db FILE] [--runs N] [--ingest-rate N] [--skip-export] [--against REF]
 */
import { execFileSync, spawn } from "node:child_process";
import { once } from "node:events";
import { existsSync, readFileSync, realpathSync, symlinkSync } from "node:fs";
import { loadavg } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { startServe } from "../serve/index.js";
import type { ReadingQueries } from "../store/queries.js";
import { openSqliteQueries } from "../store/sqlite-queries.js";
import {
  CHART_POINTS,
  DAY_MS,
  DEVICES,
  deviceId,
  EXPORT_TARGET_ROWS_PER_S,
  exportAll,
  fill,
  fmt,
  httpClient,
  ingested,
  ingestLoop,
  lastJson,
  RSS_TARGET_MIB,
  runChild,
  SENSORS,
  SPAN_MS,
  say,
  startHttpClient,
  untilIngesting,
} from "./query-load.js";
import { runYear } from "./query-year.js";

interface Timing {
  readonly question: string;
  readonly target: string;
  readonly direct: number;
  /** Over HTTP, by the separate client. */
  readonly http: number;
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

async function measure(path: string, runs: number, ingesting: boolean): Promise<Timing[]> {
  // The query layer's targets for latest and devices: under 5 ms idle, under 10 ms while the processor writes.
  const summaryTarget = ingesting ? "< 10 ms" : "< 5 ms";
  const q: ReadingQueries = await openSqliteQueries(path);
  const serve = await startServe({ dbPath: path, host: "127.0.0.1", port: 0 });
  const client = startHttpClient();
  const end = (await q.latest(deviceId(0))).reduce((m, r) => Math.max(m, r.ts), 0);
  const dev = (i: number) => deviceId((i * 37 + 11) % DEVICES);
  const dayFrom = end - DAY_MS;
  const monthFrom = end - SPAN_MS;
  const questions: {
    question: string;
    target: string;
    direct: (i: number) => Promise<unknown>;
    path?: (i: number) => string;
  }[] = [
    {
      question: `latest value of all ${DEVICES * SENSORS.length} series`,
      target: summaryTarget,
      direct: () => q.latest(),
      path: () => "/api/latest",
    },
    {
      // A reader kept open (serve) keeps the rollup's text between questions; `telemetry query latest` opens one
      // for its one question, so it reads the text too: timed from opening the file to the answer.
      question: "the same, first question of a reader just opened (`telemetry query latest`)",
      target: `(${summaryTarget})`,
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
      target: summaryTarget,
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
    // Every series a question uses is read once first, so no column pays the OS page-cache misses the others then
    // avoid (measured: a chart over series not read recently took 18 ms, the same again 3.5 ms).
    for (let i = 0; i <= runs; i++) await x.direct(i);
    const direct = await timeIt(runs, x.direct);
    const pathOf = x.path;
    let http = Number.NaN;
    if (pathOf !== undefined) {
      // A server is warmed up as one that has been up a while (a dashboard asks every few seconds): HTTP_WARM_UP
      // requests first, each question's series in turn; then the warm-up request and `runs` timed ones.
      const urls = (ids: number[]) => ids.map((i) => `${serve.url}${pathOf(i)}`);
      await client.get(
        urls(Array.from({ length: Math.max(runs + 1, HTTP_WARM_UP) }, (_, i) => i % (runs + 1))),
      );
      http = median((await client.get(urls([runs, ...Array.from({ length: runs }, (_, i) => i)]))).slice(1));
    }
    say(`${x.question}: ${ms(direct)}, over HTTP ${ms(http)} (median of ${runs})`);
    out.push({ question: x.question, target: x.target, direct, http });
  }
  await client.stop();
  await serve.stop();
  await q.stop();
  return out;
}

/** The commit before the query half's rewrite (issue 30). */
const AGAINST = "b2c5a7b";

const USAGE = `Usage: npm run bench:query -- [options]     (or: node dist/bench/query.js [options])

The analysts' questions on ten million readings (1,000 devices x 4 sensors over 30 days): fills the database once
(about two minutes; kept for later runs), then times latest, devices, a raw day, a 30-day chart, stats --every 1h
and a csv export of every row, through the query layer and over HTTP (a client in a process of its own), while a
child process ingests readings. Prints the median of each question and the export's rows/s and peak RSS, for the
commit given by --against (built in a temporary git worktree, run first on the same database) and for this one.

Options:
  --db FILE            the database to fill or reuse (default /tmp/telemetry-query-bench/telemetry.db)
  --runs N             timed runs of each question; the median is reported (default 21)
  --ingest-rate N      readings/s the ingesting child writes meanwhile; 0: no writer (default 5000)
  --against REF        the git commit to compare with (default ${AGAINST}); none: this build alone
  --fill-only          fill the database (if it does not exist) and stop
  --skip-export        leave out the csv export of every row (it takes about 20 s on ten million)
  --year               instead: the ten million readings spread over a year (FILE-year.db), a tenth of them
                       (FILE-year-tenth.db, a tenth of the devices) and the ten million on a tenth of the devices
                       (FILE-year-dense.db), filled once; stats --every 1d over the year and a one-year chart,
                       from the rollup tiers and from raw rows alone
  --help               this text
`;

function parseOptions() {
  try {
    return parseArgs({
      options: {
        db: { type: "string", default: "/tmp/telemetry-query-bench/telemetry.db" },
        runs: { type: "string", default: "21" },
        "ingest-rate": { type: "string", default: "5000" },
        against: { type: "string", default: AGAINST },
        "fill-only": { type: "boolean", default: false },
        "skip-export": { type: "boolean", default: false },
        year: { type: "boolean", default: false },
        help: { type: "boolean", default: false },
        // The bench's own child processes, not for users.
        "ingest-child": { type: "boolean", default: false },
        "export-child": { type: "boolean", default: false },
        "http-client-child": { type: "boolean", default: false },
        // Print this run's figures as one JSON line (what a newer bench reads of this one).
        json: { type: "boolean", default: false },
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

/** What one run measured: each question's medians, the export, and the ingest beside the questions. */
interface Run {
  readonly timings: readonly Timing[];
  readonly exported?: { rows: number; seconds: number; peakRssMiB: number } | undefined;
  readonly ingestDuring: number;
}

/** Runs the questions (and the export) on `path` with this build, while a child ingests. */
async function runHere(path: string): Promise<Run> {
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
  const timings = await measure(path, Number(args.runs), ingesting !== undefined);
  const questionsSeconds = (performance.now() - questionsStart) / 1_000;
  const ingestDuring = ingesting ? (ingested(ingesting) - ingestedBefore) / questionsSeconds : 0;
  say(`load average after the questions: ${load()}; ingest meanwhile ${fmt(ingestDuring)} readings/s`);
  let exported: Run["exported"];
  if (!args["skip-export"]) {
    say("exporting every reading as csv in a child process");
    exported = JSON.parse(await runChild(["--export-child", "--db", path]).done) as Run["exported"];
  }
  ingesting?.kill();
  await ingesting?.done.catch(() => "");
  return { timings, exported, ingestDuring };
}

/**
 * Builds `ref` in a temporary git worktree (node_modules linked to this checkout's) and runs its bench on `path`
 * with the same options. A bench from before `--json` prints a markdown table, which is read instead (its query
 * layer column and its separate client's HTTP column).
 */
async function runAgainst(ref: string, path: string): Promise<Run> {
  const root = execFileSync("git", ["rev-parse", "--show-toplevel"], { encoding: "utf8" }).trim();
  const sha = execFileSync("git", ["rev-parse", "--short", ref], { encoding: "utf8", cwd: root }).trim();
  const tree = `/tmp/telemetry-bench-against-${sha}`;
  if (!existsSync(join(tree, "dist/bench/query.js"))) {
    say(`building ${ref} (${sha}) in ${tree}`);
    if (!existsSync(tree))
      execFileSync("git", ["worktree", "add", "--detach", tree, sha], { cwd: root, stdio: "ignore" });
    if (!existsSync(join(tree, "node_modules")))
      symlinkSync(realpathSync(join(root, "node_modules")), join(tree, "node_modules"));
    execFileSync(
      process.execPath,
      [join(tree, "node_modules/typescript/bin/tsc"), "-p", "tsconfig.build.json"],
      { cwd: tree, stdio: "inherit" },
    );
  }
  say(`running ${ref}'s bench on ${path}`);
  const script = join(tree, "dist/bench/query.js");
  const options = ["--db", path, "--runs", String(args.runs), "--ingest-rate", String(args["ingest-rate"])];
  if (args["skip-export"]) options.push("--skip-export");
  if (readFileSync(script, "utf8").includes('"json"')) options.push("--json");
  const child = spawn(process.execPath, [script, ...options], { stdio: ["ignore", "pipe", "inherit"] });
  let out = "";
  child.stdout.on("data", (d: Buffer) => {
    out += d.toString();
  });
  const [code] = (await once(child, "exit")) as [number | null];
  if (code !== 0) throw new Error(`${ref}'s bench exited ${code}`);
  const json = lastJson<Run>(out, "timings");
  if (json !== undefined) return json;
  const cell = (c: string) => Number.parseFloat(c) || Number.NaN;
  const rows = out
    .split("\n")
    .filter((l) => l.startsWith("| ") && !l.startsWith("| question") && !l.startsWith("| ---"));
  const timings = rows
    .filter((l) => !l.startsWith("| csv"))
    .map((l): Timing => {
      const c = l.split("|").map((x) => x.trim());
      return { question: c[1] ?? "", target: c[2] ?? "", direct: cell(c[3] ?? ""), http: cell(c[5] ?? "") };
    });
  const csv = rows.find((l) => l.startsWith("| csv"))?.split("|")[3] ?? "";
  const [rate = "", seconds = "", rss = ""] =
    /([\d,]+) rows\/s \(([\d.]+) s\), peak RSS (\d+)/.exec(csv)?.slice(1) ?? [];
  const exported =
    csv === ""
      ? undefined
      : {
          rows: Number(rate.replaceAll(",", "")) * Number(seconds),
          seconds: Number(seconds),
          peakRssMiB: Number(rss),
        };
  const ingest = /Ingest while the questions ran: ([\d,]+) readings/.exec(out)?.[1];
  return {
    timings,
    exported,
    ingestDuring: ingest === undefined ? Number.NaN : Number(ingest.replaceAll(",", "")),
  };
}

/** Both runs in one table: old | new | target for every question, the export and the ingest beside them. */
function report(old: Run | undefined, now: Run, ref: string): string {
  const both = (a: string, b: string) => (old === undefined ? b : `${a} | ${b}`);
  const head = both(`query layer, ${ref}`, "query layer, this build");
  const http = both(`over HTTP, ${ref}`, "over HTTP, this build");
  const exportText = (e: Run["exported"]) =>
    e === undefined
      ? "-"
      : `${fmt(e.rows / e.seconds)} rows/s (${e.seconds.toFixed(1)} s), peak RSS ${e.peakRssMiB.toFixed(0)} MiB`;
  const lines = [
    `| question | target | ${head} | ${http} |`,
    `| --- | --- | ${both("---", "---")} | ${both("---", "---")} |`,
    ...now.timings.map((t) => {
      const o = old?.timings.find((x) => x.question === t.question);
      return `| ${t.question} | ${t.target} | ${both(ms(o?.direct ?? Number.NaN), ms(t.direct))} | ${both(ms(o?.http ?? Number.NaN), ms(t.http))} |`;
    }),
  ];
  if (now.exported !== undefined || old?.exported !== undefined) {
    lines.push(
      `| csv export of every row | >= ${fmt(EXPORT_TARGET_ROWS_PER_S)} rows/s, RSS < ${RSS_TARGET_MIB} MB | ${both(exportText(old?.exported), exportText(now.exported))} | ${both("", "")} |`,
    );
  }
  const rate = Number(args["ingest-rate"]);
  if (rate > 0) {
    const during = (r: Run | undefined) =>
      r === undefined || Number.isNaN(r.ingestDuring) ? "-" : fmt(r.ingestDuring);
    lines.push(
      "",
      `Ingest while the questions ran (readings/s of ${fmt(rate)} asked): ${both(`${ref} ${during(old)},`, `this build ${during(now)}`)}.`,
    );
  }
  return `${lines.join("\n")}\n`;
}

async function main(): Promise<void> {
  const path = args.db;
  if (args["ingest-child"]) return ingestLoop(path, Number(args["ingest-rate"]));
  if (args["export-child"]) return exportAll(path);
  if (args["http-client-child"]) return httpClient();
  if (args.year) {
    process.stdout.write(`${await runYear(path, Number(args.runs))}\n`);
    return;
  }
  if (!existsSync(path)) fill(path, Date.now());
  else say(`${path} exists; using it as it is (delete it to fill again)`);
  if (args["fill-only"]) return;
  if (args.json) {
    process.stdout.write(`${JSON.stringify(await runHere(path))}\n`);
    return;
  }
  const ref = args.against;
  const old = ref === "none" ? undefined : await runAgainst(ref, path);
  const now = await runHere(path);
  process.stdout.write(report(old, now, ref));
}

await main();
