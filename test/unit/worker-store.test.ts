import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import Database from "better-sqlite3";
import { afterEach, describe, expect, it } from "vitest";
import type { Reading } from "../../schemas/index.js";
import type { ReadingStore } from "../../store/index.js";

// The worker thread runs the compiled store/sqlite-worker.js, so this test uses the build (npm test builds first).
const { WorkerStore } = (await import(
  new URL("../../dist/store/worker-store.js", import.meta.url).href
)) as typeof import("../../store/worker-store.js");

const reading = (i: number): Reading => ({
  device_id: "dev",
  sensor: "temp",
  ts: Date.UTC(2026, 0, 1) + i,
  value: i,
  unit: null,
  seq: i,
  gateway_id: "gw",
  received_at: Date.UTC(2026, 0, 1) + i,
});

describe("the processor's SQLite store on a worker thread", () => {
  const dirs: string[] = [];
  const stores: ReadingStore[] = [];
  const dir = () => {
    const d = mkdtempSync(join(tmpdir(), "telemetry-worker-store-"));
    dirs.push(d);
    return d;
  };
  afterEach(async () => {
    await Promise.all(stores.splice(0).map((s) => s.stop()));
    for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
  });

  it("commits a batch, and a second copy of it counts as duplicates", async () => {
    const path = join(dir(), "t.db");
    const store = await WorkerStore.open(path);
    stores.push(store);
    const batch = Array.from({ length: 50 }, (_, i) => reading(i));
    expect(await store.writeBatch(batch)).toEqual({ inserted: 50, duplicates: 0, conflicts: [], expired: 0 });
    expect(await store.writeBatch([...batch.slice(40), reading(50)])).toEqual({
      inserted: 1,
      duplicates: 10,
      conflicts: [],
      expired: 0,
    });
    const db = new Database(path, { readonly: true });
    expect(db.prepare("SELECT count(*) AS n FROM readings").get()).toEqual({ n: 51 });
    db.close();
  });

  it("a batch it cannot commit is refused with SQLite's error, and the next one goes through", async () => {
    const path = join(dir(), "t.db");
    const store = await WorkerStore.open(path);
    stores.push(store);
    const other = new Database(path);
    other.exec("BEGIN IMMEDIATE");
    await expect(store.writeBatch([reading(1)])).rejects.toThrow(/database is locked/);
    other.exec("ROLLBACK");
    other.close();
    expect(await store.writeBatch([reading(1)])).toEqual({
      inserted: 1,
      duplicates: 0,
      conflicts: [],
      expired: 0,
    });
  });

  it("carries expired readings with the horizon, and a tier's retention, to and from the worker", async () => {
    const path = join(dir(), "t.db");
    const store = await WorkerStore.open(path);
    stores.push(store);
    await store.writeBatch([reading(0), reading(120_000)]);
    expect(await store.deleteOlderThan(Date.UTC(2026, 0, 1) + 60_000, 100)).toBe(1);
    expect(await store.writeBatch([reading(1), reading(180_000)])).toEqual({
      inserted: 1,
      duplicates: 0,
      conflicts: [],
      expired: 1,
      horizon: Date.UTC(2026, 0, 1) + 60_000,
    });
    expect(await store.deleteTierOlderThan("rollup_1m", Date.UTC(2026, 0, 1) + 150_000, 100)).toBe(2);
    const db = new Database(path, { readonly: true });
    expect(db.prepare("SELECT start - ? AS start, count FROM rollup_1m").all(Date.UTC(2026, 0, 1))).toEqual([
      { start: 180_000, count: 1 },
    ]);
    db.close();
  });

  it("a database it cannot open fails at open with the path in the message", async () => {
    const file = join(dir(), "not-a-dir");
    writeFileSync(file, "");
    await expect(WorkerStore.open(join(file, "t.db"))).rejects.toThrow(
      /^cannot open database .*not-a-dir\/t\.db: /,
    );
  });
});
