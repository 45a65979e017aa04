import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Reading } from "../../schemas/index.js";
import { SqliteStore } from "../../store/sqlite.js";

/** A reading as the processor would store it; `extra` overrides any field. */
export function reading(
  device_id: string,
  sensor: string,
  ts: number,
  value: number,
  extra: Partial<Reading> = {},
): Reading {
  return {
    device_id,
    sensor,
    ts,
    value,
    unit: sensor === "temperature" ? "C" : sensor === "humidity" ? "%" : null,
    seq: null,
    gateway_id: "gw-test",
    received_at: ts + 5,
    ...extra,
  };
}

/**
 * A SQLite file of its own in a temporary folder, written only through the product's store (SqliteStore, as the
 * processor writes); `dispose()` closes it and deletes the folder.
 */
export interface QueryDb {
  readonly path: string;
  write(readings: readonly Reading[]): Promise<void>;
  dispose(): Promise<void>;
}

export function queryDb(prefix = "query-test-"): QueryDb {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  const path = join(dir, "telemetry.db");
  const store = new SqliteStore(path);
  return {
    path,
    async write(readings) {
      await store.writeBatch(readings);
    },
    async dispose() {
      await store.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
