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
import { startRetention } from "../../processor/retention.js";
import type { Reading } from "../../schemas/index.js";
import type { ReadingStore } from "../../store/index.js";
import { readRollup } from "../../store/sqlite-rollup.js";

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
});
