/**
 * `npm run bench:tier-write -- [--rounds N] [--per-series N] [--fold N]`: what keeping the rollup tiers costs a
 * SQLite write of a fleet's batches, in one process, three ways (issue 27: at most 15% of the processor's throughput):
 *
 * - `none`: the readings alone (the same INSERT as SqliteStore);
 * - `per write`: the product's way, the tiers in each batch's transaction (TierWriter.add: a row per reading and
 *   tier when each reading of a batch is its own series);
 * - `fold`: a design not in the product, measured to see whether it would meet the target. Each batch only notes,
 *   per series, the ts range it inserted into; every `--fold` readings one transaction reads those ranges back from
 *   `readings` (the rows stored after the last fold, by `stored_at`) and adds them to the tiers, so a row per
 *   series and bucket is written once per fold instead of once per reading. Queries would answer the noted ranges
 *   from raw rows until folded; that side is not built or measured here.
 *
 * 1,000 devices x 4 sensors, a reading every 10 s each, in batches of 500 (each reading of a batch its own series,
 * as `npm run bench`'s stores part). Variants alternate within each round, a new file each; CPU of this process.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import type Database from "better-sqlite3";
import { openDatabase } from "../store/sqlite.js";
import { TierWriter } from "../store/sqlite-tiers.js";
import type { TierInput } from "../store/tiers.js";
import { deviceName, sensorName } from "./publisher.js";
import { fmt, markdownTable, median, round, say } from "./util.js";

const DEVICES = 1_000;
const SENSORS = 4;
const BATCH = 500;
const INTERVAL_MS = 10_000;
const T0 = Date.UTC(2026, 0, 1);

const USAGE = `Usage: npm run bench:tier-write -- [options]   (or: node dist/bench/tier-write.js [options])

SQLite writes of a fleet's batches (1,000 devices x 4 sensors, batches of 500) with no rollup tiers, with the
tiers per write (the product) and with a fold every N readings (a design not in the product); CPU per reading.

  --rounds N       rounds, the three ways alternating within each (default 5)
  --per-series N   readings of each series, 10 s apart (default 40: 160,000 readings)
  --fold N         readings between folds (default 60000)
  --help           this text`;

const { values } = parseArgs({
  options: {
    rounds: { type: "string", default: "5" },
    "per-series": { type: "string", default: "40" },
    fold: { type: "string", default: "60000" },
    help: { type: "boolean", default: false },
  },
});
if (values.help) {
  console.log(USAGE);
  process.exit(0);
}
/** A whole number of at least 1, or the usage and exit 2. */
function count(name: string, text: string): number {
  const n = Number(text);
  if (Number.isInteger(n) && n >= 1) return n;
  console.error(`--${name} must be a whole number of at least 1, not ${JSON.stringify(text)}\n\n${USAGE}`);
  process.exit(2);
}
const rounds = count("rounds", values.rounds);
const perSeries = count("per-series", values["per-series"]);
const foldEvery = count("fold", values.fold);

const COLUMNS = "device_id, sensor, ts, value, unit, seq, gateway_id, received_at, stored_at, quality, tags";

type Variant = "none" | "per write" | "fold";

function readings(): TierInput[] {
  const out: TierInput[] = [];
  for (let k = 0; k < perSeries; k++) {
    for (let j = 0; j < DEVICES * SENSORS; j++) {
      out.push({
        device_id: deviceName("bench", Math.floor(j / SENSORS)),
        sensor: sensorName(j % SENSORS),
        ts: T0 + k * INTERVAL_MS,
        value: ((k * 7 + j) % 1_000) / 10,
      });
    }
  }
  return out;
}

/** Writes every reading in batches the variant's way; returns CPU µs per reading. */
function run(variant: Variant, db: Database.Database, all: readonly TierInput[]): number {
  const insert = db.prepare(
    `INSERT INTO readings (${COLUMNS}) VALUES (?, ?, ?, ?, 'C', NULL, 'bench', ?, ?, 'good', '{}') ON CONFLICT DO NOTHING`,
  );
  const tiers = new TierWriter(db);
  const range = db
    .prepare<[string, string, number, number, number], [number, number]>(
      "SELECT ts, value FROM readings WHERE device_id = ? AND sensor = ? AND ts >= ? AND ts <= ? AND stored_at > ?",
    )
    .raw();
  /** Per series (device NUL sensor), the ts range inserted since the last fold. */
  const dirty = new Map<string, [number, number]>();
  let generation = 0;
  let folded = 0;
  let pending = 0;
  const write = db.transaction((batch: readonly TierInput[]) => {
    generation++;
    const added: TierInput[] = [];
    if (variant === "per write") tiers.begin();
    for (const r of batch) {
      if (insert.run(r.device_id, r.sensor, r.ts, r.value, r.ts + 5, generation).changes === 0) continue;
      if (variant === "per write") added.push(r);
      else if (variant === "fold") {
        const key = `${r.device_id}\u0000${r.sensor}`;
        const had = dirty.get(key);
        if (had === undefined) dirty.set(key, [r.ts, r.ts]);
        else {
          if (r.ts < had[0]) had[0] = r.ts;
          if (r.ts > had[1]) had[1] = r.ts;
        }
        pending++;
      }
    }
    if (variant === "per write") tiers.add(added);
  });
  const fold = db.transaction(() => {
    tiers.begin();
    const rows: TierInput[] = [];
    for (const [key, [lo, hi]] of dirty) {
      const [device_id, sensor] = key.split("\u0000") as [string, string];
      for (const [ts, value] of range.all(device_id, sensor, lo, hi, folded))
        rows.push({ device_id, sensor, ts, value });
    }
    tiers.add(rows);
    dirty.clear();
    folded = generation;
    pending = 0;
  });
  const started = process.cpuUsage();
  for (let i = 0; i < all.length; i += BATCH) {
    write.immediate(all.slice(i, i + BATCH));
    if (variant === "fold" && pending >= foldEvery) fold.immediate();
  }
  if (variant === "fold" && pending > 0) fold.immediate();
  const used = process.cpuUsage(started);
  // Both ways must give tiers that count every row, and none must leave them empty.
  const stored = db.prepare<[], number>("SELECT count(*) FROM readings").pluck().get() as number;
  const counted = db.prepare<[], number | null>("SELECT sum(count) FROM rollup_1d").pluck().get() ?? 0;
  if (stored !== all.length || counted !== (variant === "none" ? 0 : stored))
    throw new Error(`${variant}: ${stored} rows for ${all.length} readings, rollup_1d counts ${counted}`);
  return (used.user + used.system) / all.length;
}

function main(): void {
  const all = readings();
  const dir = mkdtempSync(join(tmpdir(), "tier-write-"));
  const variants: Variant[] = ["none", "per write", "fold"];
  const us = new Map<Variant, number[]>(variants.map((v) => [v, []]));
  say(
    `tier-write: ${fmt(all.length)} readings of ${fmt(DEVICES * SENSORS)} series, batches of ${BATCH}, fold every ${fmt(foldEvery)}, ${rounds} round${rounds === 1 ? "" : "s"}`,
  );
  try {
    for (let r = 0; r < rounds; r++) {
      for (const v of r % 2 === 0 ? variants : [...variants].reverse()) {
        const path = join(dir, `${r}-${v.replace(" ", "-")}.db`);
        const db = openDatabase(path);
        try {
          const cpu = run(v, db, all);
          us.get(v)?.push(cpu);
          say(`  round ${r + 1}, ${v}: ${round(cpu, 2)} µs CPU a reading`);
        } finally {
          db.close();
        }
        for (const suffix of ["", "-wal", "-shm"]) rmSync(`${path}${suffix}`, { force: true });
      }
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  const none = median(us.get("none") ?? []);
  console.log(
    markdownTable(
      ["", ">CPU µs a reading, median", "rounds", ">x none"],
      variants.map((v) => {
        const xs = us.get(v) ?? [];
        return [
          v,
          String(round(median(xs), 2)),
          xs.map((x) => round(x, 2)).join(", "),
          String(round(median(xs) / none, 2)),
        ];
      }),
    ).join("\n"),
  );
}

main();
