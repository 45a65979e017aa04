import { readFileSync } from "node:fs";
import amqp from "amqplib";
import { expect, vi } from "vitest";
import { queueNames } from "../../amqp/topology.js";
import type { Stream, StreamCounts } from "./fault-stream.js";
import type { PgDatabase } from "./postgres.js";
import type { TestNames } from "./services.js";

interface Recorded {
  deviceId: string;
  sensor: string;
  ts: number;
  value: number;
  unit: string | null;
  seq: number;
}

interface PgRow {
  device_id: string;
  sensor: string;
  ts: string;
  value: number;
  unit: string | null;
  seq: string | null;
  gateway_id: string;
}

const key = (device: string, sensor: string, ts: number) => `${device}\0${sensor}\0${ts}`;

/**
 * fault-stream.ts's `expectStoredExactlyOnce` for a PostgreSQL store: waits until the rows of `db` reach the
 * readings acknowledged to the simulator, then checks that the keys are exactly the recorded ones (none missing,
 * none extra, none twice) with the values sent and the test's gateway id, and that `<QUEUE>` and `<QUEUE>.dead`
 * are empty.
 */
export async function expectStoredExactlyOnceInPostgres(
  names: TestNames,
  db: PgDatabase,
  stream: Stream,
  timeoutMs = 30_000,
): Promise<StreamCounts> {
  const done = await stream.done;
  expect(done.unacked, "publishes the MQTT broker never acknowledged").toBe(0);
  const sent = readFileSync(stream.recordPath, "utf8")
    .split("\n")
    .filter(Boolean)
    .map((l) => JSON.parse(l) as Recorded);
  expect(sent).toHaveLength(done.validAcked);
  const sentKeys = new Set(sent.map((s) => key(s.deviceId, s.sensor, s.ts)));
  expect(sentKeys.size, "the simulator recorded a key twice").toBe(sent.length);

  const count = async () =>
    (await db.query<{ n: number }>("SELECT count(*)::int AS n FROM readings"))[0]?.n ?? 0;
  // On a timeout, go on: the comparison below says which readings are missing.
  await vi
    .waitFor(async () => expect(await count()).toBeGreaterThanOrEqual(sent.length), {
      timeout: timeoutMs,
      interval: 250,
    })
    .catch(() => undefined);
  const rows = await db.query<PgRow>(
    "SELECT device_id, sensor, ts, value, unit, seq, gateway_id FROM readings ORDER BY device_id, sensor, ts",
  );
  const byKey = new Map(rows.map((r) => [key(r.device_id, r.sensor, Number(r.ts)), r]));
  expect(byKey.size, "a (device, sensor, ts) stored twice").toBe(rows.length);
  const missing = sent.filter((s) => !byKey.has(key(s.deviceId, s.sensor, s.ts)));
  const extra = rows.filter((r) => !sentKeys.has(key(r.device_id, r.sensor, Number(r.ts))));
  const differing = sent.filter((s) => {
    const r = byKey.get(key(s.deviceId, s.sensor, s.ts));
    return (
      r &&
      (r.value !== s.value ||
        r.unit !== s.unit ||
        (r.seq === null ? null : Number(r.seq)) !== s.seq ||
        r.gateway_id !== names.gatewayId)
    );
  });
  expect({ missing: missing.length, extra: extra.length, differing: differing.length }).toEqual({
    missing: 0,
    extra: 0,
    differing: 0,
  });
  expect(rows).toHaveLength(sent.length);

  const conn = await amqp.connect(names.amqpUrl);
  conn.on("error", () => undefined);
  try {
    const ch = await conn.createChannel();
    const q = queueNames(names.queue);
    await vi.waitFor(async () => expect((await ch.checkQueue(q.readings)).messageCount).toBe(0), {
      timeout: 10_000,
    });
    expect((await ch.checkQueue(q.dead)).messageCount).toBe(0);
  } finally {
    await conn.close().catch(() => undefined);
  }
  return { sent: done.sent, acknowledged: done.acked, stored: rows.length };
}
