import { spawn } from "node:child_process";
import { join } from "node:path";
import amqp from "amqplib";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { SchemaRegistry } from "../../schemas/index.js";
import { CLI } from "../../scripts/spawn.js";
import { SqliteStore } from "../../store/sqlite.js";
import {
  cleanup,
  countRows,
  readRows,
  type Service,
  startService,
  type TestNames,
  testNames,
} from "../helpers/services.js";

/** Rows written before the processor starts, so the copy takes many steps while the processor commits. */
const PREFILL = 300_000;
const TS0 = Date.UTC(2026, 4, 1);

const reading = (device: string, i: number) => ({
  device_id: device,
  sensor: "temp",
  ts: TS0 + i,
  value: i,
  unit: "C",
  seq: i,
  gateway_id: "edge-b",
  received_at: TS0 + i,
  quality: "good" as const,
  tags: {},
});

describe("telemetry backup", () => {
  let names: TestNames;
  let processor: Service;
  let conn: amqp.ChannelModel;

  beforeAll(async () => {
    names = testNames("opsbackup");
    const store = new SqliteStore(names.dbPath);
    for (let i = 0; i < PREFILL; i += 10_000) {
      store.writeBatch(Array.from({ length: 10_000 }, (_, j) => reading("dev-old", i + j)));
    }
    store.db.close();
    processor = await startService("processor", names.env);
    conn = await amqp.connect(names.amqpUrl);
  });

  afterAll(async () => {
    await conn?.close();
    await processor?.stop();
    await cleanup(names);
  });

  it("a copy taken while the processor writes opens, passes SQLite's check and holds every row committed before it began", async () => {
    const schemas = SchemaRegistry.load();
    const ch = await conn.createConfirmChannel();
    let writing = true;
    let sent = 0;
    const feed = (async () => {
      while (writing) {
        for (let j = 0; j < 200; j++, sent++) {
          ch.sendToQueue(names.queue, schemas.encode(reading("dev-new", sent)), { persistent: true });
        }
        await ch.waitForConfirms();
      }
    })();
    await vi.waitFor(() => expect(countRows(names.dbPath)).toBeGreaterThan(PREFILL + 1_000), {
      timeout: 20_000,
    });

    const committedBefore = new Set(readRows(names.dbPath).map((r) => `${r.device_id}/${r.ts}`));
    const target = join(names.dir, "copy.db");
    const backup = spawn(process.execPath, [CLI, "backup", target], {
      env: { ...process.env, ...names.env },
    });
    let stderr = "";
    backup.stderr.on("data", (c: Buffer) => {
      stderr += c.toString();
    });
    const code = await new Promise((resolve) => backup.once("exit", resolve));
    const committedAfter = countRows(names.dbPath);
    writing = false;
    await feed;

    expect(code, stderr).toBe(0);
    expect(stderr).toMatch(/^backup: \d+% \(\d+ of \d+ pages\)$/m);
    expect(stderr).toMatch(/^backup: 100% \(\d+ pages, [\d.]+ MiB, \d+ rows, quick check ok\)/m);
    // The processor went on committing while the copy was taken.
    expect(committedAfter).toBeGreaterThan(committedBefore.size);

    const copied = new Set(readRows(target).map((r) => `${r.device_id}/${r.ts}`));
    const missing = [...committedBefore].filter((k) => !copied.has(k));
    expect(missing).toEqual([]);
    expect(copied.size).toBeLessThanOrEqual(committedAfter);
  });

  it("refuses to overwrite an existing file: exit 1, the file untouched", async () => {
    const { code, stderr } = await new Promise<{ code: number | null; stderr: string }>((resolve) => {
      const p = spawn(process.execPath, [CLI, "backup", names.dbPath], {
        env: { ...process.env, ...names.env },
      });
      let err = "";
      p.stderr.on("data", (c: Buffer) => {
        err += c.toString();
      });
      p.once("exit", (c) => resolve({ code: c, stderr: err }));
    });
    expect(code).toBe(1);
    expect(stderr).toContain("already exists; give a new file");
    expect(countRows(names.dbPath)).toBeGreaterThan(PREFILL);
  });

  it("without FILE it exits 2 before opening anything", async () => {
    const p = spawn(process.execPath, [CLI, "backup"], { env: { ...process.env, ...names.env } });
    let err = "";
    p.stderr.on("data", (c: Buffer) => {
      err += c.toString();
    });
    expect(await new Promise((resolve) => p.once("exit", resolve))).toBe(2);
    expect(err).toBe("telemetry backup: FILE is missing\n");
  });
});
