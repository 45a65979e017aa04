/**
 * The store-outage tests' readings and lock: numbered readings of one series whose rows can be checked one by one,
 * and an analyst's write transaction on the SQLite file, during which the processor cannot commit.
 */
import Database from "better-sqlite3";
import mqtt from "mqtt";
import { expect, vi } from "vitest";
import { httpGet, readRows, type TestNames } from "./services.js";

/** Time of reading 0; reading i is measured at TS0 + i ms. */
export const TS0 = Date.UTC(2026, 0, 1);
/** Readings sent at once before a pause, so the processor sees them arrive over time, not as one burst. */
const CHUNK = 250;
const CHUNK_PAUSE_MS = 100;

/** Publishes readings `first` to `first + count - 1` of `dev-1/temperature` (value = seq = i, ts = TS0 + i) at QoS 1. */
export async function publishNumbered(names: TestNames, first: number, count: number): Promise<void> {
  const client = await mqtt.connectAsync(names.mqttUrl, { clean: true, reconnectPeriod: 0 });
  const topic = `${names.topicPrefix}/dev-1/temperature`;
  for (let start = first; start < first + count; start += CHUNK) {
    const chunk: Promise<unknown>[] = [];
    for (let i = start; i < Math.min(start + CHUNK, first + count); i++) {
      chunk.push(client.publishAsync(topic, JSON.stringify({ value: i, ts: TS0 + i, seq: i }), { qos: 1 }));
    }
    await Promise.all(chunk);
    await new Promise((r) => setTimeout(r, CHUNK_PAUSE_MS));
  }
  await client.endAsync();
}

/** The file holds readings 0 to `count - 1` of {@link publishNumbered}, each once, and nothing else. */
export function expectNumbered(dbPath: string, count: number): void {
  const rows = readRows(dbPath);
  expect(rows.map((r) => r.seq)).toEqual(Array.from({ length: count }, (_, i) => i));
  expect(rows.every((r) => r.value === r.seq && r.ts === TS0 + (r.seq ?? -1))).toBe(true);
}

/**
 * An analyst's `BEGIN IMMEDIATE` on the SQLite file: every commit of the processor fails with "database is locked"
 * until the returned function rolls it back.
 */
export function lockSqlite(dbPath: string): () => void {
  const analyst = new Database(dbPath);
  analyst.exec("BEGIN IMMEDIATE");
  return () => {
    analyst.exec("ROLLBACK");
    analyst.close();
  };
}

/** Resolves once the processor on `port` reports not ready because it cannot commit to the locked file. */
export async function untilLockedOut(port: number, timeoutMs: number): Promise<void> {
  await vi.waitFor(
    async () => {
      const r = await httpGet(port, "/readyz");
      expect(r.status).toBe(503);
      expect(r.body).toMatch(/cannot commit to SQLite: database is locked/);
    },
    { timeout: timeoutMs },
  );
}
