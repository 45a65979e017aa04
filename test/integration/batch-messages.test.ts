import { readFileSync } from "node:fs";
import amqp from "amqplib";
import avro from "avsc";
import { describe, expect, it } from "vitest";
import { queueNames } from "../../amqp/topology.js";
import { canonicalForm, crc64Avro } from "../../schemas/index.js";
import { metric, until } from "../helpers/fault-stream.js";
import { pipelineOn } from "../helpers/private-pipeline.js";
import { countRows, readRows, type TestNames, testNames, untilReady } from "../helpers/services.js";

const SCHEMA_DIR = new URL("../../schemas/", import.meta.url);
const TS0 = Date.UTC(2026, 2, 1);
const AVRO_CONTENT_TYPE = "application/vnd.apache.avro+binary";

type Schema = Record<string, unknown>;
const schemaFile = (file: string) => JSON.parse(readFileSync(new URL(file, SCHEMA_DIR), "utf8")) as Schema;

/** A message body as any Avro library writes it (plain avsc and the .avsc files, not the product's codec). */
function singleObject(schema: Schema, datum: Record<string, unknown>): Buffer {
  const type = avro.Type.forSchema(schema as avro.Schema);
  const fingerprint = crc64Avro(canonicalForm(schema));
  return Buffer.concat([Buffer.from([0xc3, 0x01]), fingerprint, type.toBuffer(datum)]);
}

const v1 = schemaFile("reading.v1.avsc");
const v2 = schemaFile("reading.v2.avsc");
const batchV1 = schemaFile("reading-batch.v1.avsc");

function reading(device: string, i: number, extra: Record<string, unknown> = {}) {
  return {
    device_id: device,
    sensor: "temperature",
    ts: TS0 + i,
    value: i / 4,
    unit: "C",
    seq: i,
    gateway_id: "gw-test",
    received_at: TS0 + i + 3,
    ...extra,
  };
}

async function publishAll(names: TestNames, bodies: readonly Buffer[]): Promise<void> {
  const conn = await amqp.connect(names.amqpUrl);
  try {
    const ch = await conn.createConfirmChannel();
    for (const body of bodies) {
      ch.sendToQueue(names.queue, body, { persistent: true, contentType: AVRO_CONTENT_TYPE });
    }
    await ch.waitForConfirms();
  } finally {
    await conn.close();
  }
}

describe("batch messages on the queue", () => {
  it("single-reading messages of versions 1 and 2 and batch messages, mixed on one queue, are all stored exactly; a bad reading in a batch goes to .dead alone", async () => {
    await using run = pipelineOn(testNames("batch-mixed"));
    const { names } = run;
    const processor = await run.processor();
    await untilReady(processor);
    const bodies: Buffer[] = [];
    const expected: { device_id: string; ts: number; value: number; quality: string; tags: string }[] = [];
    let i = 0;
    for (let round = 0; round < 20; round++) {
      const a = reading("dev-v1", i++);
      bodies.push(singleObject(v1, a));
      expected.push({ device_id: a.device_id, ts: a.ts, value: a.value, quality: "good", tags: "{}" });
      const b = reading("dev-v2", i++, { quality: "uncertain", tags: { site: "north" } });
      bodies.push(singleObject(v2, b));
      expected.push({
        device_id: b.device_id,
        ts: b.ts,
        value: b.value,
        quality: "uncertain",
        tags: '{"site":"north"}',
      });
      const batch = Array.from({ length: 25 }, () =>
        reading("dev-batch", i++, { quality: "good", tags: {} }),
      );
      bodies.push(singleObject(batchV1, { readings: batch }));
      for (const r of batch)
        expected.push({ device_id: r.device_id, ts: r.ts, value: r.value, quality: "good", tags: "{}" });
    }
    // One batch whose middle reading breaks the id rules: the other two are stored, that one set aside.
    const good1 = reading("dev-mixed", i++, { quality: "good", tags: {} });
    const bad = reading("dev mixed", i++, { quality: "good", tags: {} });
    const good2 = reading("dev-mixed", i++, { quality: "bad", tags: {} });
    bodies.push(singleObject(batchV1, { readings: [good1, bad, good2] }));
    expected.push({
      device_id: good1.device_id,
      ts: good1.ts,
      value: good1.value,
      quality: "good",
      tags: "{}",
    });
    expected.push({
      device_id: good2.device_id,
      ts: good2.ts,
      value: good2.value,
      quality: "bad",
      tags: "{}",
    });
    await publishAll(names, bodies);

    const dbPath = names.dbPath;
    await until("every valid reading is stored", 20_000, async () => countRows(dbPath) >= expected.length);
    const rows = readRows(dbPath).map((r) => ({
      device_id: r.device_id,
      ts: r.ts,
      value: r.value,
      quality: r.quality,
      tags: r.tags,
    }));
    const byKey = (a: { device_id: string; ts: number }, b: { device_id: string; ts: number }) =>
      a.device_id.localeCompare(b.device_id) || a.ts - b.ts;
    expect(rows.sort(byKey)).toEqual(expected.sort(byKey));
    await until("the bad reading is dead-lettered", 10_000, async () => {
      return (await metric(processor.httpPort, "telemetry_processor_readings_received_total")) === i;
    });

    const conn = await amqp.connect(names.amqpUrl);
    try {
      const ch = await conn.createChannel();
      const dead = queueNames(names.queue).dead;
      await until(
        "the dead letter is on .dead",
        10_000,
        async () => (await ch.checkQueue(dead)).messageCount === 1,
      );
      const msg = await ch.get(dead, { noAck: true });
      expect(msg).not.toBe(false);
      if (msg === false) return;
      expect(msg.properties.headers?.["x-failure-kind"]).toBe("invalid");
      expect(msg.properties.headers?.["x-failure-reason"]).toBe("device_id breaks the id rules");
      // On its own, as a single-reading message of the current version that any Avro library reads.
      expect(msg.content.subarray(2, 10)).toEqual(crc64Avro(canonicalForm(v2)));
      expect(avro.Type.forSchema(v2 as avro.Schema).fromBuffer(msg.content.subarray(10))).toMatchObject({
        device_id: "dev mixed",
        ts: bad.ts,
        value: bad.value,
      });
    } finally {
      await conn.close();
    }
  });

  it("a processor killed in the middle of a batch of batch messages: after a restart every reading is stored once, redelivered ones counted as duplicates", async () => {
    await using run = pipelineOn(testNames("batch-kill"));
    const { names } = run;
    const MESSAGES = 100;
    const PER_MESSAGE = 200;
    const bodies = Array.from({ length: MESSAGES }, (_, m) =>
      singleObject(batchV1, {
        readings: Array.from({ length: PER_MESSAGE }, (_, k) =>
          reading(`dev-${m % 10}`, m * PER_MESSAGE + k, { quality: "good", tags: {} }),
        ),
      }),
    );
    // Large, slow transactions that end inside a message (1,500 readings, 200 per message), so that readings are delivered and not yet committed when the kill lands, some of them from a message partly committed.
    const env = { BATCH_SIZE: "1500", BATCH_DELAY: "2s" };
    const first = await run.processor(env);
    await untilReady(first);
    await publishAll(names, bodies);
    let openAtKill = 0;
    await until("a transaction has committed and the next one is open", 30_000, async () => {
      const stored = await metric(first.httpPort, "telemetry_processor_readings_stored_total");
      openAtKill = await metric(first.httpPort, "telemetry_processor_inflight_readings");
      return stored > 0 && openAtKill >= 500;
    });
    expect(await first.stop("SIGKILL")).toBeNull();
    const storedAtKill = countRows(names.dbPath);
    expect(storedAtKill, "the kill must land mid-stream").toBeLessThan(MESSAGES * PER_MESSAGE);

    const second = await run.processor(env);
    const dbPath = names.dbPath;
    await until("every reading is stored", 60_000, async () => countRows(dbPath) >= MESSAGES * PER_MESSAGE);
    const rows = readRows(dbPath);
    expect(rows).toHaveLength(MESSAGES * PER_MESSAGE);
    expect(new Set(rows.map((r) => r.ts)).size).toBe(MESSAGES * PER_MESSAGE);
    const s = second;
    await until("the restarted processor holds nothing", 20_000, async () => {
      return (await metric(s.httpPort, "telemetry_processor_inflight_deliveries")) === 0;
    });
    const received = await metric(second.httpPort, "telemetry_processor_readings_received_total");
    const stored = await metric(second.httpPort, "telemetry_processor_readings_stored_total");
    const duplicates = await metric(second.httpPort, "telemetry_processor_duplicates_total");
    expect(stored).toBe(MESSAGES * PER_MESSAGE - storedAtKill);
    // Whole batch messages come again: what the first processor committed from them is absorbed by the key.
    expect(received).toBe(stored + duplicates);
    console.log(
      `[fault counts] processor killed mid-batch of batch messages: ${JSON.stringify({
        readings: MESSAGES * PER_MESSAGE,
        storedAtKill,
        openAtKill,
        storedAfterRestart: stored,
        duplicates,
      })}`,
    );
  });
});
