/**
 * bench:query's one-year questions (issue 27): the ten million readings spread over a year, and a file of a tenth
 * of them (a tenth of the devices, each series as dense), asked `stats --every 1d` over the year and a one-year
 * chart of one series. Each is timed as shipped (the rollup tiers answer) and from raw rows alone (the tiers'
 * horizons raised for the run, so the plan leaves them out): the baseline of the same run.
 */

import { existsSync } from "node:fs";
import Database from "better-sqlite3";
import { openSqliteQueries } from "../store/sqlite-queries.js";
import { CHART_POINTS, DAY_MS, DEVICES, deviceId, fill, fmt, ROWS, say } from "./query-load.js";

const YEAR_MS = 365 * DAY_MS;
const TARGET = "< 20 ms";

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? Number.NaN;

/** Sets every tier's horizon: 0 (as filled) or past all data (raw rows alone answer). */
function setTierHorizons(path: string, ts: number): void {
  const db = new Database(path);
  db.prepare("UPDATE horizons SET ts = ? WHERE name <> 'readings'").run(ts);
  db.close();
}

async function timeQuestions(path: string, devices: number, runs: number): Promise<number[]> {
  const q = await openSqliteQueries(path);
  const end = (await q.latest(deviceId(0))).reduce((m, r) => Math.max(m, r.ts), 0) + 1;
  const from = end - YEAR_MS;
  const dev = (i: number) => deviceId((i * 37 + 11) % devices);
  const questions = [
    async (i: number) => {
      let n = 0;
      for await (const _ of q.stats({ device: dev(i), sensor: "temperature", from, to: end, every: DAY_MS }))
        n++;
      return n;
    },
    async (i: number) =>
      (await q.series({ device: dev(i), sensor: "temperature", from, to: end, points: CHART_POINTS })).length,
  ];
  const out: number[] = [];
  for (const ask of questions) {
    for (let i = 0; i <= runs; i++) await ask(i); // every series read once first: no page-cache misses timed
    const times: number[] = [];
    for (let i = 0; i < runs; i++) {
      const t = performance.now();
      await ask(i);
      times.push(performance.now() - t);
    }
    out.push(median(times));
  }
  await q.stop();
  return out;
}

/** Fills the two one-year files beside `path` when missing, times the questions, returns a markdown table. */
export async function runYear(path: string, runs: number): Promise<string> {
  const files = [
    { path: path.replace(/(\.db)?$/, "-year.db"), devices: DEVICES },
    { path: path.replace(/(\.db)?$/, "-year-tenth.db"), devices: DEVICES / 10 },
  ];
  const columns: string[] = [];
  const cells: string[][] = [[], []];
  for (const f of files) {
    if (!existsSync(f.path)) fill(f.path, Date.now(), YEAR_MS, f.devices);
    const rows = `${fmt((ROWS * f.devices) / DEVICES)} rows`;
    try {
      setTierHorizons(f.path, 0);
      const tiers = await timeQuestions(f.path, f.devices, runs);
      setTierHorizons(f.path, Number.MAX_SAFE_INTEGER);
      const raw = await timeQuestions(f.path, f.devices, runs);
      columns.push(`${rows}: tiers`, `${rows}: raw rows alone`);
      for (const [i, t] of tiers.entries()) cells[i]?.push(`${t.toFixed(2)} ms`, `${raw[i]?.toFixed(2)} ms`);
      say(
        `${f.path}: tiers ${tiers.map((t) => t.toFixed(2)).join(", ")} ms; raw ${raw.map((t) => t.toFixed(2)).join(", ")} ms`,
      );
    } finally {
      setTierHorizons(f.path, 0);
    }
  }
  const names = [
    "`stats --every 1d` over a year, one series",
    `one-year chart of one series (<= ${fmt(CHART_POINTS)} points)`,
  ];
  return [
    `| question (median of ${runs}) | target | ${columns.join(" | ")} |`,
    `| --- | --- | ${columns.map(() => "---").join(" | ")} |`,
    ...names.map((n, i) => `| ${n} | ${TARGET} | ${cells[i]?.join(" | ")} |`),
  ].join("\n");
}
