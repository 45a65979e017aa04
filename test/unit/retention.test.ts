import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Writable } from "node:stream";
import Database from "better-sqlite3";
import pino from "pino";
import { Registry } from "prom-client";
import { afterEach, describe, expect, it, vi } from "vitest";
import type { Running } from "../../common/pipeline.js";
import { processorCommand } from "../../processor/index.js";
import { processorMetrics } from "../../processor/metrics.js";
import { startRetention } from "../../processor/retention.js";
import { StoreSink } from "../../processor/store-sink.js";
import type { Reading } from "../../schemas/index.js";
import type { ReadingStore } from "../../store/index.js";
import { readRollup } from "../../store/sqlite-rollup.js";
import { type TierRow, tierFromReadingsSql } from "../../store/tiers.js";

// The worker thread runs the compiled store/sqlite-worker.js, so this test uses the build (npm test builds first).
const { WorkerStore } = (await import(
  new URL("../../dist/store/worker-store.js", import.meta.url).href
)) as typeof import("../../store/worker-store.js");

const DAY_MS = 86_400_000;
const NOW = Date.UTC(2026, 5, 1);
const RETENTION_MS = 30 * DAY_MS;
const CUTOFF = NOW - RETENTION_MS;

const reading = (i: number, ts: number): Reading => ({
  device_id: `dev-${i % 5}`,
  sensor: `s-${i % 2}`,
  ts,
  value: i,
  unit: "C",
  seq: i,
  gateway_id: "gw",
  received_at: ts,
});

/** A logger whose JSON lines the test can read. */
function capturedLogger() {
  const lines: Record<string, unknown>[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const l of chunk.toString().split("\n"))
        if (l) lines.push(JSON.parse(l) as Record<string, unknown>);
      done();
    },
  });
  return { log: pino({ level: "debug" }, stream), lines };
}

describe("retention (RETENTION)", () => {
  const dirs: string[] = [];
  const running: Running[] = [];
  afterEach(async () => {
    for (const r of running.splice(0).reverse()) await r.stop();
    for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
  });
  const openStore = async () => {
    const dir = mkdtempSync(join(tmpdir(), "telemetry-retention-"));
    dirs.push(dir);
    const path = join(dir, "t.db");
    const store: ReadingStore = await WorkerStore.open(path);
    running.push(store);
    return { store, path };
  };
  const count = (path: string, where = "1") => {
    const db = new Database(path, { readonly: true });
    try {
      return (db.prepare(`SELECT count(*) AS n FROM readings WHERE ${where}`).get() as { n: number }).n;
    } finally {
      db.close();
    }
  };

  it("deletes every reading older than the retention period in batches, keeps the rest, and the rollup follows", async () => {
    const { store, path } = await openStore();
    // 12,000 old readings a minute apart ending a minute before the cutoff, 3,000 newer ones from the cutoff on.
    const old = Array.from({ length: 12_000 }, (_, i) => reading(i, CUTOFF - (12_000 - i) * 60_000));
    const kept = Array.from({ length: 3_000 }, (_, i) => reading(i, CUTOFF + i * 1_000));
    await store.writeBatch([...old.slice(0, 6_000)]);
    await store.writeBatch([...old.slice(6_000), ...kept]);
    const registry = new Registry();
    const { log, lines } = capturedLogger();
    running.push(
      startRetention({ retentionMs: RETENTION_MS }, store, log, registry, {
        batchRows: 1_000,
        now: () => NOW,
      }),
    );

    await vi.waitFor(() => expect(count(path)).toBe(3_000), { timeout: 10_000, interval: 50 });
    expect(count(path, `ts < ${CUTOFF}`)).toBe(0);
    await vi.waitFor(() =>
      expect(lines.find((l) => l.msg === "retention pass deleted old readings")).toBeTruthy(),
    );
    expect(lines.find((l) => l.msg === "retention pass deleted old readings")).toMatchObject({
      deleted: 12_000,
      ms: expect.any(Number),
    });
    expect(await registry.getSingleMetricAsString("telemetry_processor_retention_deleted_total")).toMatch(
      /^telemetry_processor_retention_deleted_total 12000$/m,
    );
    const db = new Database(path, { readonly: true });
    const rolled = readRollup(db);
    const series = {
      first: Math.min(...rolled.map((s) => s.first_ts)),
      n: rolled.reduce((n, s) => n + s.count, 0),
      k: rolled.length,
    };
    db.close();
    expect(series).toEqual({ first: CUTOFF, n: 3_000, k: 10 });
  });

  it("checks again on its interval: readings that age past the cutoff later are deleted by a later pass", async () => {
    const { store, path } = await openStore();
    let now = NOW;
    const { log } = capturedLogger();
    running.push(
      startRetention({ retentionMs: RETENTION_MS }, store, log, new Registry(), {
        checkMs: 50,
        now: () => now,
      }),
    );
    await store.writeBatch(Array.from({ length: 100 }, (_, i) => reading(i, CUTOFF + DAY_MS + i)));
    await vi.waitFor(() => expect(count(path)).toBe(100));
    now += 2 * DAY_MS; // the clock moves on: these readings are now older than the retention period
    await vi.waitFor(() => expect(count(path)).toBe(0), { timeout: 5_000, interval: 50 });
  });

  it("RETENTION takes days (90d) and refuses a bare number, which would be milliseconds", () => {
    const validate = processorCommand.validate;
    if (!validate) throw new Error("the processor command validates its configuration");
    const ok = validate(["--retention", "90d"], {});
    expect(ok.problems).toEqual([]);
    expect(ok.config?.retentionMs).toBe(90 * DAY_MS);
    expect(ok.effective?.RETENTION).toBe("90d");
    expect(validate([], { RETENTION: "36h" }).config?.retentionMs).toBe(36 * 3_600_000);
    expect(validate([], {}).effective?.RETENTION).toBe("(unset)");
    const bad = validate([], { RETENTION: "90" });
    expect(bad.problems).toHaveLength(1);
    expect(bad.problems[0]).toMatch(/RETENTION.*must be between 1h and 36500d/);
  });

  it("RETENTION_1M, RETENTION_1H and RETENTION_1D (--retention-1m ...) take the same durations, and unset keep", () => {
    const validate = processorCommand.validate;
    if (!validate) throw new Error("the processor command validates its configuration");
    const ok = validate(["--retention-1m", "30d"], { RETENTION_1H: "730d", RETENTION_1D: "3650d" });
    expect(ok.problems).toEqual([]);
    expect(ok.config).toMatchObject({
      retention1mMs: 30 * DAY_MS,
      retention1hMs: 730 * DAY_MS,
      retention1dMs: 3_650 * DAY_MS,
    });
    expect(ok.effective?.RETENTION_1M).toBe("30d");
    const unset = validate([], {});
    expect([
      unset.effective?.RETENTION_1M,
      unset.effective?.RETENTION_1H,
      unset.effective?.RETENTION_1D,
    ]).toEqual(["(unset)", "(unset)", "(unset)"]);
    const bad = validate([], { RETENTION_1H: "30m" });
    expect(bad.problems).toHaveLength(1);
    expect(bad.problems[0]).toMatch(/RETENTION_1H.*must be between 1h and 36500d/);
  });

  it("RETENTION=1d deletes the raw rows of three days, and the hourly and daily tiers stay exact; RETENTION_1M=2d deletes old minutes", async () => {
    const { store, path } = await openStore();
    // Three days of two series, a reading every 5 minutes with a fractional value, in batches out of time order.
    const start = NOW - 3 * DAY_MS;
    const all = Array.from({ length: 2 * 3 * 288 }, (_, i) => ({
      ...reading(i, start + Math.floor(i / 2) * 300_000),
      sensor: `s-${i % 2}`,
      device_id: "dev",
      value: Math.round(Math.sin(i) * 10_000) / 100,
    }));
    for (let b = 0; b < all.length; b += 250) await store.writeBatch(all.slice(b, b + 250).reverse());
    // What a recomputation from every reading gives, from a copy of them that retention does not touch.
    const shadow = new Database(":memory:");
    shadow.exec(
      "CREATE TABLE readings (device_id TEXT, sensor TEXT, ts INTEGER, value REAL, PRIMARY KEY (device_id, sensor, ts))",
    );
    const copy = shadow.prepare("INSERT INTO readings VALUES (?, ?, ?, ?)");
    for (const r of all) copy.run(r.device_id, r.sensor, r.ts, r.value);
    const expected = (ms: number, where = "") =>
      shadow.prepare(tierFromReadingsSql(ms, where)).all() as TierRow[];

    const registry = new Registry();
    const { log, lines } = capturedLogger();
    running.push(
      startRetention({ retentionMs: DAY_MS, retention1mMs: 2 * DAY_MS }, store, log, registry, {
        batchRows: 100,
        now: () => NOW,
      }),
    );
    const minuteCutoff = NOW - 2 * DAY_MS; // a whole minute already, as the pass rounds it
    await vi.waitFor(
      () => {
        expect(count(path, `ts < ${NOW - DAY_MS}`)).toBe(0);
        expect(lines.find((l) => l.msg === "retention pass deleted old rollup_1m rows")).toBeTruthy();
      },
      { timeout: 10_000, interval: 50 },
    );
    expect(count(path)).toBe(2 * 288); // the last day's, 288 a series
    const db = new Database(path, { readonly: true });
    try {
      const tier = (table: string, where = "") =>
        db.prepare(`SELECT * FROM ${table} ${where} ORDER BY device_id, sensor, start`).all() as TierRow[];
      const same = (actual: TierRow[], wanted: TierRow[]) => {
        // count, min, max, first and last exactly; sum is a float sum (other order), within a relative 1e-9
        expect(actual.map((r) => ({ ...r, sum: 0 }))).toEqual(wanted.map((r) => ({ ...r, sum: 0 })));
        actual.forEach((r, i) => {
          const want = (wanted[i] as TierRow).sum;
          expect(Math.abs(r.sum - want)).toBeLessThanOrEqual(1e-9 * Math.max(1, Math.abs(want)));
        });
      };
      same(tier("rollup_1h"), expected(3_600_000));
      same(tier("rollup_1d"), expected(DAY_MS));
      expect(tier("rollup_1h")).toHaveLength(2 * 72);
      expect(tier("rollup_1d")).toHaveLength(2 * 3);
      expect(tier("rollup_1m", `WHERE start < ${minuteCutoff}`)).toEqual([]);
      same(tier("rollup_1m"), expected(60_000, `WHERE ts >= ${minuteCutoff}`));
    } finally {
      db.close();
    }
    expect(
      await registry.getSingleMetricAsString("telemetry_processor_tier_retention_deleted_total"),
    ).toMatch(/^telemetry_processor_tier_retention_deleted_total\{tier="1m"\} 576$/m);
    shadow.close();
  });
});

describe("a tier's retention pass that fails", () => {
  it("is logged with its tier and tried again at the next check, while the other kinds go on", async () => {
    const calls: string[] = [];
    let failures = 1;
    const store: ReadingStore = {
      writeBatch: async () => ({ inserted: 0, duplicates: 0, conflicts: [], expired: 0 }),
      deleteOlderThan: async () => {
        calls.push("readings");
        return 0;
      },
      deleteTierOlderThan: async (table, cutoff) => {
        calls.push(`${table} ${new Date(cutoff).toISOString()}`);
        if (table === "rollup_1h" && failures-- > 0) throw new Error("disk I/O error");
        return 0;
      },
      stop: async () => undefined,
      [Symbol.asyncDispose]: async () => undefined,
    };
    const { log, lines } = capturedLogger();
    const now = Date.UTC(2026, 5, 1, 12, 34, 56);
    const retention = startRetention(
      { retentionMs: DAY_MS, retention1hMs: 2 * DAY_MS, retention1dMs: 3 * DAY_MS },
      store,
      log,
      new Registry(),
      { checkMs: 20, now: () => now },
    );
    try {
      await vi.waitFor(() =>
        expect(calls.filter((c) => c.startsWith("rollup_1h")).length).toBeGreaterThanOrEqual(2),
      );
    } finally {
      await retention.stop();
    }
    // Each tier's cutoff is rounded down to its bucket: whole hours and days only.
    expect(calls.slice(0, 3)).toEqual([
      "readings",
      "rollup_1h 2026-05-30T12:00:00.000Z",
      "rollup_1d 2026-05-29T00:00:00.000Z",
    ]);
    expect(
      lines.find((l) => l.msg === "retention pass failed; trying again at the next check"),
    ).toMatchObject({
      tier: "1h",
      err: "disk I/O error",
    });
  });
});

describe("expired readings (below what retention already deleted)", () => {
  it("are counted, logged once per batch with the horizon, and acked, not dead-lettered", async () => {
    const horizon = Date.UTC(2026, 4, 1);
    const store: ReadingStore = {
      writeBatch: async (readings) => ({
        inserted: readings.length - 2,
        duplicates: 0,
        conflicts: [],
        expired: 2,
        horizon,
      }),
      deleteOlderThan: async () => 0,
      deleteTierOlderThan: async () => 0,
      stop: async () => undefined,
      [Symbol.asyncDispose]: async () => undefined,
    };
    const registry = new Registry();
    const { log, lines } = capturedLogger();
    const sink = new StoreSink({
      store,
      storeName: "test",
      batchSize: 5,
      batchDelayMs: 10,
      drainTimeoutMs: 1_000,
      log,
      metrics: processorMetrics(registry),
    });
    const acked: number[] = [];
    const failed: number[] = [];
    for (let i = 0; i < 5; i++)
      sink.write({
        item: reading(i, horizon - DAY_MS + i),
        ack: () => acked.push(i),
        fail: () => failed.push(i),
      });
    await vi.waitFor(() => expect(acked).toHaveLength(5));
    await sink.stop();
    expect(failed).toEqual([]);
    expect(await registry.getSingleMetricAsString("telemetry_processor_expired_total")).toMatch(
      /^telemetry_processor_expired_total 2$/m,
    );
    const warned = lines.filter(
      (l) => l.msg === "readings older than what retention already deleted were not stored",
    );
    expect(warned).toHaveLength(1);
    expect(warned[0]).toMatchObject({ level: 40, expired: 2, horizon: "2026-05-01T00:00:00.000Z" });
  });
});
