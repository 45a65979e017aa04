import { copyFileSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import amqp from "amqplib";
import avro from "avsc";
import mqtt from "mqtt";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { queueNames } from "../../amqp/topology.js";
import { canonicalForm, crc64Avro } from "../../schemas/index.js";
import {
  cleanup,
  countRows,
  httpGet,
  type Row,
  readRows,
  type Service,
  startPipeline,
  startService,
  type TestNames,
  testNames,
} from "../helpers/services.js";

const SCHEMA_DIR = new URL("../../schemas/", import.meta.url);
const TS0 = Date.UTC(2026, 0, 1);
/** Readings of each version, interleaved on the queue. */
const PER_VERSION = 150;
const QUALITY = ["good", "uncertain", "bad"] as const;
/** reading.v1.avsc's fingerprint as Apache Avro Java computes it (schemas/README.md). */
const V1_FINGERPRINT = Buffer.from("bc2b1fcf13ae91b0", "hex");
const AVRO_CONTENT_TYPE = "application/vnd.apache.avro+binary";

type Schema = { fields: { name: string; type: unknown; default?: unknown; doc?: string }[] };
const schemaFile = (file: string) => JSON.parse(readFileSync(new URL(file, SCHEMA_DIR), "utf8")) as Schema;

/** A body as any Avro library writes it: C3 01, the writer's fingerprint, the datum (plain avsc, not our codec). */
function singleObject(schema: Schema, fingerprint: Buffer, datum: Record<string, unknown>): Buffer {
  const type = avro.Type.forSchema(schema as avro.Schema);
  return Buffer.concat([Buffer.from([0xc3, 0x01]), fingerprint, type.toBuffer(datum)]);
}

/** The columns these tests compare: all but the two times, which the test cannot know. */
type ComparedRow = Omit<Row, "received_at" | "stored_at">;

function storedRows(dbPath: string): ComparedRow[] {
  return readRows(dbPath).map(({ received_at: _r, stored_at: _s, ...compared }) => compared);
}

describe("schema versions: a processor stores the messages of every gateway version it knows", () => {
  let names: TestNames;
  let gateway: Service;
  let processor: Service;
  let publisher: mqtt.MqttClient;
  let conn: amqp.ChannelModel;
  let ch: amqp.ConfirmChannel;

  beforeAll(async () => {
    names = testNames("schemaver");
    ({ gateway, processor } = await startPipeline(names));
    publisher = await mqtt.connectAsync(names.mqttUrl, { clean: true, reconnectPeriod: 0 });
    conn = await amqp.connect(names.amqpUrl);
    ch = await conn.createConfirmChannel();
  });

  afterAll(async () => {
    await publisher?.endAsync();
    await conn?.close();
    await Promise.all([gateway?.stop(), processor?.stop()]);
    await cleanup(names);
  });

  it("version 1 messages (an old gateway) and version 2 messages (the gateway) interleaved on one queue are all stored exactly, version 1 with the defaults", async () => {
    const v1 = schemaFile("reading.v1.avsc");
    const expected: ComparedRow[] = [];
    for (let i = 0; i < PER_VERSION; i++) {
      // An old gateway's reading, written with reading.v1.avsc straight onto the queue.
      const old = {
        device_id: "dev-v1",
        sensor: "temperature",
        ts: TS0 + i,
        value: 20 + i / 8,
        unit: i % 2 ? "C" : null,
        seq: i % 3 ? i : null,
        gateway_id: "gateway-v1",
        received_at: TS0 + i + 7,
      };
      ch.sendToQueue(names.queue, singleObject(v1, V1_FINGERPRINT, old), {
        persistent: true,
        contentType: AVRO_CONTENT_TYPE,
        messageId: `v1-${i}`,
      });
      const { received_at: _, ...row } = old;
      expected.push({ ...row, quality: "good", tags: "{}" });

      // A device that sends quality and tags, through the real gateway (which writes version 2).
      const tags = i % 4 === 0 ? undefined : { site: `site-${i % 5}`, firmware: "2.1.0" };
      const quality = i % 5 === 0 ? undefined : QUALITY[i % 3];
      await publisher.publishAsync(
        `${names.topicPrefix}/dev-v2/humidity`,
        JSON.stringify({ value: 40 + i / 4, ts: TS0 + i, unit: "%", seq: i, quality, tags }),
        { qos: 1 },
      );
      expected.push({
        device_id: "dev-v2",
        sensor: "humidity",
        ts: TS0 + i,
        value: 40 + i / 4,
        unit: "%",
        seq: i,
        gateway_id: names.gatewayId,
        quality: quality ?? "good",
        tags: tags ? JSON.stringify({ firmware: tags.firmware, site: tags.site }) : "{}",
      });
    }
    await ch.waitForConfirms();

    await vi.waitFor(() => expect(countRows(names.dbPath)).toBe(2 * PER_VERSION), { timeout: 20_000 });
    const order = (r: ComparedRow) => `${r.device_id}\0${r.sensor}\0${String(r.ts).padStart(16, "0")}`;
    expect(storedRows(names.dbPath)).toEqual(expected.sort((a, b) => (order(a) < order(b) ? -1 : 1)));

    const metrics = (await httpGet(processor.httpPort, "/metrics")).body;
    expect(metrics).toMatch(
      new RegExp(`^telemetry_processor_readings_stored_total ${2 * PER_VERSION}$`, "m"),
    );
    expect(metrics).not.toMatch(/^telemetry_processor_dead_lettered_total\{/m);
  });

  it("a message written with a newer schema is dead-lettered as unknown schema <fingerprint>, and stored once replayed to a processor that knows that schema", async () => {
    // A gateway from the future writes version 3: version 2 plus a battery level (with a default: compatible).
    const v2 = schemaFile("reading.v2.avsc");
    const v3: Schema = {
      ...v2,
      fields: [
        ...v2.fields,
        { name: "battery", type: ["null", "double"], default: null, doc: "Battery charge, 0 to 1." },
      ],
    };
    const v3Fingerprint = crc64Avro(canonicalForm(v3));
    const reading = {
      device_id: "dev-v3",
      sensor: "pressure",
      ts: TS0,
      value: 1013.25,
      unit: "hPa",
      seq: 1,
      gateway_id: "gateway-v3",
      received_at: TS0 + 9,
      quality: "uncertain",
      tags: { site: "north" },
      battery: 0.5,
    };
    const body = singleObject(v3, v3Fingerprint, reading);
    ch.sendToQueue(names.queue, body, {
      persistent: true,
      contentType: AVRO_CONTENT_TYPE,
      messageId: "v3-0",
    });
    await ch.waitForConfirms();

    const { dead } = queueNames(names.queue);
    let deadLettered: amqp.GetMessage | false = false;
    await vi.waitFor(
      async () => {
        deadLettered = await ch.get(dead, { noAck: false });
        expect(deadLettered).not.toBe(false);
      },
      { timeout: 10_000 },
    );
    const message = deadLettered as unknown as amqp.GetMessage;
    expect(message.content.equals(body)).toBe(true);
    expect(message.properties).toMatchObject({ messageId: "v3-0", contentType: AVRO_CONTENT_TYPE });
    expect(message.properties.headers).toMatchObject({
      "x-failure-kind": "unknown-schema",
      "x-failure-reason": `unknown schema ${v3Fingerprint.toString("hex")}`,
      "x-original-queue": names.queue,
    });
    expect(countRows(names.dbPath)).toBe(2 * PER_VERSION);
    expect((await httpGet(processor.httpPort, "/metrics")).body).toMatch(
      /^telemetry_processor_dead_lettered_total\{kind="unknown-schema"\} 1$/m,
    );

    // Upgrade the processor: the same installation with a schemas folder that also holds version 3.
    const upgraded = join(names.dir, "schemas-v3");
    mkdirSync(upgraded);
    for (const file of ["reading.v1.avsc", "reading.v2.avsc"]) {
      copyFileSync(new URL(file, SCHEMA_DIR), join(upgraded, file));
    }
    writeFileSync(join(upgraded, "reading.v3.avsc"), JSON.stringify(v3, null, 2));
    await processor.stop();
    processor = await startService("processor", { ...names.env, SCHEMAS_DIR: upgraded });
    expect(processor.logs.find((l) => l.msg === "processor started")).toMatchObject({
      schemas: ["reading.v1.avsc", "reading.v2.avsc", "reading.v3.avsc"],
    });

    // Replay: move the message from <QUEUE>.dead back to <QUEUE>, body and properties unchanged.
    ch.sendToQueue(names.queue, message.content, { ...message.properties, persistent: true });
    await ch.waitForConfirms();
    ch.ack(message);

    await vi.waitFor(() => expect(countRows(names.dbPath)).toBe(2 * PER_VERSION + 1), { timeout: 10_000 });
    // Stored as sent (storedRows leaves the times out; battery, new in v3, has no column), tags as JSON text.
    const { received_at: _received, battery: _battery, tags, ...stored } = reading;
    expect(storedRows(names.dbPath).find((r) => r.device_id === "dev-v3")).toEqual({
      ...stored,
      tags: JSON.stringify(tags),
    });
    expect((await ch.checkQueue(dead)).messageCount).toBe(0);
    expect((await ch.checkQueue(names.queue)).messageCount).toBe(0);
  });
});
