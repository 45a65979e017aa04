/**
 * bench:query's one-year questions (issue 27): the ten million readings spread over a year (2,500 a series, one
 * every 3.5 hours), a file of a tenth of them (a tenth of the devices, each series as dense), and the ten million on
 * a tenth of the devices (25,000 a series, one every 21 minutes), asked `stats --every 1d` over the year and a
 * one-year chart of one series. Each is timed as shipped (the rollup tiers answer) and from raw rows alone (the
 * tiers' horizons raised for the run, so the plan leaves them out): the baseline of the same run.
 */

import { existsSync } from "node:fs";
import Database from "better-sqlite3";
import { openSqliteQueries } from "../store/sqlite-queries.js";
import { CHART_POINTS, DAY_MS, DEVICES, deviceId, fill, fmt, PER_SERIES, SENSORS } from "./query-load.js";

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

/** Fills the one-year files beside `path` when missing, times the questions, returns a markdown table. */
export async function runYear(path: string, runs: number): Promise<string> {
  const files = [
    { name: "year.db", devices: DEVICES, perSeries: PER_SERIES },
    { name: "year-tenth.db", devices: DEVICES / 10, perSeries: PER_SERIES },
    { name: "year-dense.db", devices: DEVICES / 10, perSeries: PER_SERIES * 10 },
  ];
  const questions = [
    "`stats --every 1d` over a year, one series",
    `one-year chart of one series (<= ${fmt(CHART_POINTS)} points)`,
  ];
  const lines = [
    `| file | readings a series | question (median of ${runs}) | target | from the tiers | raw rows alone |`,
    "| --- | --- | --- | --- | --- | --- |",
  ];
  for (const f of files) {
    const file = path.replace(/(\.db)?$/, `-${f.name}`);
    if (!existsSync(file)) fill(file, Date.now(), YEAR_MS, f.devices, f.perSeries);
    const rows = fmt(f.devices * SENSORS.length * f.perSeries);
    try {
      setTierHorizons(file, 0);
      const tiers = await timeQuestions(file, f.devices, runs);
      setTierHorizons(file, Number.MAX_SAFE_INTEGER);
      const raw = await timeQuestions(file, f.devices, runs);
      for (const [i, question] of questions.entries()) {
        const cell = (x: number | undefined) => `${x?.toFixed(2)} ms`;
        lines.push(
          `| ${rows} rows | ${fmt(f.perSeries)} | ${question} | ${TARGET} | ${cell(tiers[i])} | ${cell(raw[i])} |`,
        );
      }
    } finally {
      setTierHorizons(file, 0);
    }
  }
  return lines.join("\n");
}
